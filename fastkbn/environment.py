"""Descriptions of the machine, BLAS and library versions, for benchmark records and reports."""
from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

from threadpoolctl import threadpool_info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _physical_cores():
    """Distinct (physical id, core id) pairs in /proc/cpuinfo, or None where it is unreadable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    cores = set()
    for block in text.strip().split("\n\n"):
        fields_ = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields_ = {k.strip(): v.strip() for k, v in fields_.items()}
        if "core id" in fields_:
            cores.add((fields_.get("physical id"), fields_["core id"]))
    return len(cores) or None


def load_average():
    """Return the 1, 5 and 15 minute load averages, or None where the system has none."""
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def machine_info() -> dict:
    """CPU model, core counts, operating system and Python."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu_model": _cpu_model(), "logical_cores": os.cpu_count(),
            "physical_cores": _physical_cores(), "usable_cores": usable,
            "platform": platform.platform(), "python": platform.python_version()}


def library_versions() -> dict:
    """Installed versions of fastkbn and the libraries the contenders use (None if absent)."""
    versions = {}
    for name in ("fastkbn", "numpy", "scipy", "numba", "torch", "threadpoolctl", "Cython"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def blas_info() -> list:
    """BLAS and OpenMP libraries loaded in this process, as threadpoolctl reports them.

    SciPy's BLAS (which the Cython kernels call through ``scipy.linalg.cython_blas``) is loaded
    first so that it is listed when it is a separate library from NumPy's.
    """
    import scipy.linalg  # noqa: F401  (loads SciPy's BLAS)
    keys = ("user_api", "internal_api", "prefix", "version", "architecture", "threading_layer",
            "num_threads", "filepath")
    return [{k: info.get(k) for k in keys} for info in threadpool_info()]
