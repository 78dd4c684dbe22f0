"""Smoke test of ``fastkbn bench --quick``: it runs and writes a JSON record of the expected shape.

The figures themselves are not checked: they depend on the machine and its load.
"""
import importlib.util
import json
import math

import pytest

from fastkbn import available_backends
from fastkbn.benchmark import BASELINES, NETWORKS, OPENBLAS_ENV_VARS
from fastkbn.cli import main

HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.fixture(scope="module")
def quick_record(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "quick.json"
    status = main(["bench", "--quick", "--json", str(path)])
    assert status == 0
    return json.loads(path.read_text())


def test_quick_record_top_level_keys(quick_record):
    for key in ("schema_version", "created", "command", "git_commit", "settings", "environment",
                "machine", "versions", "blas", "threads", "groups", "skipped", "targets",
                "load_average"):
        assert key in quick_record, key
    assert quick_record["threads"] == [1]
    assert quick_record["command"].startswith("fastkbn bench --quick")
    assert set(quick_record["environment"]) == set(OPENBLAS_ENV_VARS)


def test_quick_record_machine_and_versions(quick_record):
    machine = quick_record["machine"]
    assert machine["cpu_model"]
    assert machine["logical_cores"] >= 1
    for name in ("fastkbn", "numpy", "scipy", "numba", "torch", "threadpoolctl"):
        assert name in quick_record["versions"], name
    assert quick_record["versions"]["numpy"]


def test_quick_record_blas(quick_record):
    blas = [b for b in quick_record["blas"] if b["user_api"] == "blas"]
    assert blas, "threadpoolctl reported no BLAS library"
    for entry in blas:
        assert entry["internal_api"]
        assert entry["version"]
        assert "architecture" in entry
        assert "num_threads" in entry


def test_quick_record_groups_cover_both_nets(quick_record):
    groups = quick_record["groups"]
    assert {g["net"] for g in groups} == set(NETWORKS)
    for group in groups:
        assert group["threads"] == 1
        assert group["sizes"] == list(NETWORKS[group["net"]])
        names = {(r["contender"], r["dtype"]) for r in group["results"]}
        for dtype in ("float32", "float64"):
            assert ("numpy", dtype) in names
            assert ("gemm", dtype) in names
            if HAS_TORCH:
                assert ("torch", dtype) in names
            for backend in available_backends():
                assert (backend, dtype) in names


def test_quick_record_timings_positive(quick_record):
    for group in quick_record["groups"]:
        for result in group["results"]:
            assert result["median"] > 0
            assert math.isfinite(result["median"])
            assert len(result["samples"]) == quick_record["settings"]["repeats"]
            assert result["first_call_s"] >= 0


def test_quick_record_ratio_columns(quick_record):
    for group in quick_record["groups"]:
        assert len(group["ratios"]) == len(group["results"])
        for row in group["ratios"]:
            assert set(row["ratios"]) == set(BASELINES)
            assert row["ratios"]["numpy-float64"] is not None
            assert row["ratios"]["gemm"] is not None
            if HAS_TORCH:
                assert row["ratios"]["torch"] is not None


def test_quick_record_targets(quick_record):
    compiled = [b for b in available_backends() if b != "numpy"]
    if not compiled:
        pytest.skip("no compiled backend is available, so no target applies")
    assert quick_record["targets"]
    for outcome in quick_record["targets"]:
        assert outcome["backend"] in compiled
        assert outcome["met"] in (True, False, None)
