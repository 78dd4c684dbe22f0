"""The public ``Network``: parameters, inference, loss, gradients, saving and loading.

A network owns two flat buffers, ``theta`` (every parameter) and ``running`` (the running
averages of batch normalization), laid out by :class:`fastkbn.layout.Layout`, and delegates the
arithmetic to a backend. Every public method validates its inputs before it calls the backend.
"""
from __future__ import annotations

import json
import logging
import numbers
import zipfile
from pathlib import Path

import numpy as np

from . import config
from .backends import get_backend
from .fileio import save_npz_atomic
from .layout import Layout
from .validation import (check_dtype, check_finite_number, check_sizes, check_X, check_y)

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Initializations: name -> standard deviation of W for a layer of the given widths.

def _he_sigma(d_in, d_out):
    return np.sqrt(2.0 / d_in)


def _xavier_sigma(d_in, d_out):
    # Glorot and Bengio's normal initialization: variance 2 / (fan_in + fan_out).
    return np.sqrt(2.0 / (d_in + d_out))


INITS = {"he": _he_sigma, "xavier": _xavier_sigma}


def _check_init(init):
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; expected one of {', '.join(INITS)} or a "
                             "positive float standard deviation")
        return init
    if isinstance(init, numbers.Real) and not isinstance(init, bool):
        return check_finite_number("init (the weights' standard deviation)", init, minimum=0.0,
                                   strict=True)
    raise ValueError(f"invalid init {init!r}; expected one of {', '.join(INITS)} or a positive "
                     "float standard deviation")


