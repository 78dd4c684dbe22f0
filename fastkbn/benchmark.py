"""Side-by-side speed comparison behind ``fastkbn bench``.

One process times every contender on the same machine, in alternating rounds (A B C, B C A, ...).
It reports each contender's time per training step as a ratio to the baselines a user would
otherwise pick. These are the NumPy reference backend in float64 and in float32, PyTorch on the
CPU training the same network, and the GEMM bound: the step's two large matrix products alone,
through the BLAS that the compiled kernels call. Warm-up calls, JIT compilation included, are
timed separately and left out of the statistics. The pytest-benchmark suite in ``bench/`` times
each backend on its own, and this module is the comparison and the records it writes.

Thread counts are pinned the same for every contender: BLAS and OpenMP pools through
threadpoolctl, PyTorch through ``torch.set_num_threads`` and Numba through
``numba.set_num_threads``. The module reads the ``OPENBLAS_*`` environment variables to record
them and never sets them.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from . import config
from .backends import get_backend
from .environment import blas_info, library_versions, load_average, machine_info
from .errors import BackendUnavailableError
from .network import Network

logger = logging.getLogger(__name__)

NETWORKS = {
    "3layer": (3072, 50, 50, 10),
    "9layer": (3072, 50, 30, 20, 20, 10, 10, 10, 10, 10),
}
"""The two networks of the classic CIFAR-10 study, by the name ``--nets`` takes."""

BACKENDS = ("numpy", "numba", "cython")
BATCH_SIZE = config.BATCH_SIZE
LAM = config.LAM

ETA = 1e-3
"""Constant learning rate of the timed steps. Small, so that hundreds of steps on random data
leave the parameters finite and of ordinary size."""

POOL_ROWS = 5000
"""Rows of the preallocated random data that the timed steps draw their batches from."""

SCHEMA_VERSION = 1
"""Version of the JSON layout that :func:`run_comparison` writes."""

OPENBLAS_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                     "OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Environment variables recorded with every run (read only)."""

BASELINES = ("numpy-float64", "numpy-float32", "torch", "gemm")
"""Columns of the ratio table: contender time divided by the baseline's time."""


@dataclass
class Settings:
    """Settings of one comparison run: what it measures and how often."""

    threads: tuple = (1, 2)
    nets: tuple = ("3layer", "9layer")
    dtypes: tuple = ("float32", "float64")
    batch_norm: tuple = (True,)
    steps: int = 50
    repeats: int = 15
    warmup: int = 2
    quick: bool = False
    experiment: bool = False
    data: str | None = None


QUICK = {"threads": (1,), "steps": 10, "repeats": 3, "warmup": 1, "experiment": False}
"""Overrides that ``--quick`` applies: a smoke test of the whole path in well under a minute."""


@dataclass(frozen=True)
class Target:
    """A speed target: ``contender time / baseline time <= max_ratio`` in one configuration."""

    description: str
    net: str
    dtype: str
    baseline: str
    max_ratio: float
    batch_norm: bool = True


TARGETS = (
    Target("3-layer with BN, float32: at most 1/3 of PyTorch's time per step",
           "3layer", "float32", "torch", 1 / 3),
    Target("3-layer with BN, float32: at most 1.5x the time of the step's two large GEMMs",
           "3layer", "float32", "gemm", 1.5),
    Target("9-layer with BN, float32: at most 1/4 of PyTorch's time per step",
           "9layer", "float32", "torch", 1 / 4),
    Target("3-layer with BN, float64: at least 4x faster than the NumPy reference in float64",
           "3layer", "float64", "numpy-float64", 1 / 4),
    Target("9-layer with BN, float64: at least 4x faster than the NumPy reference in float64",
           "9layer", "float64", "numpy-float64", 1 / 4),
)
"""Targets of the compiled kernels, checked for every compiled backend and thread count."""


class ContenderUnavailable(Exception):
    """A contender cannot run here (backend not built, PyTorch not installed)."""


# ----------------------------------------------------------------------------------------------
# Contenders. Each one prepares its data once. Its ``run()`` performs ``steps`` training steps
# (or the GEMM bound's products for that many steps) and is what the timer measures.

