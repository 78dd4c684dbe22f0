"""Offsets of each layer's parameters inside one flat buffer.

A network keeps all its parameters in one contiguous 1-D array ``theta`` and all its running
averages in another, ``running``. The compiled kernels take these buffers and an offset table
instead of lists of arrays, and the SGD update, checkpoints and gradient checks work on one array.
This module computes the offsets and hands out named views.

Layer ``l`` (0-based) stores, in this order: ``W`` with shape ``(d_out, d_in)`` row-major, ``b``
``(d_out,)``, then for hidden layers with batch normalization ``gamma`` and ``beta``
``(d_out,)``. The running buffer stores, for the same hidden layers, the mean then the variance.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Columns of Layout.offsets.
W, B, GAMMA, BETA = 0, 1, 2, 3
ABSENT = -1


@dataclass(frozen=True)
class Layout:
    """Offsets of every parameter of a network of the given sizes.

    Parameters
    ----------
    sizes : tuple of int
        ``(d, h1, ..., h_{k-1}, K)``: input width, hidden widths and number of classes.
    batch_norm : bool
        Whether hidden layers carry ``gamma``, ``beta`` and running averages.

    Attributes
    ----------
    offsets : ndarray of int64, shape (k, 4)
        Start of ``W``, ``b``, ``gamma`` and ``beta`` of each layer in ``theta``; ``-1`` where a
        layer has no such parameter.
    stat_offsets : ndarray of int64, shape (k,)
        Start of each layer's running mean in ``running`` (its variance follows it); ``-1`` for
        layers without batch normalization.
    n_params, n_stats : int
        Lengths of ``theta`` and ``running``.
    """

    sizes: tuple
    batch_norm: bool
    offsets: np.ndarray = field(init=False, repr=False, compare=False)
    stat_offsets: np.ndarray = field(init=False, repr=False, compare=False)
    n_params: int = field(init=False)
    n_stats: int = field(init=False)

    def __post_init__(self):
        k = len(self.sizes) - 1
        offsets = np.full((k, 4), ABSENT, dtype=np.int64)
        stat_offsets = np.full(k, ABSENT, dtype=np.int64)
        pos = 0
        stat_pos = 0
        for l in range(k):
            d_in, d_out = self.sizes[l], self.sizes[l + 1]
            offsets[l, W] = pos
            pos += d_out * d_in
            offsets[l, B] = pos
            pos += d_out
            if self.has_bn(l):
                offsets[l, GAMMA] = pos
                pos += d_out
                offsets[l, BETA] = pos
                pos += d_out
                stat_offsets[l] = stat_pos
                stat_pos += 2 * d_out
        offsets.flags.writeable = False
        stat_offsets.flags.writeable = False
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "stat_offsets", stat_offsets)
        object.__setattr__(self, "n_params", pos)
        object.__setattr__(self, "n_stats", stat_pos)

    @property
    def k(self) -> int:
        """Number of linear layers."""
        return len(self.sizes) - 1

    @property
    def sizes_array(self) -> np.ndarray:
        """``sizes`` as an int64 array, as the compiled kernels take it."""
        return np.asarray(self.sizes, dtype=np.int64)

    def has_bn(self, l: int) -> bool:
        """Tell whether layer ``l`` (0-based) is a hidden layer with batch normalization."""
        return self.batch_norm and l < self.k - 1

    def names(self) -> list:
        """Parameter names in buffer order: ``W1, b1, gamma1, beta1, W2, ...`` (1-based)."""
        out = []
        for l in range(self.k):
            out += [f"W{l + 1}", f"b{l + 1}"]
            if self.has_bn(l):
                out += [f"gamma{l + 1}", f"beta{l + 1}"]
        return out

    def slices(self) -> dict:
        """Map each parameter name to ``(slice into theta, shape)``."""
        out = {}
        for l in range(self.k):
            d_in, d_out = self.sizes[l], self.sizes[l + 1]
            start = int(self.offsets[l, W])
            out[f"W{l + 1}"] = (slice(start, start + d_out * d_in), (d_out, d_in))
            for col, name in ((B, "b"), (GAMMA, "gamma"), (BETA, "beta")):
                start = int(self.offsets[l, col])
                if start != ABSENT:
                    out[f"{name}{l + 1}"] = (slice(start, start + d_out), (d_out,))
        return out

    def views(self, theta: np.ndarray) -> dict:
        """Named views into ``theta`` (writes through), keyed as in :meth:`names`."""
        return {name: theta[sl].reshape(shape) for name, (sl, shape) in self.slices().items()}

    def stat_slices(self) -> dict:
        """Map ``mean{l}`` and ``var{l}`` (1-based) to slices into ``running``."""
        out = {}
        for l in range(self.k):
            start = int(self.stat_offsets[l])
            if start != ABSENT:
                d_out = self.sizes[l + 1]
                out[f"mean{l + 1}"] = slice(start, start + d_out)
                out[f"var{l + 1}"] = slice(start + d_out, start + 2 * d_out)
        return out

    def stat_views(self, running: np.ndarray) -> dict:
        """Named views into ``running`` (writes through): ``mean1, var1, ...``."""
        return {name: running[sl] for name, sl in self.stat_slices().items()}
