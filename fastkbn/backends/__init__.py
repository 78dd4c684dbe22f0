"""Backend registry: names to implementations, and the choice behind ``backend="auto"``.

Backends are imported on first use, so a missing optional dependency only matters to the user
who asks for that backend.
"""
from __future__ import annotations

import importlib
import os

from ..errors import BackendUnavailableError
from .base import Backend, NumpyBackend

# name -> (module, class, how to make it available)
_REGISTRY = {
    "numpy": ("fastkbn.backends.base", "NumpyBackend", "it ships with fastkbn"),
    "numba": ("fastkbn.backends.numba_backend", "NumbaBackend",
              "install numba: pip install numba"),
    "cython": ("fastkbn.backends.cython_backend", "CythonBackend",
               "reinstall fastkbn from source with a C compiler so its Cython kernels build: "
               "pip install --force-reinstall --no-deps ."),
}

# Order that "auto" tries; fastest first, as measured by the comparison in bench/.
AUTO_ORDER = ("cython", "numba", "numpy")

ENV_VAR = "FASTKBN_BACKEND"

_instances: dict = {}


def backend_names() -> list:
    """Return every registered backend name, plus ``"auto"``."""
    return ["auto", *_REGISTRY]


def get_backend(name: str | None = None) -> Backend:
    """Return the backend called ``name``.

    ``None`` means ``$FASTKBN_BACKEND``, then ``"auto"``; ``"auto"`` picks the first available
    of :data:`AUTO_ORDER`.

    Raises
    ------
    ValueError
        If ``name`` is not a registered backend.
    BackendUnavailableError
        If the backend's module cannot be imported; the message tells how to install it.
    """
    if name is None:
        name = os.environ.get(ENV_VAR) or "auto"
    if not isinstance(name, str) or name not in backend_names():
        source = f" (from ${ENV_VAR})" if name == os.environ.get(ENV_VAR) else ""
        raise ValueError(f"unknown backend {name!r}{source}; expected one of "
                         f"{', '.join(backend_names())}")
    if name == "auto":
        for candidate in AUTO_ORDER:
            try:
                return get_backend(candidate)
            except BackendUnavailableError:
                continue
        raise AssertionError("unreachable: the numpy backend is always available")
    if name not in _instances:
        module_name, class_name, hint = _REGISTRY[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise BackendUnavailableError(
                f"backend {name!r} is not available ({exc}); to use it, {hint}") from exc
        _instances[name] = getattr(module, class_name)()
    return _instances[name]


def available_backends() -> list:
    """Names of the backends that import on this machine."""
    out = []
    for name in _REGISTRY:
        try:
            get_backend(name)
        except BackendUnavailableError:
            continue
        out.append(name)
    return out


__all__ = ["Backend", "NumpyBackend", "AUTO_ORDER", "available_backends", "backend_names",
           "get_backend"]