def make_pool(dtype, rows=POOL_ROWS, width=3072, n_classes=10, seed=0):
    """Random data X (rows, width) of ``dtype`` and labels y (rows,) int64 to draw batches from."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, width), dtype=np.dtype(dtype).type)
    y = rng.integers(0, n_classes, size=rows).astype(np.int64)
    return X, y


def make_index(rows, count, seed=1):
    """Return a shuffled index of length ``count`` into ``rows`` rows, from whole permutations."""
    rng = np.random.default_rng(seed)
    parts = [rng.permutation(rows) for _ in range(-(-count // rows))]
    return np.concatenate(parts)[:count].astype(np.int64)


class _FastkbnContender:
    """A fastkbn backend running ``train_steps`` over ``steps`` batches in one call."""

    kind = "fastkbn"

    def __init__(self, backend, sizes, batch_norm, dtype, pool, steps):
        self.name = backend
        try:
            self.net = Network(sizes, batch_norm=batch_norm, dtype=dtype, backend=backend,
                               seed=0)
        except BackendUnavailableError as exc:
            raise ContenderUnavailable(str(exc)) from exc
        self.X, self.y = pool
        self.idx = make_index(self.X.shape[0], steps * BATCH_SIZE)
        self.etas = np.full(steps, ETA)
        self._train_steps = self.net._backend.train_steps

    def run(self):
        self._train_steps(self.net, self.X, self.y, self.idx, BATCH_SIZE, self.etas, LAM)


def _import_torch():
    try:
        import torch
    except ImportError as exc:
        raise ContenderUnavailable(f"PyTorch is not installed ({exc}); install it with "
                                   'pip install ".[bench]"') from exc
    return torch


def build_torch_model(torch, net: Network):
    """Build the PyTorch twin of ``net`` from nn.Linear, nn.BatchNorm1d and ReLU, with its weights.

    Batch normalization uses fastkbn's epsilon and running-average momentum (PyTorch's
    ``momentum`` is the weight of the new batch, ``1 - alpha``).
    """
    nn = torch.nn
    dtype = getattr(torch, net.dtype.name)
    params = net.params
    layers = []
    for l in range(net.k):
        linear = nn.Linear(net.sizes[l], net.sizes[l + 1])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(params[f"W{l + 1}"].copy()))
            linear.bias.copy_(torch.from_numpy(params[f"b{l + 1}"].copy()))
        layers.append(linear)
        if l == net.k - 1:
            break
        if net.batch_norm:
            layers.append(nn.BatchNorm1d(net.sizes[l + 1], eps=config.BN_EPS,
                                         momentum=1.0 - net.alpha))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers).to(dtype)


def build_torch_optimizer(torch, model, lam, lr):
    """Build SGD whose weight decay 2*lam on the weights matches the cost's ``lam * sum ||W||^2``.

    Biases, gamma and beta are not regularized in fastkbn's cost, so they get no weight decay.
    """
    weights = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    weight_ids = {id(p) for p in weights}
    others = [p for p in model.parameters() if id(p) not in weight_ids]
    return torch.optim.SGD([{"params": weights, "weight_decay": 2.0 * lam},
                            {"params": others, "weight_decay": 0.0}], lr=lr)


class _TorchContender:
    """PyTorch on the CPU training the same network, batches gathered from the same data."""

    kind = "torch"

    def __init__(self, sizes, batch_norm, dtype, pool, steps):
        self.name = "torch"
        torch = _import_torch()
        self.torch = torch
        net = Network(sizes, batch_norm=batch_norm, dtype=dtype, backend="numpy", seed=0)
        self.model = build_torch_model(torch, net)
        self.model.train()
        self.optimizer = build_torch_optimizer(torch, self.model, LAM, ETA)
        X, y = pool
        # from_numpy shares memory, so both libraries read the same preallocated array.
        self.X = torch.from_numpy(X)
        self.y = torch.from_numpy(y)
        self.idx = torch.from_numpy(make_index(X.shape[0], steps * BATCH_SIZE))
        self.steps = steps

    def run(self):
        torch, model, optimizer = self.torch, self.model, self.optimizer
        cross_entropy = torch.nn.functional.cross_entropy
        for s in range(self.steps):
            rows = self.idx[s * BATCH_SIZE:(s + 1) * BATCH_SIZE]
            xb = self.X.index_select(0, rows)
            yb = self.y.index_select(0, rows)
            optimizer.zero_grad(set_to_none=True)
            loss = cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()


def _blas_operand(M):
    """Return ``(array, trans)`` that pass row-major M to column-major BLAS without a copy.

    Column-major BLAS reads a C-contiguous M as its transpose, so M.T goes in untransposed. An
    F-contiguous M, such as the ``.T`` view of a C-contiguous array, goes in as is with trans=1.
    """
    if M.flags.c_contiguous:
        return M.T, 0
    if M.flags.f_contiguous:
        return M, 1
    raise ValueError("GEMM operands must be C- or F-contiguous")


def scipy_gemm(A, B, out):
    """Compute ``out[...] = A @ B`` for row-major arrays through SciPy's BLAS ``?gemm``.

    Row-major ``C = A B`` is column-major ``C^T = B^T A^T``, so the operands go in swapped.
    ``out`` must be C-contiguous with A's dtype.
    """
    from scipy.linalg import blas
    gemm = blas.sgemm if out.dtype == np.float32 else blas.dgemm
    a, trans_a = _blas_operand(B)
    b, trans_b = _blas_operand(A)
    gemm(1.0, a, b, beta=0.0, c=out.T, trans_a=trans_a, trans_b=trans_b, overwrite_c=1)
    return out


class _GemmContender:
    """The GEMM bound: a step's matrix products alone, through the BLAS the kernels use.

    With ``all_layers=False`` these are the two products of the first layer, which dominate a
    step on 3072 inputs: ``X_b (n, d) @ W1.T`` forward and ``dS1.T (h1, n) @ X_b`` for dW1.
    With ``all_layers=True`` every layer's forward, dW and (above the first layer) dH product.
    The products run through SciPy's BLAS. The Cython kernels call it through
    ``scipy.linalg.cython_blas``, and Numba's compiled ``np.dot`` calls the same routines. With
    ``blas="numpy"`` the products use ``np.dot`` and NumPy's own BLAS, which can be another build.
    """

    kind = "gemm"

    def __init__(self, sizes, dtype, pool, steps, all_layers=False, blas="scipy"):
        self.name = {(False, "scipy"): "gemm", (True, "scipy"): "gemm-all",
                     (False, "numpy"): "gemm-np"}[(all_layers, blas)]
        self.product = scipy_gemm if blas == "scipy" else np.dot
        rng = np.random.default_rng(2)
        X, _ = pool
        dt = np.dtype(dtype)
        n = BATCH_SIZE
        layers = range(len(sizes) - 1) if all_layers else range(1)
        self.products = []
        H = np.ascontiguousarray(X[make_index(X.shape[0], n)])
        for l in layers:
            d_in, d_out = sizes[l], sizes[l + 1]
            if l > 0:
                H = rng.standard_normal((n, d_in)).astype(dt)
            W = rng.standard_normal((d_out, d_in)).astype(dt)
            dS = rng.standard_normal((n, d_out)).astype(dt)
            # Forward S = H @ W.T, then dW = dS.T @ H, then dH = dS @ W for the layer below.
            self.products.append((H, W.T, np.empty((n, d_out), dtype=dt)))
            self.products.append((dS.T, H, np.empty((d_out, d_in), dtype=dt)))
            if l > 0:
                self.products.append((dS, W, np.empty((n, d_in), dtype=dt)))
        self.steps = steps

    def run(self):
        product = self.product
        for _ in range(self.steps):
            for a, b, out in self.products:
                product(a, b, out)


def _make_contenders(sizes, batch_norm, dtypes, pools, steps, skipped):
    """Build every contender that can run here for one network; note the others in ``skipped``."""
    contenders = []
    for dtype in dtypes:
        makers = [(backend, lambda b=backend: _FastkbnContender(b, sizes, batch_norm, dtype,
                                                                pools[dtype], steps))
                  for backend in BACKENDS]
        makers.append(("torch", lambda: _TorchContender(sizes, batch_norm, dtype, pools[dtype],
                                                        steps)))
        makers.append(("gemm", lambda: _GemmContender(sizes, dtype, pools[dtype], steps)))
        makers.append(("gemm-all", lambda: _GemmContender(sizes, dtype, pools[dtype], steps,
                                                          all_layers=True)))
        makers.append(("gemm-np", lambda: _GemmContender(sizes, dtype, pools[dtype], steps,
                                                         blas="numpy")))
        for name, make in makers:
            try:
                contender = make()
            except ContenderUnavailable as exc:
                note = {"contender": name, "dtype": dtype, "reason": str(exc)}
                if note not in skipped:
                    skipped.append(note)
                    logger.warning("skipping %s in %s: %s", name, dtype, exc)
                continue
            contender.dtype = dtype
            contenders.append(contender)
    return contenders


# ----------------------------------------------------------------------------------------------
# Threads.

@contextlib.contextmanager
def pinned_threads(threads: int):
    """Limit BLAS, OpenMP, PyTorch and Numba to ``threads`` threads inside the block.

    Yields the thread counts in effect, as the libraries report them. Numba is set first: its
    first ``set_num_threads`` starts its threading layer, which can reset the OpenMP pool size
    that threadpoolctl set before it.
    """
    # threadpoolctl limits only the libraries loaded when the block starts, so load SciPy's
    # BLAS, which the compiled kernels call, before it.
    import scipy.linalg.cython_blas  # noqa: F401

    restore = []
    if "numba" in sys.modules:
        import numba
        restore.append((numba.set_num_threads, numba.get_num_threads()))
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=threads):
            if "torch" in sys.modules:
                torch = sys.modules["torch"]
                restore.append((torch.set_num_threads, torch.get_num_threads()))
                torch.set_num_threads(threads)
            counts = thread_counts()
            wrong = {name: n for name, n in counts.items() if n != threads}
            if wrong:
                logger.warning("requested %d thread(s) but these pools use other counts: %s",
                               threads, wrong)
            yield counts
    finally:
        for setter, previous in reversed(restore):
            setter(previous)


def thread_counts() -> dict:
    """Threads each pool would use now: BLAS and OpenMP libraries, PyTorch, Numba."""
    counts = {f"{info['internal_api']} {info.get('version') or ''} "
              f"({Path(info['filepath']).name})": info["num_threads"]
              for info in threadpool_info()}
    if "torch" in sys.modules:
        counts["torch"] = sys.modules["torch"].get_num_threads()
    if "numba" in sys.modules:
        counts["numba"] = sys.modules["numba"].get_num_threads()
    return counts


# ----------------------------------------------------------------------------------------------
# Timing.

def summarize(samples) -> dict:
    """Median, quartiles, extremes and relative spread ``(p75 - p25) / median`` of samples."""
    values = np.asarray(samples, dtype=np.float64)
    p25, median, p75 = np.percentile(values, [25, 50, 75])
    return {"median": float(median), "p25": float(p25), "p75": float(p75),
            "min": float(values.min()), "max": float(values.max()),
            "spread": float((p75 - p25) / median) if median > 0 else float("nan"),
            "samples": values.tolist()}


def time_alternating(contenders, steps, repeats, warmup) -> list:
    """Time ``contenders`` in alternating rounds; returns one summary dict per contender.

    Each contender's first call (JIT compilation, first BLAS calls, page faults) is timed on its
    own as ``first_call_s``. Then ``warmup`` alternating rounds are run and discarded, then
    ``repeats`` rounds are kept. Round r starts at contender r (A B C, B C A, C A B, ...), so no
    contender always follows the same one. Times are seconds per step. A contender reused in a
    later group (another thread count) was compiled before, so its ``first_call_s`` there is warm.
    """
    first_call = []
    for c in contenders:
        start = time.perf_counter()
        c.run()
        first_call.append(time.perf_counter() - start)

    n = len(contenders)
    samples = [[] for _ in contenders]
    for r in range(warmup + repeats):
        for i in [(r + j) % n for j in range(n)]:
            start = time.perf_counter()
            contenders[i].run()
            elapsed = time.perf_counter() - start
            if r >= warmup:
                samples[i].append(elapsed / steps)
        logger.debug("round %d of %d done", r + 1, warmup + repeats)

    return [{"contender": c.name, "kind": c.kind, "dtype": c.dtype,
             "first_call_s": first_call[i], **summarize(samples[i])}
            for i, c in enumerate(contenders)]


def ratio_rows(results) -> list:
    """For every result of one group, its median divided by each baseline's median."""
    medians = {(r["contender"], r["dtype"]): r["median"] for r in results}
    rows = []
    for r in results:
        ratios = {}
        for baseline in BASELINES:
            if baseline.startswith("numpy-"):
                key = ("numpy", baseline.split("-", 1)[1])
            else:
                key = (baseline, r["dtype"])
            ratios[baseline] = r["median"] / medians[key] if key in medians else None
        rows.append({"contender": r["contender"], "dtype": r["dtype"], "ratios": ratios})
    return rows


