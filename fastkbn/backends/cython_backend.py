"""The ``cython`` backend: thin wrappers around the fused kernels in ``fastkbn.kernels._cykernels``.

``fastkbn.Network`` validates every input before a backend sees it. The wrappers here only
convert the layout tables and learning rates to the arrays the kernels take, allocate the
outputs, and assert the contiguity that the kernels rely on. A whole ``train_steps`` call runs
in compiled code with the GIL released; BLAS threads are whatever threadpoolctl (or the BLAS
default) sets.
"""
from __future__ import annotations

import numpy as np

from ..config import BN_EPS
from ..kernels import _cykernels
from .base import Backend


def _layout_tables(net):
    """Sizes, offsets and stat_offsets of ``net`` as the int64 arrays the kernels take."""
    layout = net.layout
    return layout.sizes_array, layout.offsets, layout.stat_offsets, layout.batch_norm


def _check_buffers(net, X):
    # Cheap guards for the kernels' preconditions, which read raw pointers with fixed strides.
    assert net.theta.flags.c_contiguous
    assert net.running.flags.c_contiguous
    assert X.flags.c_contiguous
    assert X.dtype == net.theta.dtype


class CythonBackend(Backend):
    """Fused Cython kernels with BLAS from ``scipy.linalg.cython_blas``, float32 and float64."""

    name = "cython"

    def scores(self, net, X, batch_stats):
        _check_buffers(net, X)
        out = np.empty((X.shape[0], net.sizes[-1]), dtype=net.theta.dtype)
        _cykernels.scores(net.theta, net.running, *_layout_tables(net), X, bool(batch_stats),
                          BN_EPS, out)
        return out

    def loss_and_gradients(self, net, X, y, lam):
        _check_buffers(net, X)
        grad = np.zeros_like(net.theta)
        loss = _cykernels.loss_and_gradients(net.theta, *_layout_tables(net), X,
                                             np.ascontiguousarray(y, dtype=np.int64),
                                             float(lam), BN_EPS, grad)
        return float(loss), grad

    def train_steps(self, net, X, y, idx, batch_size, etas, lam):
        _check_buffers(net, X)
        etas = np.ascontiguousarray(etas, dtype=np.float64)
        idx = np.ascontiguousarray(idx, dtype=np.int64)
        losses = np.empty(etas.shape[0], dtype=np.float64)
        if etas.shape[0] == 0:
            return losses
        batch_size = int(batch_size)
        # Every step needs at least one row; the kernel reads idx without bounds checks.
        assert idx.shape[0] > (etas.shape[0] - 1) * batch_size
        _cykernels.train_steps(net.theta, net.running, *_layout_tables(net), X,
                               np.ascontiguousarray(y, dtype=np.int64), idx, batch_size, etas,
                               float(lam), float(net.alpha), BN_EPS, losses)
        return losses
