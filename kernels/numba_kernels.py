"""Numba kernels: fused forward, backward and SGD steps over a network's flat buffers.

The NumPy reference (``fastkbn.reference``) is the oracle, and these kernels compute the same
quantities with the loops merged. A hidden layer's forward is one GEMM and then one function that
takes the batch statistics, normalizes, scales, shifts and applies the ReLU. Its backward is one
function that applies the ReLU mask, forms dgamma and dbeta, and turns both column reductions into
dS, followed by the GEMMs for dW and for the gradient of the layer below. ``train_steps`` runs a
whole stretch of SGD steps, batch gathering included, in one call to compiled code, and folds
each W update into its dW GEMM. The GEMMs call SciPy's BLAS (sgemm or dgemm) directly.

Every kernel serves float32 and float64 from one source: Numba compiles one specialization per
dtype, and batch normalization is a runtime flag, not a compile-time one.

Preconditions, checked by ``fastkbn.Network`` before a backend runs and never here:

- ``theta`` (n_params,) and ``running`` (n_stats,) are C-contiguous arrays of one float dtype,
  laid out by ``fastkbn.layout.Layout``.
- ``offsets`` (k, 4), ``stat_offsets`` (k,) and ``sizes`` (k + 1,) are that layout's int64 tables.
- ``X`` (n, d) is C-contiguous of theta's dtype, with ``d == sizes[0]``.
- ``y`` (n,) is int64 with every label in ``0 .. sizes[-1] - 1``.
- ``idx`` is int64 with every entry in ``0 .. n - 1`` and at least
  ``(len(etas) - 1) * batch_size + 1`` entries; ``etas`` is float64.
- With batch statistics and batch normalization, every batch has at least two rows.

Numba caches the compiled code on disk. At import this module picks a writable cache folder
(``$NUMBA_CACHE_DIR``, the ``__pycache__`` folder next to this file, then a folder under the
user's cache dir or the temp dir) and compiles without a cache when none is writable.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

import llvmlite.binding
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

from fastkbn.config import BN_EPS

logger = logging.getLogger(__name__)

# Columns of the offsets table, as in fastkbn.layout.
_W, _B, _GAMMA, _BETA = 0, 1, 2, 3


# ----------------------------------------------------------------------------------------------
# Cache location.

def _is_writable_dir(path) -> bool:
    """Test whether ``path`` exists or can be created, and accepts a new file."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError:
        return False
    return True


def _user_cache_root() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) if xdg else Path.home() / ".cache"


def _choose_cache_dir():
    """Pick where Numba writes its cache for this module.

    Returns ``(enabled, folder)``. ``folder`` is None when Numba's own locators find a writable
    place (``$NUMBA_CACHE_DIR``, which Numba tries first, or ``__pycache__`` next to this file),
    otherwise a fallback folder that this module hands to Numba. ``enabled`` is False when no
    candidate is writable.
    """
    user_dir = numba.config.CACHE_DIR
    if user_dir and _is_writable_dir(user_dir):
        return True, None
    if _is_writable_dir(Path(__file__).resolve().parent / "__pycache__"):
        return True, None

    fallbacks = []
    try:
        fallbacks.append(_user_cache_root() / "fastkbn" / "numba")
    except RuntimeError:
        # Path.home() raises RuntimeError when no home directory can be determined.
        pass
    fallbacks.append(Path(tempfile.gettempdir()) / f"fastkbn-numba-{os.getuid()}")
    for folder in fallbacks:
        if _is_writable_dir(folder):
            return True, str(folder)
    return False, None


CACHE_ENABLED, CACHE_DIR = _choose_cache_dir()
"""Whether the kernels are cached on disk, and the fallback folder (None: Numba's own choice)."""

if not CACHE_ENABLED:
    logger.debug("no writable Numba cache folder found; compiling fastkbn kernels without a "
                 "disk cache")
elif CACHE_DIR is not None:
    logger.debug("caching fastkbn's Numba kernels in %s", CACHE_DIR)


@contextlib.contextmanager
def _numba_cache_dir(folder):
    """Point Numba's user-provided cache locator at ``folder`` while kernels are decorated.

    Numba's locator copies ``numba.config.CACHE_DIR`` when a dispatcher is created, so restoring
    the setting afterwards leaves other libraries' caching as it was.
    """
    if folder is None:
        yield
        return
    saved = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = folder
    try:
        yield
    finally:
        numba.config.CACHE_DIR = saved


