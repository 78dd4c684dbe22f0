"""Fixtures of the pytest-benchmark suite: data pools, networks, pinned threads, machine info.

Run with ``pytest bench/ --benchmark-only``; ``--bench-threads N`` sets the BLAS, OpenMP, Numba
and PyTorch thread count (default 1). The default ``pytest`` run does not collect this folder.
"""
import time

import numpy as np
import pytest

from fastkbn import BackendUnavailableError, Network
from fastkbn import benchmark as fb

BACKENDS = fb.BACKENDS
DTYPES = ("float32", "float64")
NETS = tuple(fb.NETWORKS)
BATCH_NORM = (True, False)

EPOCH_SAMPLES = 45000
"""Samples per epoch: the CIFAR-10 training set without its 5,000 validation images."""

INFERENCE_SAMPLES = 10000


def pytest_addoption(parser):
    parser.addoption("--bench-threads", type=int, default=1,
                     help="BLAS, OpenMP, Numba and PyTorch threads for the suite (default: 1)")


@pytest.fixture(scope="session")
def bench_threads(request):
    return request.config.getoption("--bench-threads")


@pytest.fixture(scope="session", autouse=True)
def pinned(bench_threads):
    # Import Numba first (if present) so that pinned_threads sets its pool too.
    try:
        import numba  # noqa: F401
    except ImportError:
        pass
    with fb.pinned_threads(bench_threads) as counts:
        yield counts


def pytest_benchmark_update_machine_info(config, machine_info):
    # Only what stays the same between runs on one machine, so that --benchmark-compare warns
    # about real differences. pytest-benchmark stores the git commit in commit_info itself.
    blas = [{key: value for key, value in entry.items() if key != "num_threads"}
            for entry in fb.blas_info() if entry["user_api"] == "blas"]
    machine_info["fastkbn"] = {"machine": fb.machine_info(), "versions": fb.library_versions(),
                               "blas": blas, "threads": config.getoption("--bench-threads")}


@pytest.fixture(scope="session")
def pools():
    """Random data per dtype, made once: ``pools[dtype] -> (X, y)``."""
    cache = {}

    def get(dtype, rows=fb.POOL_ROWS):
        if (dtype, rows) not in cache:
            cache[(dtype, rows)] = fb.make_pool(dtype, rows=rows)
        return cache[(dtype, rows)]
    return get


@pytest.fixture
def make_network():
    """Build a network on a backend, or skip the test when that backend is not available."""
    def make(backend, net, batch_norm, dtype):
        try:
            return Network(fb.NETWORKS[net], batch_norm=batch_norm, dtype=dtype,
                           backend=backend, seed=0)
        except BackendUnavailableError as exc:
            pytest.skip(f"backend {backend} is not available: {exc}")
    return make


def time_first_call(function, *args):
    """Seconds that one call takes; run before the benchmark so it includes JIT compilation."""
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def label(batch_norm):
    return "bn" if batch_norm else "nobn"


def describe(benchmark, kind, backend, net, batch_norm, dtype, threads, **extra):
    """Set the group and extra_info so runs group and compare by network, BN and dtype."""
    benchmark.group = f"{kind} {net} {label(batch_norm)} {dtype}"
    benchmark.extra_info.update(kind=kind, backend=backend, net=net,
                                sizes=list(fb.NETWORKS[net]), batch_norm=batch_norm,
                                dtype=dtype, threads=threads, **extra)


def median_seconds(benchmark):
    """The median of the rounds just timed, or None if this pytest-benchmark hides it."""
    try:
        return float(benchmark.stats.stats.median)
    except AttributeError:
        return None


@pytest.fixture
def shuffled_index():
    def make(rows, count):
        return fb.make_index(rows, count)
    return make


__all__ = ["BACKENDS", "BATCH_NORM", "DTYPES", "EPOCH_SAMPLES", "INFERENCE_SAMPLES", "NETS",
           "describe", "label", "median_seconds", "time_first_call", "np"]