class Network:
    """A k-layer fully connected network with optional batch normalization.

    Parameters
    ----------
    sizes : sequence of int
        ``[d, h1, ..., h_{k-1}, K]``: input width, hidden widths, number of classes.
    batch_norm : bool
        Normalize every hidden layer's ``S`` with batch statistics (training) or running
        averages (inference), then scale by ``gamma`` and shift by ``beta``.
    init : {"he", "xavier"} or float
        Weight initialization: He (normal, sigma = sqrt(2 / d_in)), Xavier (normal,
        sigma = sqrt(2 / (d_in + d_out))) or normal with this sigma for every layer.
        Biases and beta start at 0, gamma at 1.
    dtype : {"float32", "float64"}
        Precision of the parameters and of the data the network accepts.
    backend : {"auto", "numpy", "numba", "cython"} or None
        Implementation of the arithmetic. ``None`` reads ``$FASTKBN_BACKEND``, then "auto".
    seed : int, numpy.random.Generator or None
        Source of the initial weights.
    alpha : float in [0, 1)
        Momentum of the running averages: ``avg <- alpha * avg + (1 - alpha) * batch``.

    Attributes
    ----------
    theta : ndarray, shape (n_params,)
        Every parameter in one buffer; :attr:`params` gives named views into it.
    running : ndarray, shape (n_stats,)
        Running means and variances; they start at 0 and 1.
    """

    def __init__(self, sizes, batch_norm=True, init="he", dtype="float32", backend="auto",
                 seed=None, alpha=config.RUNNING_ALPHA):
        sizes = check_sizes(sizes)
        init = _check_init(init)
        dt = check_dtype(dtype)
        alpha = check_finite_number("alpha", alpha, minimum=0.0, maximum=1.0, strict_max=True)
        if not isinstance(batch_norm, (bool, np.bool_)):
            raise TypeError(f"batch_norm must be True or False, got {batch_norm!r}")
        self._backend = get_backend(backend)

        self.layout = Layout(sizes, bool(batch_norm))
        self.init = init
        self.dtype = dt
        self.alpha = alpha
        self.theta = np.zeros(self.layout.n_params, dtype=dt)
        self.running = np.zeros(self.layout.n_stats, dtype=dt)

        rng = np.random.default_rng(seed)
        params = self.params
        for l in range(self.k):
            d_in, d_out = sizes[l], sizes[l + 1]
            sigma = INITS[init](d_in, d_out) if isinstance(init, str) else init
            params[f"W{l + 1}"][...] = rng.normal(0.0, sigma, size=(d_out, d_in))
            if self.layout.has_bn(l):
                params[f"gamma{l + 1}"][...] = 1
        for name, view in self.running_stats.items():
            if name.startswith("var"):
                view[...] = 1

    # ------------------------------------------------------------------------------------------
    # Description.

    @property
    def sizes(self) -> tuple:
        """``(d, h1, ..., K)``."""
        return self.layout.sizes

    @property
    def k(self) -> int:
        """Number of linear layers."""
        return self.layout.k

    @property
    def batch_norm(self) -> bool:
        """Whether hidden layers use batch normalization."""
        return self.layout.batch_norm

    @property
    def backend(self) -> str:
        """Name of the backend that runs this network."""
        return self._backend.name

    @property
    def params(self) -> dict:
        """Named views into :attr:`theta`: ``W1 (h1, d), b1 (h1,), gamma1, beta1, ..., Wk, bk``."""
        return self.layout.views(self.theta)

    @property
    def running_stats(self) -> dict:
        """Named views into :attr:`running`: ``mean1, var1, ...`` for batch-normalized layers."""
        return self.layout.stat_views(self.running)

    def config(self) -> dict:
        """The constructor arguments, as plain JSON-ready values (without the seed)."""
        return {"sizes": list(self.sizes), "batch_norm": self.batch_norm, "init": self.init,
                "dtype": self.dtype.name, "alpha": self.alpha}

    def __repr__(self):
        return (f"Network(sizes={list(self.sizes)}, batch_norm={self.batch_norm}, "
                f"init={self.init!r}, dtype={self.dtype.name!r}, backend={self.backend!r})")

    def set_backend(self, backend) -> "Network":
        """Switch the implementation that runs this network (parameters are kept); returns self."""
        self._backend = get_backend(backend)
        return self

    def copy(self, dtype=None, backend=None) -> "Network":
        """Return an independent copy, optionally in another dtype or on another backend."""
        other = object.__new__(Network)
        other.__dict__.update(self.__dict__)
        dt = self.dtype if dtype is None else check_dtype(dtype)
        other.dtype = dt
        other.theta = self.theta.astype(dt, copy=True)
        other.running = self.running.astype(dt, copy=True)
        if backend is not None:
            other._backend = get_backend(backend)
        return other

    # ------------------------------------------------------------------------------------------
    # Validation shared by the methods below.

    def check_X(self, X, name="X") -> np.ndarray:
        """Return X as a C-contiguous (n, d) array of the network's dtype, or raise."""
        return check_X(X, self.sizes[0], self.dtype, name)

    def check_Xy(self, X, y, x_name="X", y_name="y"):
        """Validate a data set: X (n, d) of the network's dtype and labels (n,) in 0..K-1."""
        X = self.check_X(X, x_name)
        y = check_y(y, X.shape[0], self.sizes[-1], y_name)
        return X, y

    def _check_batch(self, X, batch_stats):
        if not isinstance(batch_stats, (bool, np.bool_)):
            raise TypeError(f"batch_stats must be True or False, got {batch_stats!r}")
        if batch_stats and self.batch_norm and X.shape[0] < config.MIN_BN_BATCH:
            raise ValueError(f"batch statistics need at least {config.MIN_BN_BATCH} samples, got "
                             f"{X.shape[0]}; pass more samples or use batch_stats=False")

    # ------------------------------------------------------------------------------------------
    # Inference and cost.

    def scores(self, X, *, batch_stats: bool) -> np.ndarray:
        """Scores (n, K) for X (n, d).

        ``batch_stats=True`` normalizes with the statistics of X itself, as in training;
        ``False`` uses the running averages, as at test time. Neither updates the averages.
        """
        X = self.check_X(X)
        self._check_batch(X, batch_stats)
        return self._backend.scores(self, X, bool(batch_stats))

    def forward(self, X, *, batch_stats: bool) -> np.ndarray:
        """Class probabilities (n, K) for X (n, d); see :meth:`scores` for ``batch_stats``."""
        S = self.scores(X, batch_stats=batch_stats).astype(np.float64)
        S -= S.max(axis=1, keepdims=True)
        np.exp(S, out=S)
        S /= S.sum(axis=1, keepdims=True)
        return S.astype(self.dtype, copy=False)

    def predict(self, X, *, batch_stats: bool = False) -> np.ndarray:
        """Predicted labels (n,) int64, with running averages unless ``batch_stats`` is True."""
        return self.scores(X, batch_stats=batch_stats).argmax(axis=1).astype(np.int64)

    def evaluate(self, X, y, lam: float = 0.0, *, batch_stats: bool = False) -> dict:
        """Loss, cost and accuracy on X (n, d) and y (n,) in one forward pass.

        Returns a dict with ``loss`` (mean cross-entropy), ``cost`` (loss plus
        ``lam * sum ||W||^2``) and ``accuracy`` (a fraction in [0, 1]).
        """
        lam = check_finite_number("lam", lam, minimum=0.0)
        X, y = self.check_Xy(X, y)
        self._check_batch(X, batch_stats)
        return self._evaluate_checked(X, y, lam, bool(batch_stats))

    def _evaluate_checked(self, X, y, lam, batch_stats):
        """:meth:`evaluate` for inputs that have already passed validation."""
        S = self._backend.scores(self, X, batch_stats).astype(np.float64)
        S -= S.max(axis=1, keepdims=True)
        log_P = S - np.log(np.exp(S).sum(axis=1, keepdims=True))
        loss = float(-log_P[np.arange(len(y)), y].mean())
        accuracy = float((S.argmax(axis=1) == y).mean())
        return {"loss": loss, "cost": loss + self.regularization(lam), "accuracy": accuracy}

    def regularization(self, lam: float) -> float:
        """``lam * sum_l ||W_l||^2`` over every layer's weights."""
        params = self.params
        return float(lam) * sum(float(np.dot(params[f"W{l + 1}"].ravel().astype(np.float64),
                                             params[f"W{l + 1}"].ravel().astype(np.float64)))
                                for l in range(self.k))

    def accuracy(self, X, y, *, batch_stats: bool = False) -> float:
        """Fraction of X's samples whose predicted label equals y."""
        return self.evaluate(X, y, batch_stats=batch_stats)["accuracy"]

    def loss(self, X, y, *, batch_stats: bool = False) -> float:
        """Mean cross-entropy on X (n, d) and y (n,)."""
        return self.evaluate(X, y, batch_stats=batch_stats)["loss"]

    def cost(self, X, y, lam: float, *, batch_stats: bool = False) -> float:
        """Mean cross-entropy plus ``lam * sum ||W||^2``."""
        return self.evaluate(X, y, lam, batch_stats=batch_stats)["cost"]

    # ------------------------------------------------------------------------------------------
    # Gradients.

    def loss_and_gradients(self, X, y, lam: float = 0.0):
        """Mean cross-entropy and the flat gradient of the cost, with batch statistics.

        Returns ``(loss, grad)`` with ``grad`` laid out like :attr:`theta`. Parameters and
        running averages are left unchanged.
        """
        lam = check_finite_number("lam", lam, minimum=0.0)
        X, y = self.check_Xy(X, y)
        self._check_batch(X, True)
        return self._backend.loss_and_gradients(self, X, y, lam)

    def gradients(self, X, y, lam: float = 0.0) -> dict:
        """Gradients of the cost with batch statistics, keyed ``W1 ... Wk, b1 ..., gamma1 ...``.

        Each value is an array with its parameter's shape. See :meth:`loss_and_gradients`.
        """
        _, grad = self.loss_and_gradients(X, y, lam)
        return {name: view.copy() for name, view in self.layout.views(grad).items()}

    # ------------------------------------------------------------------------------------------
    # Files.

    def state_arrays(self) -> dict:
        """Return every parameter and running average as named arrays, for saving."""
        arrays = {name: view.copy() for name, view in self.params.items()}
        arrays.update({f"running_{name}": view.copy()
                       for name, view in self.running_stats.items()})
        return arrays

    def save(self, path) -> Path:
        """Write the network to a ``.npz`` file, atomically; returns the path written.

        The file holds the format version, the configuration as JSON and every parameter and
        running average under its name. It is written to a temporary file in the same folder and
        then renamed, so an interrupted save never leaves a truncated model behind.
        """
        path = Path(path)
        if not np.isfinite(self.theta).all() or not np.isfinite(self.running).all():
            raise ValueError(f"cannot save to {path}: the network has non-finite parameters, "
                             "which means training diverged; retrain with a lower eta_max")
        meta = {"format_version": config.FORMAT_VERSION, "kind": "network",
                "config": self.config()}
        save_npz_atomic(path, {"meta": np.array(json.dumps(meta)), **self.state_arrays()})
        return path

    @classmethod
    def load(cls, path, backend="auto") -> "Network":
        """Read a network written by :meth:`save` (or a training checkpoint).

        Raises ``ValueError`` naming the file and the key or layer when the file is truncated,
        of another format version, or has a missing array or one of the wrong shape or dtype.
        """
        arrays, meta = load_npz_checked(path)
        cfg = meta["config"]
        net = cls(cfg["sizes"], batch_norm=cfg["batch_norm"], init=cfg["init"],
                  dtype=cfg["dtype"], backend=backend, alpha=cfg["alpha"])
        expected = {**{n: v for n, v in net.params.items()},
                    **{f"running_{n}": v for n, v in net.running_stats.items()}}
        for name, view in expected.items():
            if name not in arrays:
                raise ValueError(f"{path}: missing array {name!r}; the file is incomplete or was "
                                 "not written by fastkbn")
            arr = arrays[name]
            if arr.shape != view.shape:
                raise ValueError(f"{path}: array {name!r} has shape {arr.shape} but the network "
                                 f"{list(net.sizes)} needs {view.shape}")
            if arr.dtype != net.dtype:
                raise ValueError(f"{path}: array {name!r} has dtype {arr.dtype} but the "
                                 f"configuration says {net.dtype}")
            view[...] = arr
        return net


def load_npz_checked(path):
    """Read a fastkbn ``.npz`` file; returns ``(arrays, meta)`` or raises naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the file as a fastkbn .npz ({exc}); it may be "
                         "truncated or of another format") from exc
    if "meta" not in arrays:
        raise ValueError(f"{path}: missing array 'meta'; the file was not written by fastkbn")
    try:
        meta = json.loads(str(arrays.pop("meta")))
        version = meta["format_version"]
        meta["config"]["sizes"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: the 'meta' record is malformed ({exc!r})") from exc
    if version != config.FORMAT_VERSION:
        raise ValueError(f"{path}: format version {version} is not supported; this fastkbn reads "
                         f"version {config.FORMAT_VERSION}")
    return arrays, meta