def check_targets(groups) -> list:
    """Check every target for every compiled backend and thread count that was measured."""
    outcomes = []
    for target in TARGETS:
        for group in groups:
            if group["net"] != target.net or group["batch_norm"] != target.batch_norm:
                continue
            for row in group["ratios"]:
                if row["contender"] not in BACKENDS or row["contender"] == "numpy" \
                        or row["dtype"] != target.dtype:
                    continue
                ratio = row["ratios"].get(target.baseline)
                outcome = {"target": target.description, "backend": row["contender"],
                           "threads": group["threads"], "ratio": ratio,
                           "max_ratio": target.max_ratio}
                if ratio is None:
                    outcome.update(met=None, factor=None)
                else:
                    # factor > 1: missed by that factor; factor <= 1: met with that margin.
                    outcome.update(met=ratio <= target.max_ratio,
                                   factor=ratio / target.max_ratio)
                outcomes.append(outcome)
    return outcomes


# ----------------------------------------------------------------------------------------------
# What the records store beside the numbers (machine, libraries and BLAS are in environment).

def git_commit():
    """``(commit, dirty)`` of the source tree fastkbn runs from, or ``(None, None)``."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None, None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                 "--untracked-files=no"], check=True, capture_output=True,
                                text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        logger.info("git commit not recorded: %s", exc)
        return None, None
    return commit, bool(status.strip())


def command_line(settings: Settings) -> str:
    """Return the ``fastkbn bench`` command that reproduces ``settings``."""
    parts = ["fastkbn", "bench"]
    if settings.quick:
        parts.append("--quick")
    parts += ["--threads", ",".join(map(str, settings.threads)),
              "--nets", ",".join(settings.nets), "--dtypes", ",".join(settings.dtypes),
              "--batch-norm", {(True,): "on", (False,): "off"}.get(settings.batch_norm, "both"),
              "--steps", str(settings.steps), "--repeats", str(settings.repeats),
              "--warmup", str(settings.warmup)]
    if settings.experiment:
        parts.append("--experiment")
        if settings.data:
            parts += ["--data", settings.data]
    return " ".join(parts)


# ----------------------------------------------------------------------------------------------
# The comparison.

def run_comparison(settings: Settings) -> dict:
    """Time every contender for every network, dtype and thread count in ``settings``.

    Returns the record that ``fastkbn bench`` writes as JSON: machine, versions, BLAS, thread
    counts, one group of results and ratios per (network, batch normalization, threads), the
    targets, the contenders skipped and why, and the per-experiment wall times if requested.
    """
    commit, dirty = git_commit()
    record = {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(settings),
        "git_commit": commit, "git_dirty": dirty,
        "settings": {**asdict(settings), "batch_size": BATCH_SIZE, "lam": LAM, "eta": ETA,
                     "pool_rows": POOL_ROWS},
        "environment": {name: os.environ.get(name) for name in OPENBLAS_ENV_VARS},
        "machine": machine_info(),
        "versions": library_versions(),
        "blas": blas_info(),
        "threads": list(settings.threads),
        "groups": [], "skipped": [], "targets": [], "experiment": None,
        "load_average": {"start": load_average(), "end": None},
    }

    pools = {dtype: make_pool(dtype) for dtype in settings.dtypes}
    for name in settings.nets:
        sizes = NETWORKS[name]
        for batch_norm in settings.batch_norm:
            contenders = _make_contenders(sizes, batch_norm, settings.dtypes, pools,
                                          settings.steps, record["skipped"])
            for threads in settings.threads:
                logger.info("timing %s batch_norm=%s with %d thread(s): %s", name, batch_norm,
                            threads, ", ".join(f"{c.name}/{c.dtype}" for c in contenders))
                with pinned_threads(threads) as counts:
                    results = time_alternating(contenders, settings.steps, settings.repeats,
                                               settings.warmup)
                record["groups"].append({
                    "net": name, "sizes": list(sizes), "batch_norm": batch_norm,
                    "threads": threads, "threads_in_effect": counts,
                    "steps_per_sample": settings.steps, "results": results,
                    "ratios": ratio_rows(results)})

    record["targets"] = check_targets(record["groups"])
    if settings.experiment:
        threads = max(settings.threads)
        with pinned_threads(threads) as counts:
            record["experiment"] = run_experiment(settings.data, threads_in_effect=counts)
    record["load_average"]["end"] = load_average()
    return record


# ----------------------------------------------------------------------------------------------
# Per-experiment wall time: one full 2-cycle CIFAR-10 training run per contender.

EXPERIMENT_SIZES = NETWORKS["3layer"]
EXPERIMENT_N_S = 2250
EXPERIMENT_CYCLES = 2


def _experiment_data(path):
    """CIFAR-10 from ``path`` or $FASTKBN_DATA if either is given, else random data of its shape.

    Returns ``(X_train, y_train, X_val, y_val, source)`` in float32.
    """
    from .data import DATA_ENV_VAR, load_cifar10
    if path or os.environ.get(DATA_ENV_VAR):
        data = load_cifar10(path, dtype="float32")
        return data.X_train, data.y_train, data.X_val, data.y_val, str(data.source)
    logger.info("no CIFAR-10 location given; timing on random data of CIFAR-10's shape")
    X, y = make_pool("float32", rows=45000, seed=3)
    X_val, y_val = make_pool("float32", rows=5000, seed=4)
    return X, y, X_val, y_val, "random data of CIFAR-10's shape (45,000 + 5,000 x 3072)"


def _torch_training_run(torch, net, X, y, X_val, y_val, cfg):
    """Train ``net``'s PyTorch twin with the same schedule, shuffles and evaluation points."""
    model = build_torch_model(torch, net)
    optimizer = build_torch_optimizer(torch, model, cfg.lam, cfg.eta_min)
    cross_entropy = torch.nn.functional.cross_entropy
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    X_val_t, y_val_t = torch.from_numpy(X_val), torch.from_numpy(y_val)
    rates = cfg.schedule.rates(0, cfg.total_steps)
    eval_steps = set(cfg.eval_steps().tolist())
    rng = np.random.default_rng(cfg.seed)
    n = X.shape[0]
    per_epoch = -(-n // cfg.batch_size)
    accuracy = None

    def evaluate():
        model.eval()
        with torch.no_grad():
            for X_e, y_e in ((X_t, y_t), (X_val_t, y_val_t)):
                scores = model(X_e)
                cross_entropy(scores, y_e).item()
                acc = (scores.argmax(dim=1) == y_e).double().mean().item()
        model.train()
        return acc

    step = 0
    evaluate()
    while step < cfg.total_steps:
        order = torch.from_numpy(rng.permutation(n).astype(np.int64))
        for b in range(min(per_epoch, cfg.total_steps - step)):
            rows = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            for group in optimizer.param_groups:
                group["lr"] = float(rates[step])
            optimizer.zero_grad(set_to_none=True)
            loss = cross_entropy(model(X_t.index_select(0, rows)), y_t.index_select(0, rows))
            loss.backward()
            optimizer.step()
            step += 1
            if step in eval_steps:
                accuracy = evaluate()
    return accuracy


def run_experiment(data=None, backends=BACKENDS, threads_in_effect=None) -> dict:
    """Wall time of a 2-cycle training run of a 3-layer BN network for each backend and PyTorch.

    The fastkbn runs call :func:`fastkbn.train` with its defaults (batch 100, eta in
    [1e-5, 1e-1], n_s 2250, lambda 0.005, 10 evaluations per cycle, no progress bar). The
    PyTorch run repeats the same schedule, shuffles and evaluations in a plain loop.
    """
    from .training import TrainConfig, train

    X, y, X_val, y_val, source = _experiment_data(data)
    cfg = TrainConfig(n_s=EXPERIMENT_N_S, cycles=EXPERIMENT_CYCLES)
    runs, skipped = [], []
    for backend in backends:
        try:
            get_backend(backend)
        except BackendUnavailableError as exc:
            skipped.append({"contender": backend, "reason": str(exc)})
            continue
        net = Network(EXPERIMENT_SIZES, batch_norm=True, dtype="float32", backend=backend,
                      seed=0)
        logger.info("experiment: training with backend %s", backend)
        start = time.perf_counter()
        train(net, (X, y, X_val, y_val), n_s=cfg.n_s, cycles=cfg.cycles, seed=cfg.seed,
              progress=False)
        seconds = time.perf_counter() - start
        runs.append({"contender": backend, "seconds": seconds,
                     "val_accuracy": net.accuracy(X_val, y_val)})

    try:
        torch = _import_torch()
    except ContenderUnavailable as exc:
        skipped.append({"contender": "torch", "reason": str(exc)})
    else:
        net = Network(EXPERIMENT_SIZES, batch_norm=True, dtype="float32", backend="numpy",
                      seed=0)
        logger.info("experiment: training with PyTorch")
        start = time.perf_counter()
        accuracy = _torch_training_run(torch, net, X, y, X_val, y_val, cfg)
        runs.append({"contender": "torch", "seconds": time.perf_counter() - start,
                     "val_accuracy": accuracy})

    return {"sizes": list(EXPERIMENT_SIZES), "batch_norm": True, "dtype": "float32",
            "steps": cfg.total_steps, "n_s": cfg.n_s, "cycles": cfg.cycles, "data": source,
            "threads_in_effect": threads_in_effect, "runs": runs, "skipped": skipped}


# ----------------------------------------------------------------------------------------------
# Text output.

def _fmt_ratio(value):
    return "-" if value is None else f"{value:.2f}"


def format_group(group) -> str:
    """Format one group's results as an aligned table of time per step, spread and ratios."""
    bn = "with BN" if group["batch_norm"] else "without BN"
    title = (f"{group['net']} {group['sizes']} {bn}, {group['threads']} thread(s), batch "
             f"{BATCH_SIZE}, {group['steps_per_sample']} steps per sample, "
             f"{len(group['results'][0]['samples'])} samples")
    header = (f"{'contender':<10} {'dtype':<8} {'ms/step':>8} {'spread':>7} {'1st call s':>10}  "
              + "  ".join(f"{'/' + b:>14}" for b in BASELINES))
    lines = [title, header]
    ratios = {(r["contender"], r["dtype"]): r["ratios"] for r in group["ratios"]}
    for r in group["results"]:
        row_ratios = ratios[(r["contender"], r["dtype"])]
        lines.append(f"{r['contender']:<10} {r['dtype']:<8} {r['median'] * 1e3:>8.3f} "
                     f"{r['spread'] * 100:>6.1f}% {r['first_call_s']:>10.2f}  "
                     + "  ".join(f"{_fmt_ratio(row_ratios[b]):>14}" for b in BASELINES))
    return "\n".join(lines)


def format_targets(outcomes) -> str:
    """Format the speed targets, one line per backend and thread count."""
    if not outcomes:
        return "targets: no compiled backend was measured in a target's configuration"
    lines = ["targets (ratio = backend time / baseline time; lower is faster):"]
    for o in outcomes:
        if o["met"] is None:
            verdict = "baseline not measured"
        elif o["met"]:
            verdict = f"met ({o['factor']:.2f} of the limit)"
        else:
            verdict = f"MISSED by {o['factor']:.2f}x"
        ratio = "-" if o["ratio"] is None else f"{o['ratio']:.3f}"
        lines.append(f"  {o['backend']:<7} {o['threads']} thr  {ratio:>7} <= "
                     f"{o['max_ratio']:.3f}  {verdict}: {o['target']}")
    return "\n".join(lines)


def format_experiment(experiment) -> str:
    """Format the per-experiment wall times, each also as a ratio to PyTorch's."""
    lines = [f"experiment: {experiment['sizes']} with BN, {experiment['steps']} steps "
             f"({experiment['cycles']} cycles), {experiment['data']}"]
    torch_s = next((r["seconds"] for r in experiment["runs"] if r["contender"] == "torch"), None)
    for r in experiment["runs"]:
        ratio = "" if torch_s is None else f"  /torch {r['seconds'] / torch_s:.2f}"
        lines.append(f"  {r['contender']:<7} {r['seconds']:>8.1f} s{ratio}")
    for s in experiment["skipped"]:
        lines.append(f"  skipped {s['contender']}: {s['reason']}")
    return "\n".join(lines)


def format_report(record) -> str:
    """Format what ``fastkbn bench`` prints: context, one table per group, targets and skips."""
    blas = ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture'] or '-'}, "
                     f"{b['prefix']})" for b in record["blas"] if b["user_api"] == "blas")
    env = ", ".join(f"{k}={v}" for k, v in record["environment"].items() if v is not None)
    load = record["load_average"]
    load_text = " -> ".join("-" if value is None else f"{value[0]:.1f}"
                            for value in (load["start"], load["end"]))
    lines = [f"machine: {record['machine']['cpu_model']}, {record['machine']['logical_cores']} "
             f"logical cores, 1-minute load average {load_text}; BLAS: {blas}; environment: "
             f"{env or 'no BLAS variables set'}",
             "ratio columns: contender time per step / baseline time per step (lower is "
             "faster); numpy-float64 and numpy-float32 are the reference backend, torch and "
             "gemm are in the row's dtype", ""]
    for group in record["groups"]:
        lines += [format_group(group), ""]
    lines.append(format_targets(record["targets"]))
    for s in record["skipped"]:
        lines.append(f"skipped {s['contender']} ({s['dtype']}): {s['reason']}")
    if record["experiment"]:
        lines += ["", format_experiment(record["experiment"])]
    return "\n".join(lines)


