"""fastkbn: fast CPU training of k-layer fully connected networks with batch normalization.

Public API: :class:`Network`, :func:`train`, :func:`cyclical_lr`, :func:`gradcheck`,
:func:`load_cifar10`, and the named experiments in :mod:`fastkbn.experiments`.
"""
# The compiled kernels call SciPy's BLAS, a library separate from NumPy's. threadpoolctl only
# limits libraries that are already loaded, so load it here for limits set right after import.
import scipy.linalg  # noqa: F401

from .backends import available_backends, get_backend
from .errors import BackendUnavailableError, TrainingDivergedError
from .gradcheck import gradcheck
from .network import Network
from .schedules import CyclicalSchedule, cyclical_lr
from .training import History, train

__version__ = "0.1.0"


def __getattr__(name):
    # The data module pulls in tarfile and urllib; import it on first use.
    if name in ("load_cifar10", "Dataset"):
        from . import data
        return getattr(data, name)
    raise AttributeError(f"module 'fastkbn' has no attribute {name!r}")


__all__ = ["BackendUnavailableError", "CyclicalSchedule", "Dataset", "History", "Network",
           "TrainingDivergedError", "available_backends", "cyclical_lr", "get_backend",
           "gradcheck", "load_cifar10", "train"]
