"""The interface every backend implements, and the NumPy reference backend.

A backend runs the numerical work of one :class:`fastkbn.Network`: forward with batch statistics
or with running averages, the loss and its gradients, and a run of SGD training steps. It reads
and writes the network's flat buffers ``net.theta`` (parameters) and ``net.running`` (running
averages), laid out as :class:`fastkbn.layout.Layout` says, and never allocates per-layer
parameter arrays of its own.

Backends trust their inputs: ``Network`` checks dtypes, shapes, contiguity, label ranges and
finiteness before calling them. X is C-contiguous of ``net.dtype``, y is int64, ``idx`` is int64.
"""
from __future__ import annotations

import numpy as np

from .. import reference


class Backend:
    """Base class: the operations a backend provides. Subclasses override every method."""

    name = "base"

    def scores(self, net, X, batch_stats: bool) -> np.ndarray:
        """Scores (n, K) for X (n, d), with batch statistics or running averages."""
        raise NotImplementedError

    def loss_and_gradients(self, net, X, y, lam: float):
        """Mean cross-entropy with batch statistics and the flat gradient of the cost.

        Returns ``(loss, grad)``: a float and an array laid out like ``net.theta``. Leaves the
        parameters and running averages unchanged.
        """
        raise NotImplementedError

    def train_steps(self, net, X, y, idx, batch_size: int, etas, lam: float) -> np.ndarray:
        """Run ``len(etas)`` SGD steps in place, as :func:`fastkbn.reference.train_steps` does.

        Returns each step's mean cross-entropy (float64, length ``len(etas)``).
        """
        raise NotImplementedError


class NumpyBackend(Backend):
    """The reference path: plain NumPy, unfused, every intermediate kept."""

    name = "numpy"

    def scores(self, net, X, batch_stats):
        if batch_stats:
            return reference.forward_train(net.theta, net.layout, X)[0]
        return reference.forward_inference(net.theta, net.running, net.layout, X)

    def loss_and_gradients(self, net, X, y, lam):
        return reference.loss_and_gradients(net.theta, net.layout, X, y, lam)

    def train_steps(self, net, X, y, idx, batch_size, etas, lam):
        # Overflow while diverging is reported by the training loop's finiteness check.
        with np.errstate(over="ignore", invalid="ignore"):
            return reference.train_steps(net.theta, net.running, net.layout, X, y, idx,
                                         batch_size, etas, lam, net.alpha)