def _kernel(func):
    """Compile ``func`` in nopython mode, cached on disk when a cache folder is writable.

    ``error_model="numpy"`` gives IEEE results (inf, NaN) for a division by zero instead of a
    Python exception, as NumPy does, and keeps the inner loops free of checks.
    """
    if CACHE_ENABLED:
        with _numba_cache_dir(CACHE_DIR):
            try:
                return numba.njit(cache=True, error_model="numpy")(func)
            except RuntimeError as exc:
                # Numba raises RuntimeError when none of its cache locators is usable.
                logger.debug("caching %s failed (%s); compiling it without a disk cache",
                             func.__name__, exc)
    return numba.njit(error_model="numpy")(func)


# ----------------------------------------------------------------------------------------------
# BLAS.

# SciPy's BLAS (32-bit integers) under symbol names that compiled code resolves when it is linked,
# so the calls survive Numba's disk cache, which stores no absolute addresses.
_GEMM_SYMBOLS = {types.float32: "fastkbn_sgemm", types.float64: "fastkbn_dgemm"}
for _dtype, _symbol in _GEMM_SYMBOLS.items():
    _routine = "sgemm" if _dtype == types.float32 else "dgemm"
    llvmlite.binding.add_symbol(
        _symbol, get_cython_function_address("scipy.linalg.cython_blas", _routine))


@intrinsic
def _fortran_gemm(typingctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """``c := alpha * op(a) op(b) + beta * c`` in BLAS's column-major terms (sgemm or dgemm).

    ``trans_a`` and ``trans_b`` are the BLAS characters as uint8 (``ord("N")`` or ``ord("T")``);
    the sizes are passed by value and copied to stack slots, as the Fortran interface expects.
    """
    if not (isinstance(c, types.Array) and c.dtype in _GEMM_SYMBOLS
            and a.dtype == c.dtype and b.dtype == c.dtype):
        return None
    symbol = _GEMM_SYMBOLS[c.dtype]
    signature = types.void(types.uint8, types.uint8, types.intp, types.intp, types.intp, c.dtype,
                           a, types.intp, b, types.intp, c.dtype, c, types.intp)

    def codegen(context, builder, sig, args):
        pointer = cgutils.voidptr_t
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [pointer] * 13), symbol)

        def by_reference(value):
            return builder.bitcast(cgutils.alloca_once_value(builder, value), pointer)

        def int32_by_reference(value):
            return by_reference(builder.trunc(value, ir.IntType(32)))

        def data(array_type, value):
            array = context.make_array(array_type)(context, builder, value)
            return builder.bitcast(array.data, pointer)

        (trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) = args
        builder.call(function, [
            by_reference(trans_a), by_reference(trans_b),
            int32_by_reference(m), int32_by_reference(n), int32_by_reference(k),
            by_reference(alpha), data(sig.args[6], a), int32_by_reference(lda),
            data(sig.args[8], b), int32_by_reference(ldb),
            by_reference(beta), data(sig.args[11], c), int32_by_reference(ldc)])
        return context.get_dummy_value()

    return signature, codegen


# ----------------------------------------------------------------------------------------------
# Small helpers.

@_kernel
def _as_dtype_of(value, like):
    """Convert ``value`` to the dtype of the array ``like``."""
    out = np.empty(1, dtype=like.dtype)
    out[0] = value
    return out[0]


@_kernel
def _gemm(transpose_A, transpose_B, alpha, A, B, beta, C):
    """``C := alpha * op(A) op(B) + beta * C`` for C-contiguous (row-major) A, B and C.

    op(A) is A.T when ``transpose_A`` is True, else A; likewise for B. BLAS is column-major, where
    the row-major C is C.T, so this computes ``C.T := alpha * op(B).T op(A).T + beta * C.T``.
    """
    m, n = C.shape
    k = A.shape[0] if transpose_A else A.shape[1]
    if m == 0 or n == 0:
        return
    trans_B = np.uint8(84) if transpose_B else np.uint8(78)
    trans_A = np.uint8(84) if transpose_A else np.uint8(78)
    _fortran_gemm(trans_B, trans_A, n, m, k, alpha, B, max(B.shape[1], 1), A,
                  max(A.shape[1], 1), beta, C, n)