def _markdown_ratio(value):
    return "–" if value is None else f"{value:.2f}"


def _markdown_load(value):
    return "-" if value is None else f"{value[0]:.1f}"


def format_markdown_entry(record) -> str:
    """Format a records entry for bench/RESULTS.md: context, ratio tables, targets, experiment."""
    machine = record["machine"]
    blas = "; ".join(f"{b['internal_api']} {b['version']}, kernel {b['architecture'] or '-'} "
                     f"({Path(b['filepath']).name})"
                     for b in record["blas"] if b["user_api"] == "blas")
    env = ", ".join(f"`{k}={v}`" for k, v in record["environment"].items() if v is not None)
    versions = ", ".join(f"{k} {v}" for k, v in record["versions"].items() if v is not None)
    load = record["load_average"]
    commit = record["git_commit"] or "unknown"
    if record["git_dirty"]:
        commit += " (with uncommitted changes)"
    lines = [
        f"## {record['created'][:10]}, {commit[:12] if record['git_commit'] else commit}",
        "",
        f"- Date: {record['created']}",
        f"- Commit: {commit}",
        f"- Machine: {machine['cpu_model']}, {machine['logical_cores']} logical cores "
        f"({machine['physical_cores']} physical), {machine['platform']}, Python "
        f"{machine['python']}",
        f"- 1-minute load average: {_markdown_load(load['start'])} at the start, "
        f"{_markdown_load(load['end'])} at the end",
        f"- BLAS: {blas}",
        f"- Environment: {env or 'no OPENBLAS_* or thread variables set'}",
        f"- Versions: {versions}",
        f"- Command: `{record['command']}`",
        "",
        "Time per training step at batch 100 (median), spread (p75 − p25) / median, and ratios "
        "of time per step to each baseline: lower is faster.",
    ]
    for group in record["groups"]:
        bn = "with BN" if group["batch_norm"] else "without BN"
        ratios = {(r["contender"], r["dtype"]): r["ratios"] for r in group["ratios"]}
        lines += ["", f"### {group['net']} {group['sizes']} {bn}, {group['threads']} "
                      f"thread(s)", "",
                  "| contender | dtype | ms/step | spread | / numpy f64 | / numpy f32 | "
                  "/ torch | / gemm |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in group["results"]:
            row = ratios[(r["contender"], r["dtype"])]
            lines.append(f"| {r['contender']} | {r['dtype']} | {r['median'] * 1e3:.3f} | "
                         f"{r['spread'] * 100:.0f}% | "
                         + " | ".join(_markdown_ratio(row[b]) for b in BASELINES) + " |")
    lines += ["", "### Targets", "", "| target | backend | threads | ratio | limit | verdict |",
              "| --- | --- | ---: | ---: | ---: | --- |"]
    for o in record["targets"]:
        if o["met"] is None:
            verdict = "baseline not measured"
        elif o["met"]:
            verdict = f"met ({o['factor']:.2f} of the limit)"
        else:
            verdict = f"**missed** by {o['factor']:.2f}×"
        lines.append(f"| {o['target']} | {o['backend']} | {o['threads']} | "
                     f"{_markdown_ratio(o['ratio'])} | {o['max_ratio']:.3f} | {verdict} |")
    for note in record["skipped"]:
        lines.append(f"\nSkipped {note['contender']} ({note['dtype']}): {note['reason']}")
    experiment = record["experiment"]
    if experiment:
        torch_s = next((r["seconds"] for r in experiment["runs"]
                        if r["contender"] == "torch"), None)
        lines += ["", f"### Experiment: {experiment['sizes']} with BN, {experiment['steps']} "
                      f"steps, {experiment['data']}", "",
                  "| contender | wall time s | / torch | validation accuracy |",
                  "| --- | ---: | ---: | ---: |"]
        for r in experiment["runs"]:
            ratio = None if torch_s is None else r["seconds"] / torch_s
            accuracy = "–" if r["val_accuracy"] is None else f"{r['val_accuracy']:.4f}"
            lines.append(f"| {r['contender']} | {r['seconds']:.1f} | {_markdown_ratio(ratio)} | "
                         f"{accuracy} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Command line.

def _choices_list(allowed):
    def parse(text):
        items = tuple(part.strip() for part in text.split(",") if part.strip())
        bad = [item for item in items if item not in allowed]
        if not items or bad:
            raise argparse.ArgumentTypeError(
                f"invalid value {text!r}; expected a comma-separated list of "
                f"{', '.join(allowed)}")
        return items
    return parse


def _thread_list(text):
    try:
        threads = tuple(int(part) for part in text.split(","))
    except ValueError:
        threads = ()
    if not threads or any(t < 1 for t in threads):
        raise argparse.ArgumentTypeError(f"invalid thread counts {text!r}; expected "
                                         "comma-separated positive integers such as 1,2")
    return threads


def settings_from_args(args) -> Settings:
    """Turn parsed ``fastkbn bench`` options into :class:`Settings`; --quick fills the gaps."""
    defaults = Settings()
    quick = QUICK if args.quick else {}

    def pick(name):
        value = getattr(args, name)
        if value is not None:
            return value
        return quick.get(name, getattr(defaults, name))

    batch_norm = {"on": (True,), "off": (False,), "both": (True, False)}[args.batch_norm]
    return Settings(threads=pick("threads"), nets=pick("nets"), dtypes=pick("dtypes"),
                    batch_norm=batch_norm, steps=pick("steps"), repeats=pick("repeats"),
                    warmup=pick("warmup"), quick=args.quick,
                    experiment=args.experiment and not args.quick, data=args.data)


def add_parser(sub):
    """Register ``fastkbn bench`` on the CLI's subparsers."""
    from .cli import positive_int

    p = sub.add_parser(
        "bench", help="compare training speed with NumPy, PyTorch and the GEMM bound",
        description="Time a training step of every available backend side by side with the "
                    "NumPy reference, PyTorch on the CPU and the GEMM bound, in alternating "
                    "rounds in this one process; print the ratios and write them as JSON with "
                    "the machine, library versions, BLAS and thread counts.")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: 1 thread, {QUICK['steps']} steps per sample, "
                        f"{QUICK['repeats']} samples, no experiment (under a minute)")
    p.add_argument("--threads", type=_thread_list, default=None, metavar="N,N",
                   help="BLAS, OpenMP, PyTorch and Numba threads, one run per value "
                        "(default: 1,2; --quick: 1)")
    p.add_argument("--nets", type=_choices_list(tuple(NETWORKS)), default=None,
                   metavar="NAME,NAME", help="networks: 3layer, 9layer (default: both)")
    p.add_argument("--dtypes", type=_choices_list(config.DTYPES), default=None,
                   metavar="DTYPE,DTYPE", help="precisions: float32, float64 (default: both)")
    p.add_argument("--batch-norm", choices=("on", "off", "both"), default="on",
                   help="networks with batch normalization, without, or both (default: on)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="training steps per timed sample (default: 50; --quick: 10)")
    p.add_argument("--repeats", type=positive_int, default=None, metavar="N",
                   help="timed samples per contender (default: 15; --quick: 3)")
    p.add_argument("--warmup", type=positive_int, default=None, metavar="N",
                   help="alternating rounds run and discarded after each contender's first "
                        "call (default: 2; --quick: 1)")
    p.add_argument("--experiment", action="store_true",
                   help="also time a full 2-cycle training run of the 3-layer BN network per "
                        "backend and for PyTorch (minutes; ignored with --quick)")
    p.add_argument("--data", default=None, metavar="PATH",
                   help="CIFAR-10 archive or folder for --experiment (default: $FASTKBN_DATA, "
                        "else random data of CIFAR-10's shape)")
    p.add_argument("--json", default="bench-results.json", metavar="FILE",
                   help="file for the results as JSON (default: bench-results.json)")
    p.add_argument("--markdown", default=None, metavar="FILE",
                   help="also write the results as a bench/RESULTS.md entry to FILE")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    """Run the comparison, print the tables and write the JSON record."""
    settings = settings_from_args(args)
    record = run_comparison(settings)
    path = Path(args.json)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)
    print(format_report(record))
    print(f"\nwrote {path}")
    if args.markdown:
        Path(args.markdown).write_text(format_markdown_entry(record))
        print(f"wrote {args.markdown}")
    return 0
