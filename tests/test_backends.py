"""The backend registry: names, the environment default and missing backends."""
import pytest

import fastkbn
from fastkbn import backends
from fastkbn.errors import BackendUnavailableError


def test_auto_picks_first_available():
    expected = next(name for name in backends.AUTO_ORDER
                    if name in fastkbn.available_backends())
    assert fastkbn.get_backend("auto").name == expected


def test_environment_variable_sets_default(monkeypatch):
    monkeypatch.setenv("FASTKBN_BACKEND", "numpy")
    assert fastkbn.Network([4, 3], backend=None).backend == "numpy"
    monkeypatch.setenv("FASTKBN_BACKEND", "gpu")
    with pytest.raises(ValueError, match=r"unknown backend 'gpu' \(from \$FASTKBN_BACKEND\)"):
        fastkbn.Network([4, 3], backend=None)


def test_missing_backend_says_how_to_install(monkeypatch):
    monkeypatch.setitem(backends._REGISTRY, "numba",
                        ("fastkbn.backends.not_installed", "Missing", "install numba: pip "
                         "install numba"))
    monkeypatch.setattr(backends, "_instances", {})
    with pytest.raises(BackendUnavailableError, match="'numba' is not available .* pip install "
                                                      "numba"):
        fastkbn.Network([4, 3], backend="numba")
    assert "numba" not in fastkbn.available_backends()
    assert fastkbn.get_backend("auto").name in ("cython", "numpy")