@_kernel
def _weights(theta, offsets, sizes, l):
    """Return layer ``l``'s W (d_out, d_in), a view into theta."""
    d_in = sizes[l]
    d_out = sizes[l + 1]
    start = offsets[l, _W]
    return theta[start:start + d_out * d_in].reshape((d_out, d_in))


@_kernel
def _vector(buffer, start, length):
    """Return a (length,) view into a flat buffer."""
    return buffer[start:start + length]


@_kernel
def _matrix(buffer, start, rows, cols):
    """Return a C-contiguous (rows, cols) view into a flat buffer."""
    return buffer[start:start + rows * cols].reshape((rows, cols))


# ----------------------------------------------------------------------------------------------
# Hidden layer: linear, batch normalization and ReLU, forward beside backward.

@_kernel
def _hidden_forward_train(H_in, W, b, gamma, beta, S_hat, H_out, mu, v, std, batch_norm):
    """Forward of one hidden layer with batch statistics.

    H_in is (n, d_in), W is (d_out, d_in), b, gamma, beta are (d_out,). Writes S_hat (n, d_out),
    H_out (n, d_out), the batch mean mu, the biased batch variance v and std = sqrt(v + eps), all
    (d_out,). Without batch normalization S_hat receives S, and gamma, beta, mu, v, std are unused.
    """
    n, d_out = H_out.shape
    zero = _as_dtype_of(0.0, H_out)

    # S = H_in W^T, written into S_hat's buffer; the bias is added in the pass below.
    _gemm(False, True, 1.0, H_in, W, 0.0, S_hat)

    if not batch_norm:
        for i in range(n):
            for j in range(d_out):
                s = S_hat[i, j] + b[j]
                S_hat[i, j] = s
                H_out[i, j] = zero if s < zero else s
        return

    eps = _as_dtype_of(BN_EPS, H_out)
    n_rows = _as_dtype_of(n, H_out)

    # First pass: add the bias and sum the columns, for the batch mean.
    mu[:] = zero
    for i in range(n):
        for j in range(d_out):
            s = S_hat[i, j] + b[j]
            S_hat[i, j] = s
            mu[j] += s
    for j in range(d_out):
        mu[j] = mu[j] / n_rows

    # Second pass: the variance from squared deviations (stable, unlike E[S^2] - mu^2). It is the
    # biased one, divided by n, which is what the backward formula differentiates.
    v[:] = zero
    for i in range(n):
        for j in range(d_out):
            deviation = S_hat[i, j] - mu[j]
            v[j] += deviation * deviation
    for j in range(d_out):
        v[j] = v[j] / n_rows
        std[j] = np.sqrt(v[j] + eps)

    # Third pass: normalize (kept for backward), scale, shift and apply the ReLU.
    for i in range(n):
        for j in range(d_out):
            s_hat = (S_hat[i, j] - mu[j]) / std[j]
            S_hat[i, j] = s_hat
            s_tilde = gamma[j] * s_hat + beta[j]
            H_out[i, j] = zero if s_tilde < zero else s_tilde


@_kernel
def _hidden_backward(delta, S_hat, H_out, gamma, std, dgamma, dbeta, db, through, batch_norm):
    """Backward of one hidden layer's ReLU and batch normalization, in place on ``delta``.

    delta (n, d_out) contains dL/dH_out on entry and dL/dS on exit. S_hat and H_out (n, d_out) and
    gamma, std (d_out,) come from :func:`_hidden_forward_train`. Writes dgamma, dbeta and db (the
    column sums of dS), all (d_out,); ``through`` is (2, d_out) scratch. Without batch
    normalization dS is the masked gradient, and dgamma, dbeta, through are unused.
    """
    n, d_out = delta.shape
    zero = _as_dtype_of(0.0, delta)
    one = _as_dtype_of(1.0, delta)

    if not batch_norm:
        db[:] = zero
        for i in range(n):
            for j in range(d_out):
                g = delta[i, j] * (one if H_out[i, j] > zero else zero)
                delta[i, j] = g
                db[j] += g
        return

    n_rows = _as_dtype_of(n, delta)

    # First pass: G = dL/dS_tilde through the ReLU mask, and its two column reductions,
    # dgamma = sum(G * S_hat) and dbeta = sum(G).
    dgamma[:] = zero
    dbeta[:] = zero
    for i in range(n):
        for j in range(d_out):
            g = delta[i, j] * (one if H_out[i, j] > zero else zero)
            delta[i, j] = g
            dgamma[j] += g * S_hat[i, j]
            dbeta[j] += g

    # With G_hat = G * gamma, the gradient reaches S through the batch mean as mean(G_hat) =
    # gamma * dbeta / n and through the batch variance as S_hat * mean(G_hat * S_hat), where
    # mean(G_hat * S_hat) = gamma * dgamma / n.
    through_mean = through[0]
    through_var = through[1]
    for j in range(d_out):
        through_mean[j] = gamma[j] * dbeta[j] / n_rows
        through_var[j] = gamma[j] * dgamma[j] / n_rows

    # Second pass: dS = (G_hat - through_mean - S_hat * through_var) / std, and db = sum(dS).
    db[:] = zero
    for i in range(n):
        for j in range(d_out):
            g_hat = delta[i, j] * gamma[j]
            ds = (g_hat - through_mean[j] - S_hat[i, j] * through_var[j]) / std[j]
            delta[i, j] = ds
            db[j] += ds


