"""The Numba backend: thin wrappers that hand a network's flat buffers to compiled kernels.

The kernels live in ``fastkbn.kernels.numba_kernels``. This module converts the arguments to the
types the kernels are compiled for (int64 tables, float64 learning rates, Python floats). It logs
the duration of each kernel's first call at debug level: that call compiles the kernel or loads
it from the disk cache. ``fastkbn.Network`` validates every input before these methods run.

BLAS threads are the caller's choice, through threadpoolctl. NOTE: the kernels call SciPy's
OpenBLAS, which is loaded when this module is first imported. A ``threadpool_limits`` block
entered before that import does not reach it, so import the backend (or ``scipy.linalg``) first.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from ..kernels import numba_kernels as kernels
from .base import Backend

logger = logging.getLogger(__name__)


class NumbaBackend(Backend):
    """Fused kernels compiled by Numba, one specialization per dtype."""

    name = "numba"

    def __init__(self):
        # (entry point name, dtype) pairs that have run once, to log first-call compile times.
        self._called = set()

    def _run(self, entry, dtype, *args):
        """Call the kernel ``entry``, logging the duration of its first call for ``dtype``."""
        function = getattr(kernels, entry)
        key = (entry, np.dtype(dtype).name)
        if key in self._called:
            return function(*args)
        start = time.perf_counter()
        result = function(*args)
        self._called.add(key)
        logger.debug("numba kernel %s for %s: first call took %.2f s (compiling or loading "
                     "from the cache)", entry, key[1], time.perf_counter() - start)
        return result

    @staticmethod
    def _tables(net):
        layout = net.layout
        return layout.offsets, layout.stat_offsets, layout.sizes_array, bool(layout.batch_norm)

    def scores(self, net, X, batch_stats):
        offsets, stat_offsets, sizes, batch_norm = self._tables(net)
        if batch_stats:
            return self._run("scores_batch_stats", net.dtype, net.theta, offsets, stat_offsets,
                             sizes, batch_norm, X, net.layout.n_stats)
        return self._run("scores_running", net.dtype, net.theta, net.running, offsets,
                         stat_offsets, sizes, batch_norm, X)

    def loss_and_gradients(self, net, X, y, lam):
        offsets, stat_offsets, sizes, batch_norm = self._tables(net)
        loss, grad = self._run("loss_and_gradients", net.dtype, net.theta, offsets, stat_offsets,
                               sizes, batch_norm, X, y, float(lam), net.layout.n_stats)
        return float(loss), grad

    def train_steps(self, net, X, y, idx, batch_size, etas, lam):
        offsets, stat_offsets, sizes, batch_norm = self._tables(net)
        etas = np.ascontiguousarray(etas, dtype=np.float64)
        if etas.size == 0:
            return np.zeros(0, dtype=np.float64)
        return self._run("train_steps", net.dtype, net.theta, net.running, offsets, stat_offsets,
                         sizes, batch_norm, X, y, idx, int(batch_size), etas, float(lam),
                         float(net.alpha))