@_kernel
def _hidden_forward_running(H_in, W, b, gamma, beta, mean, var, H_out, batch_norm):
    """Forward of one hidden layer with running averages (inference).

    H_in is (n, d_in), W is (d_out, d_in), b, gamma, beta, mean, var are (d_out,); writes H_out
    (n, d_out). Without batch normalization gamma, beta, mean and var are unused.
    """
    n, d_out = H_out.shape
    zero = _as_dtype_of(0.0, H_out)
    eps = _as_dtype_of(BN_EPS, H_out)

    _gemm(False, True, 1.0, H_in, W, 0.0, H_out)

    for i in range(n):
        for j in range(d_out):
            s = H_out[i, j] + b[j]
            if batch_norm:
                s = gamma[j] * (s - mean[j]) / np.sqrt(var[j] + eps) + beta[j]
            H_out[i, j] = zero if s < zero else s


# ----------------------------------------------------------------------------------------------
# Output layer: scores, softmax and cross-entropy.

@_kernel
def _output_forward(H_in, W, b, scores):
    """``scores = H_in W^T + b``. H_in is (n, d_in), W is (K, d_in), b is (K,), scores (n, K)."""
    n, K = scores.shape
    _gemm(False, True, 1.0, H_in, W, 0.0, scores)
    for i in range(n):
        for j in range(K):
            scores[i, j] += b[j]


@_kernel
def _softmax_cross_entropy_backward(scores, y, db):
    """Mean cross-entropy of scores (n, K) for labels y (n,); turns scores into dL/dscores.

    On exit ``scores`` contains (P - Y) / n and db (K,) its column sums. Returns the loss as a
    float64 (the sum over rows runs in float64).
    """
    n, K = scores.shape
    zero = _as_dtype_of(0.0, scores)
    one = _as_dtype_of(1.0, scores)
    n_rows = _as_dtype_of(n, scores)

    loss = 0.0
    db[:] = zero
    for i in range(n):
        row = scores[i]

        # log P = shifted - log(sum(exp(shifted))), with the row maximum shifted to 0.
        row_max = row[0]
        for j in range(1, K):
            if row[j] > row_max:
                row_max = row[j]
        exp_sum = zero
        for j in range(K):
            exp_sum += np.exp(row[j] - row_max)
        log_norm = np.log(exp_sum)
        loss -= row[y[i]] - row_max - log_norm

        # dL/dscores = (P - Y) / n.
        for j in range(K):
            p = np.exp(row[j] - row_max - log_norm)
            if j == y[i]:
                p -= one
            row[j] = p / n_rows
            db[j] += row[j]
    return loss / n


# ----------------------------------------------------------------------------------------------
# Whole network.

@_kernel
def _max_hidden_width(sizes):
    width = 1
    for l in range(1, sizes.shape[0] - 1):
        width = max(width, sizes[l])
    return width


@_kernel
def _train_workspace(theta, stat_size, sizes, rows):
    """Allocate buffers for forward and backward with batch statistics on up to ``rows`` rows.

    Returns ``(S_hat, H, scores, delta, batch_stats, std, through, grad, starts)``. S_hat and H
    are flat buffers with each hidden layer's (rows, d_out) block from ``starts[l]``. scores has
    room for (rows, K) and delta for two (rows, max hidden width) blocks. batch_stats is laid out
    like ``running``, and std has each hidden layer's d_out values from the start of its running
    mean. through is (2, max hidden width) scratch, and grad is laid out like theta.
    """
    k = sizes.shape[0] - 1
    starts = np.zeros(k, dtype=np.int64)
    hidden_total = 0
    for l in range(k - 1):
        starts[l] = rows * hidden_total
        hidden_total += sizes[l + 1]
    width = _max_hidden_width(sizes)
    dtype = theta.dtype

    S_hat = np.empty(rows * hidden_total, dtype=dtype)
    H = np.empty(rows * hidden_total, dtype=dtype)
    scores = np.empty(rows * sizes[k], dtype=dtype)
    delta = np.empty((2, rows * width), dtype=dtype)
    batch_stats = np.empty(stat_size, dtype=dtype)
    std = np.empty(stat_size, dtype=dtype)
    through = np.empty((2, width), dtype=dtype)
    grad = np.zeros_like(theta)
    return S_hat, H, scores, delta, batch_stats, std, through, grad, starts


@_kernel
def _hidden_train_arguments(theta, offsets, stat_offsets, sizes, batch_norm, workspace, l, n):
    """Views of hidden layer l's parameters and buffers, for forward and backward on n rows.

    Returns ``(W, b, gamma, beta, S_hat, H_out, mu, v, std)``. Without batch normalization
    gamma, beta, mu, v and std are placeholders (b) that the layer functions leave unused.
    """
    S_hat_buffer, H_buffer, _, _, batch_stats, std_buffer, _, _, starts = workspace
    d_out = sizes[l + 1]
    W = _weights(theta, offsets, sizes, l)
    b = _vector(theta, offsets[l, _B], d_out)
    S_hat = _matrix(S_hat_buffer, starts[l], n, d_out)
    H_out = _matrix(H_buffer, starts[l], n, d_out)
    if batch_norm:
        gamma = _vector(theta, offsets[l, _GAMMA], d_out)
        beta = _vector(theta, offsets[l, _BETA], d_out)
        mu = _vector(batch_stats, stat_offsets[l], d_out)
        v = _vector(batch_stats, stat_offsets[l] + d_out, d_out)
        std = _vector(std_buffer, stat_offsets[l], d_out)
    else:
        gamma = beta = mu = v = std = b
    return W, b, gamma, beta, S_hat, H_out, mu, v, std


@_kernel
def _forward_train(theta, offsets, stat_offsets, sizes, batch_norm, X, workspace):
    """Run forward with batch statistics for X (n, d) and return the scores (n, K), a view.

    The batch means and variances go to the workspace's batch_stats, never to running.
    """
    k = sizes.shape[0] - 1
    n = X.shape[0]
    H_buffer = workspace[1]
    starts = workspace[8]
    scores = _matrix(workspace[2], 0, n, sizes[k])
    W_out = _weights(theta, offsets, sizes, k - 1)
    b_out = _vector(theta, offsets[k - 1, _B], sizes[k])

    if k == 1:
        _output_forward(X, W_out, b_out, scores)
        return scores

    # X and the hidden activations are separate calls: X may be a read-only array, a different
    # Numba type from the workspace views.
    for l in range(k - 1):
        W, b, gamma, beta, S_hat, H_out, mu, v, std = _hidden_train_arguments(
            theta, offsets, stat_offsets, sizes, batch_norm, workspace, l, n)
        if l == 0:
            _hidden_forward_train(X, W, b, gamma, beta, S_hat, H_out, mu, v, std, batch_norm)
        else:
            H_in = _matrix(H_buffer, starts[l - 1], n, sizes[l])
            _hidden_forward_train(H_in, W, b, gamma, beta, S_hat, H_out, mu, v, std, batch_norm)

    H_last = _matrix(H_buffer, starts[k - 2], n, sizes[k - 1])
    _output_forward(H_last, W_out, b_out, scores)
    return scores


@_kernel
def _backward(theta, offsets, stat_offsets, sizes, batch_norm, X, workspace, lam, update, eta):
    """Run backward for the last :func:`_forward_train` on X, whose scores are now dL/dscores.

    The output layer's b gradient must already be in the workspace's grad, as
    :func:`_softmax_cross_entropy_backward` leaves it. With ``update`` False this fills grad with
    every W gradient (including ``2 * lam * W``) and every hidden layer's b, gamma and beta
    gradient. With ``update`` True it takes the SGD step ``theta <- theta - eta * grad`` instead,
    layer by layer: each W update rides inside its dW GEMM, and grad keeps only the b, gamma and
    beta gradients.
    """
    H_buffer = workspace[1]
    delta_buffer = workspace[3]
    through = workspace[6]
    grad = workspace[7]
    starts = workspace[8]
    k = sizes.shape[0] - 1
    n = X.shape[0]

    # dW = dS^T H_in + 2 lam W as one GEMM: C = W (a copy in grad) with beta = 2 lam. The update
    # W <- W - eta * dW = (1 - 2 eta lam) W - eta dS^T H_in is the same GEMM on W in theta.
    if update:
        gemm_alpha = -eta
        gemm_beta = 1.0 - 2.0 * eta * lam
    else:
        gemm_alpha = 1.0
        gemm_beta = 2.0 * lam

    dS = _matrix(workspace[2], 0, n, sizes[k])
    for l in range(k - 1, -1, -1):
        d_in = sizes[l]
        d_out = sizes[l + 1]
        W = _weights(theta, offsets, sizes, l)

        if l < k - 1:
            # dS contains dL/dH_out of this hidden layer, turned here into dL/dS.
            _, _, gamma, _, S_hat, H_out, _, _, std = _hidden_train_arguments(
                theta, offsets, stat_offsets, sizes, batch_norm, workspace, l, n)
            db = _vector(grad, offsets[l, _B], d_out)
            if batch_norm:
                dgamma = _vector(grad, offsets[l, _GAMMA], d_out)
                dbeta = _vector(grad, offsets[l, _BETA], d_out)
            else:
                dgamma = dbeta = db
            _hidden_backward(dS, S_hat, H_out, gamma, std, dgamma, dbeta, db,
                             through[:, :d_out], batch_norm)

        # The gradient for the layer below uses W before its update. The first layer's input is
        # the data, which needs no gradient.
        if l > 0:
            dH = _matrix(delta_buffer[l % 2], 0, n, d_in)
            _gemm(False, False, 1.0, dS, W, 0.0, dH)

        if update:
            target = W
            _step(theta, grad, offsets[l, _B], d_out, eta)
            if l < k - 1 and batch_norm:
                _step(theta, grad, offsets[l, _GAMMA], d_out, eta)
                _step(theta, grad, offsets[l, _BETA], d_out, eta)
        else:
            target = _weights(grad, offsets, sizes, l)
            target[:, :] = W
        if l == 0:
            _gemm(True, False, gemm_alpha, dS, X, gemm_beta, target)
        else:
            H_in = _matrix(H_buffer, starts[l - 1], n, d_in)
            _gemm(True, False, gemm_alpha, dS, H_in, gemm_beta, target)
            dS = dH


@_kernel
def _step(theta, grad, start, length, eta):
    """``theta <- theta - eta * grad`` on the entries ``start .. start + length - 1``."""
    eta_typed = _as_dtype_of(eta, theta)
    for p in range(start, start + length):
        theta[p] -= eta_typed * grad[p]


@_kernel
def _update_running(running, batch_stats, alpha):
    """``avg <- alpha * avg + (1 - alpha) * batch`` for every running mean and variance."""
    keep = _as_dtype_of(alpha, running)
    take = _as_dtype_of(1.0 - alpha, running)
    for p in range(running.shape[0]):
        running[p] = keep * running[p] + take * batch_stats[p]


# ----------------------------------------------------------------------------------------------
# Entry points for fastkbn.backends.numba_backend. They trust their inputs (see the module
# docstring). Only train_steps changes theta and running.

@_kernel
def scores_batch_stats(theta, offsets, stat_offsets, sizes, batch_norm, X, stat_size):
    """Scores (n, K) for X (n, d), normalized with X's own batch statistics.

    ``stat_size`` is the length of running; the batch statistics go to a scratch buffer of that
    length, so the running averages are not touched.
    """
    workspace = _train_workspace(theta, stat_size, sizes, X.shape[0])
    return _forward_train(theta, offsets, stat_offsets, sizes, batch_norm, X, workspace).copy()


@_kernel
def scores_running(theta, running, offsets, stat_offsets, sizes, batch_norm, X):
    """Scores (n, K) for X (n, d), normalized with the running averages."""
    k = sizes.shape[0] - 1
    n = X.shape[0]
    width = _max_hidden_width(sizes)
    buffers = np.empty((2, n * width), dtype=theta.dtype)
    scores = np.empty((n, sizes[k]), dtype=theta.dtype)
    W_out = _weights(theta, offsets, sizes, k - 1)
    b_out = _vector(theta, offsets[k - 1, _B], sizes[k])

    if k == 1:
        _output_forward(X, W_out, b_out, scores)
        return scores

    for l in range(k - 1):
        d_out = sizes[l + 1]
        W = _weights(theta, offsets, sizes, l)
        b = _vector(theta, offsets[l, _B], d_out)
        if batch_norm:
            gamma = _vector(theta, offsets[l, _GAMMA], d_out)
            beta = _vector(theta, offsets[l, _BETA], d_out)
            mean = _vector(running, stat_offsets[l], d_out)
            var = _vector(running, stat_offsets[l] + d_out, d_out)
        else:
            gamma = beta = mean = var = b
        H_out = _matrix(buffers[l % 2], 0, n, d_out)
        if l == 0:
            _hidden_forward_running(X, W, b, gamma, beta, mean, var, H_out, batch_norm)
        else:
            H_in = _matrix(buffers[(l - 1) % 2], 0, n, sizes[l])
            _hidden_forward_running(H_in, W, b, gamma, beta, mean, var, H_out, batch_norm)

    H_last = _matrix(buffers[(k - 2) % 2], 0, n, sizes[k - 1])
    _output_forward(H_last, W_out, b_out, scores)
    return scores


@_kernel
def loss_and_gradients(theta, offsets, stat_offsets, sizes, batch_norm, X, y, lam, stat_size):
    """Mean cross-entropy with batch statistics and the cost's gradient, laid out like theta."""
    workspace = _train_workspace(theta, stat_size, sizes, X.shape[0])
    grad = workspace[7]
    k = sizes.shape[0] - 1

    scores = _forward_train(theta, offsets, stat_offsets, sizes, batch_norm, X, workspace)
    loss = _softmax_cross_entropy_backward(scores, y,
                                           _vector(grad, offsets[k - 1, _B], sizes[k]))
    _backward(theta, offsets, stat_offsets, sizes, batch_norm, X, workspace, lam, False, 0.0)
    return loss, grad


@_kernel
def train_steps(theta, running, offsets, stat_offsets, sizes, batch_norm, X, y, idx, batch_size,
                etas, lam, alpha):
    """Run ``len(etas)`` SGD steps in place on theta and running; returns each step's loss.

    Step s trains on the rows ``idx[s * batch_size : (s + 1) * batch_size]`` of X and y (only
    the last batch may be short) with learning rate ``etas[s]``: forward with batch statistics,
    running averages updated with them, backward, then ``theta <- theta - eta * grad``. The loss
    (float64) is the batch's mean cross-entropy before the update.
    """
    n_steps = etas.shape[0]
    d = X.shape[1]
    k = sizes.shape[0] - 1
    losses = np.empty(n_steps, dtype=np.float64)

    workspace = _train_workspace(theta, running.shape[0], sizes, batch_size)
    batch_stats = workspace[4]
    grad = workspace[7]
    X_batch_buffer = np.empty(batch_size * d, dtype=X.dtype)
    y_batch_buffer = np.empty(batch_size, dtype=np.int64)

    for s in range(n_steps):
        first = s * batch_size
        rows = min(batch_size, idx.shape[0] - first)

        # Gather the batch into contiguous buffers, for the GEMMs.
        X_batch = _matrix(X_batch_buffer, 0, rows, d)
        y_batch = y_batch_buffer[:rows]
        for i in range(rows):
            source = idx[first + i]
            X_batch[i, :] = X[source, :]
            y_batch[i] = y[source]

        scores = _forward_train(theta, offsets, stat_offsets, sizes, batch_norm, X_batch,
                                workspace)
        losses[s] = _softmax_cross_entropy_backward(
            scores, y_batch, _vector(grad, offsets[k - 1, _B], sizes[k]))
        if batch_norm:
            _update_running(running, batch_stats, alpha)
        _backward(theta, offsets, stat_offsets, sizes, batch_norm, X_batch, workspace, lam, True,
                  etas[s])
    return losses
