# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Fused Cython kernels for the ``cython`` backend: forward, backward and SGD steps.

One source serves float32 and float64 through the fused type ``floating``. Every kernel below the
``def`` entry points is a ``cdef ... noexcept nogil`` function on raw pointers, and a whole
``train_steps`` call (batch gathering, every step, running averages, updates) runs with the GIL
released. The math is the one of ``fastkbn.reference``, with the loops merged:

- hidden layer forward: one GEMM ``S := H W^T``, then one routine that adds the bias, forms the
  batch statistics, normalizes, scales, shifts and applies ReLU while S is still in cache;
- hidden layer backward: one routine that applies the ReLU mask, forms dgamma and dbeta and then
  dS from those two column reductions, followed by the GEMMs for the layer below and for dW;
- the SGD update of W rides inside the dW GEMM, after the layer below took its gradient.

Preconditions (the entry points and ``fastkbn.Network`` ensure them; nothing is checked here):

- ``theta`` and ``running`` are the network's flat buffers, laid out as ``fastkbn.layout.Layout``
  says: ``offsets`` is (k, 4) int64 (start of W, b, gamma, beta; -1 where absent),
  ``stat_offsets`` is (k,) int64, ``sizes`` is (k + 1,) int64.
- X is C-contiguous (n, d) of the same dtype as theta. y is int64 with values in 0..K-1.
- ``idx`` is int64 with values in 0..n-1 and covers the steps, so every step's batch is
  non-empty. A one-row batch is computed as the reference does (zero variance, S_hat = 0).
- Every BLAS dimension fits in a C int.

Row-major arrays throughout: an (r, c) array has row stride c.
"""
import numpy as np

from cython cimport floating
from libc.math cimport exp, log, sqrt
from libc.stdint cimport int64_t
from libc.string cimport memcpy
from scipy.linalg.cython_blas cimport dgemm, sgemm


# ----------------------------------------------------------------------------------------------
# BLAS primitive.

cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                      const floating* A, int lda, const floating* B, int ldb, floating beta,
                      floating* C, int ldc) noexcept nogil:
    """C := alpha*op(A)op(B) + beta*C for row-major A, B and C; C is (m, n), op(A) is (m, k).

    BLAS is column-major, and a row-major buffer read as column-major is its transpose. So the
    row-major product is computed as the column-major ``C^T := alpha*op(B)^T op(A)^T +
    beta*C^T``: the operands swap places and so do m and n.
    """
    cdef char blas_trans_b = b'T' if trans_b else b'N'
    cdef char blas_trans_a = b'T' if trans_a else b'N'
    if floating is float:
        sgemm(&blas_trans_b, &blas_trans_a, &n, &m, &k, &alpha, <float*>B, &ldb,
              <float*>A, &lda, &beta, C, &ldc)
    else:
        dgemm(&blas_trans_b, &blas_trans_a, &n, &m, &k, &alpha, <double*>B, &ldb,
              <double*>A, &lda, &beta, C, &ldc)


cdef inline void linear_forward(Py_ssize_t n, Py_ssize_t d_in, Py_ssize_t d_out,
                                const floating* H, const floating* W,
                                floating* S) noexcept nogil:
    """S := H W^T. H is (n, d_in), W is (d_out, d_in), S is (n, d_out).

    The bias is added by the pass that reads S next.
    """
    gemm(False, True, <int>n, <int>d_out, <int>d_in, <floating>1, H, <int>d_in, W, <int>d_in,
         <floating>0, S, <int>d_out)


cdef inline void linear_backward(Py_ssize_t n, Py_ssize_t d_in, Py_ssize_t d_out,
                                 const floating* dS, const floating* H, floating* W,
                                 floating* dH, floating* dW, bint update, floating eta,
                                 double lam) noexcept nogil:
    """Gradient for the layer below, then dW or the SGD update of W, for ``S = H W^T + b``.

    dS is (n, d_out), H is (n, d_in), W and dW are (d_out, d_in), dH is (n, d_in).
    ``dH := dS W`` is formed first, from the old W, unless dH is NULL (the first layer, whose
    input is the data). Then either ``dW := dS^T H + 2 lam W`` (``update`` false) or, in one
    GEMM, ``W := (1 - 2 eta lam) W - eta dS^T H`` (``update`` true; dW is unused).
    """
    if dH != NULL:
        gemm(False, False, <int>n, <int>d_in, <int>d_out, <floating>1, dS, <int>d_out,
             W, <int>d_in, <floating>0, dH, <int>d_in)
    if update:
        gemm(True, False, <int>d_out, <int>d_in, <int>n, -eta, dS, <int>d_out, H, <int>d_in,
             <floating>(1.0 - 2.0 * <double>eta * lam), W, <int>d_in)
    else:
        memcpy(dW, W, d_out * d_in * sizeof(floating))
        gemm(True, False, <int>d_out, <int>d_in, <int>n, <floating>1, dS, <int>d_out,
             H, <int>d_in, <floating>(2.0 * lam), dW, <int>d_in)


# ----------------------------------------------------------------------------------------------
# Hidden layer with batch normalization and ReLU: forward (batch statistics) beside backward.

cdef void bn_relu_forward(Py_ssize_t n, Py_ssize_t d, floating* S, const floating* b,
                          const floating* gamma, const floating* beta, floating eps,
                          floating* mu, floating* v, floating* scale,
                          floating* H) noexcept nogil:
    """Bias, batch normalization, scale, shift and ReLU of S := H_in W^T, in place.

    S (in: H_in W^T, out: S_hat) and H are (n, d); mu, v and the scratch ``scale`` are (d,).
    Writes the batch mean mu and the biased batch variance v (divided by n, the estimate that
    the backward formula assumes), S_hat = (S - mu) / sqrt(v + eps) and
    H = max(gamma * S_hat + beta, 0).
    """
    cdef Py_ssize_t i, j
    cdef floating* row
    cdef floating* out
    cdef floating centered, value

    # First sweep: add the bias and sum the columns.
    for j in range(d):
        mu[j] = 0
        v[j] = 0
    for i in range(n):
        row = S + i * d
        for j in range(d):
            row[j] = row[j] + b[j]
            mu[j] += row[j]
    for j in range(d):
        mu[j] = mu[j] / n

    # Second sweep: squared deviations from the mean (two passes keep the variance stable).
    for i in range(n):
        row = S + i * d
        for j in range(d):
            centered = row[j] - mu[j]
            v[j] += centered * centered
    for j in range(d):
        v[j] = v[j] / n
        scale[j] = sqrt(v[j] + eps)

    # Third sweep: normalize, scale, shift, ReLU. The test "not <= 0" keeps a NaN as NaN, as
    # np.maximum does, so a diverging run shows up in its loss.
    for i in range(n):
        row = S + i * d
        out = H + i * d
        for j in range(d):
            row[j] = (row[j] - mu[j]) / scale[j]
            value = gamma[j] * row[j] + beta[j]
            out[j] = value if not value <= 0 else 0


cdef void bn_relu_backward(Py_ssize_t n, Py_ssize_t d, floating* G, const floating* H,
                           const floating* S_hat, const floating* gamma, const floating* v,
                           floating eps, floating* db, floating* dgamma, floating* dbeta,
                           floating* mean_ghat, floating* mean_ghat_shat,
                           floating* scale) noexcept nogil:
    """Backward of :func:`bn_relu_forward` and of the bias, in place.

    G (in: dL/dH, out: dS = dL/dS) and H, S_hat are (n, d); db, dgamma, dbeta and the scratch
    vectors are (d,). With G masked by the ReLU and G_hat = gamma * G,
    ``dS = (G_hat - mean(G_hat) - S_hat * mean(G_hat * S_hat)) / sqrt(v + eps)``, where
    mean(G_hat) = gamma * dbeta / n and mean(G_hat * S_hat) = gamma * dgamma / n, so the two
    column reductions of the first sweep give both means.
    """
    cdef Py_ssize_t i, j
    cdef floating* row
    cdef const floating* h_row
    cdef const floating* s_row
    cdef floating g, ds

    # First sweep: ReLU mask, then the column reductions dbeta = sum G, dgamma = sum G * S_hat.
    for j in range(d):
        dgamma[j] = 0
        dbeta[j] = 0
        db[j] = 0
    for i in range(n):
        row = G + i * d
        h_row = H + i * d
        s_row = S_hat + i * d
        for j in range(d):
            g = row[j] if h_row[j] > 0 else 0
            row[j] = g
            dbeta[j] += g
            dgamma[j] += g * s_row[j]
    for j in range(d):
        mean_ghat[j] = gamma[j] * dbeta[j] / n
        mean_ghat_shat[j] = gamma[j] * dgamma[j] / n
        scale[j] = sqrt(v[j] + eps)

    # Second sweep: dS from the direct path, the path through mu and the path through v. Its
    # column sum is db (zero up to round-off, because the mean removes any bias).
    for i in range(n):
        row = G + i * d
        s_row = S_hat + i * d
        for j in range(d):
            ds = (gamma[j] * row[j] - mean_ghat[j] - s_row[j] * mean_ghat_shat[j]) / scale[j]
            row[j] = ds
            db[j] += ds


cdef void bn_relu_inference(Py_ssize_t n, Py_ssize_t d, floating* S, const floating* b,
                            const floating* gamma, const floating* beta, const floating* mean,
                            const floating* var, floating eps, floating* scale) noexcept nogil:
    """S := max(gamma * (S + b - mean) / sqrt(var + eps) + beta, 0) in place, with running averages.

    S is (n, d); mean, var and the scratch ``scale`` are (d,).
    """
    cdef Py_ssize_t i, j
    cdef floating* row
    cdef floating value
    for j in range(d):
        scale[j] = sqrt(var[j] + eps)
    for i in range(n):
        row = S + i * d
        for j in range(d):
            value = gamma[j] * (row[j] + b[j] - mean[j]) / scale[j] + beta[j]
            row[j] = value if not value <= 0 else 0


# ----------------------------------------------------------------------------------------------
# Hidden layer without batch normalization: bias and ReLU, forward beside backward.

cdef void relu_forward(Py_ssize_t n, Py_ssize_t d, floating* S,
                       const floating* b) noexcept nogil:
    """S := max(S + b, 0) in place. S is (n, d), b is (d,)."""
    cdef Py_ssize_t i, j
    cdef floating* row
    cdef floating value
    for i in range(n):
        row = S + i * d
        for j in range(d):
            value = row[j] + b[j]
            row[j] = value if not value <= 0 else 0


cdef void relu_backward(Py_ssize_t n, Py_ssize_t d, floating* G, const floating* H,
                        floating* db) noexcept nogil:
    """G := G * (H > 0) in place (dL/dH becomes dS) and db := column sums of dS. G, H are (n, d)."""
    cdef Py_ssize_t i, j
    cdef floating* row
    cdef const floating* h_row
    for j in range(d):
        db[j] = 0
    for i in range(n):
        row = G + i * d
        h_row = H + i * d
        for j in range(d):
            if not h_row[j] > 0:
                row[j] = 0
            db[j] += row[j]


# ----------------------------------------------------------------------------------------------
# Last layer: bias, softmax and cross-entropy, with the gradient in the same sweep.

cdef double softmax_cross_entropy(Py_ssize_t n, Py_ssize_t K, floating* S, const floating* b,
                                  const int64_t* y, floating* db) noexcept nogil:
    """Mean cross-entropy of softmax(S + b) against y; S := dL/dS = (P - Y) / n in place.

    S is (n, K) and holds H W^T on entry; y is (n,); db := column sums of dL/dS (K,).
    Exponentials, row sums and the loss are computed in float64 for both precisions.
    """
    cdef Py_ssize_t i, j
    cdef floating* row
    cdef double max_score, row_sum, p, loss = 0
    for j in range(K):
        db[j] = 0
    for i in range(n):
        row = S + i * K
        max_score = row[0] + b[0]
        for j in range(K):
            row[j] = row[j] + b[j]
            if row[j] > max_score:
                max_score = row[j]

        # log P[y] = (S[y] - max) - log(sum exp(S - max)).
        row_sum = 0
        for j in range(K):
            row_sum += exp(row[j] - max_score)
        loss += log(row_sum) - (row[y[i]] - max_score)

        for j in range(K):
            p = exp(row[j] - max_score) / row_sum
            if j == y[i]:
                p -= 1
            row[j] = <floating>(p / n)
            db[j] += row[j]
    return loss / n


cdef void add_bias(Py_ssize_t n, Py_ssize_t d, floating* S, const floating* b) noexcept nogil:
    """S := S + b for S (n, d) and b (d,)."""
    cdef Py_ssize_t i, j
    cdef floating* row
    for i in range(n):
        row = S + i * d
        for j in range(d):
            row[j] = row[j] + b[j]


# ----------------------------------------------------------------------------------------------
# Whole network. ``Net`` describes the layout; ``Work`` places every intermediate in one
# workspace buffer (offsets in elements).

cdef struct Net:
    Py_ssize_t k
    const int64_t* sizes
    const int64_t* offsets
    const int64_t* stat_offsets
    bint batch_norm


cdef struct Work:
    Py_ssize_t* h             # (k,): H_out of hidden layer l, (n, sizes[l + 1])
    Py_ssize_t* s_hat         # (k,): S_hat of hidden layer l, (n, sizes[l + 1]); -1 without BN
    Py_ssize_t* stats         # (k,): batch mean then biased variance of layer l, 2 * sizes[l + 1]
    Py_ssize_t scores         # (n, K): scores, then dL/dscores
    Py_ssize_t grad_a         # (n, max width): dL/dH and dS of a layer, alternating with grad_b
    Py_ssize_t grad_b
    Py_ssize_t vectors        # 6 * max width: db, dgamma, dbeta and three scratch vectors
    Py_ssize_t batch          # (n, d): the gathered batch, when the caller asks for one
    Py_ssize_t width          # max width over the layers' outputs
    Py_ssize_t length


cdef inline bint has_bn(const Net* net, Py_ssize_t l) noexcept nogil:
    return net.batch_norm and l < net.k - 1


cdef Py_ssize_t plan_work(const Net* net, Py_ssize_t n, bint with_batch,
                          Work* work) noexcept nogil:
    """Fill ``work`` with offsets for a batch of n rows and return the total length."""
    cdef Py_ssize_t l, width, max_width = 0
    cdef Py_ssize_t pos = 0
    for l in range(net.k):
        width = net.sizes[l + 1]
        if width > max_width:
            max_width = width
        work.h[l] = -1
        work.s_hat[l] = -1
        work.stats[l] = -1
        if l == net.k - 1:
            continue
        work.h[l] = pos
        pos += n * width
        if has_bn(net, l):
            work.s_hat[l] = pos
            pos += n * width
            work.stats[l] = pos
            pos += 2 * width
    work.scores = pos
    pos += n * net.sizes[net.k]
    work.grad_a = pos
    pos += n * max_width
    work.grad_b = pos
    pos += n * max_width
    work.vectors = pos
    pos += 6 * max_width
    work.width = max_width
    work.batch = -1
    if with_batch:
        work.batch = pos
        pos += n * net.sizes[0]
    work.length = pos
    return pos


cdef void forward(const Net* net, floating* theta, const floating* running,
                  floating* ws, const Work* work, const floating* X, Py_ssize_t n,
                  bint batch_stats, floating eps) noexcept nogil:
    """Forward pass of X (n, d) up to the last layer's H W^T, left in ``ws + work.scores``.

    The last layer's bias is added by the caller's next pass. With ``batch_stats`` the hidden
    layers normalize with batch statistics and keep S_hat, mu and v for the backward pass;
    otherwise they use the running averages.
    """
    cdef Py_ssize_t l, d_in, d_out
    cdef const floating* H = X
    cdef floating* S
    cdef floating* mu
    cdef const floating* mean
    cdef floating* scale = ws + work.vectors
    cdef const int64_t* off
    for l in range(net.k):
        d_in = net.sizes[l]
        d_out = net.sizes[l + 1]
        off = net.offsets + 4 * l
        if l == net.k - 1:
            linear_forward(n, d_in, d_out, H, theta + off[0], ws + work.scores)
            return
        if has_bn(net, l) and batch_stats:
            S = ws + work.s_hat[l]
            mu = ws + work.stats[l]
            linear_forward(n, d_in, d_out, H, theta + off[0], S)
            bn_relu_forward(n, d_out, S, theta + off[1], theta + off[2], theta + off[3], eps,
                            mu, mu + d_out, scale, ws + work.h[l])
        elif has_bn(net, l):
            S = ws + work.h[l]
            linear_forward(n, d_in, d_out, H, theta + off[0], S)
            mean = running + net.stat_offsets[l]
            bn_relu_inference(n, d_out, S, theta + off[1], theta + off[2], theta + off[3],
                              mean, mean + d_out, eps, scale)
        else:
            S = ws + work.h[l]
            linear_forward(n, d_in, d_out, H, theta + off[0], S)
            relu_forward(n, d_out, S, theta + off[1])
        H = ws + work.h[l]


cdef void update_running(const Net* net, floating* running, const floating* ws,
                         const Work* work, double alpha) noexcept nogil:
    """avg := alpha * avg + (1 - alpha) * batch for every batch-normalized layer's mean and v."""
    cdef Py_ssize_t l, j, d
    cdef floating* avg
    cdef const floating* batch
    cdef floating keep = <floating>alpha
    cdef floating take = <floating>(1.0 - alpha)
    for l in range(net.k):
        if not has_bn(net, l):
            continue
        d = net.sizes[l + 1]
        avg = running + net.stat_offsets[l]
        batch = ws + work.stats[l]
        for j in range(2 * d):
            avg[j] = keep * avg[j] + take * batch[j]


cdef inline void sgd_vector(floating* p, const floating* g, Py_ssize_t d,
                            floating eta) noexcept nogil:
    """p := p - eta * g for vectors of length d."""
    cdef Py_ssize_t j
    for j in range(d):
        p[j] = p[j] - eta * g[j]


cdef double loss_backward(const Net* net, floating* theta, floating* ws, const Work* work,
                          const floating* X, const int64_t* y, Py_ssize_t n, double lam,
                          floating eps, floating* grad, floating eta) noexcept nogil:
    """Loss and backward pass after :func:`forward` with batch statistics.

    Returns the mean cross-entropy. With ``grad`` not NULL, writes the cost's gradient into
    it (laid out like theta, every entry written) and leaves theta alone; with ``grad`` NULL,
    takes the SGD step ``theta := theta - eta * gradient`` layer by layer instead, each W
    inside its dW GEMM after the layer below used the old W.
    """
    cdef Py_ssize_t l, d_in, d_out
    cdef Py_ssize_t width = work.width
    cdef bint update = grad == NULL
    cdef const int64_t* off
    cdef const int64_t* off_below
    cdef floating* dS = ws + work.scores
    cdef floating* dH
    cdef floating* spare = ws + work.grad_a
    cdef floating* vectors = ws + work.vectors
    cdef floating* db
    cdef floating* dgamma
    cdef floating* dbeta
    cdef const floating* H_in
    cdef double loss

    l = net.k - 1
    off = net.offsets + 4 * l
    db = vectors if update else grad + off[1]
    loss = softmax_cross_entropy(n, net.sizes[net.k], dS, theta + off[1], y, db)

    while True:
        # dS holds dL/dS of layer l and db its column sums.
        d_in = net.sizes[l]
        d_out = net.sizes[l + 1]
        off = net.offsets + 4 * l
        H_in = X if l == 0 else ws + work.h[l - 1]
        dH = NULL if l == 0 else spare
        linear_backward(n, d_in, d_out, dS, H_in, theta + off[0], dH,
                        NULL if update else grad + off[0], update, eta, lam)
        if update:
            sgd_vector(theta + off[1], db, d_out, eta)
        if l == 0:
            return loss

        # Hidden layer l - 1: turn dL/dH (in dH) into dS in place.
        spare = dS if dS != ws + work.scores else ws + work.grad_b
        dS = dH
        l -= 1
        d_out = net.sizes[l + 1]
        off_below = net.offsets + 4 * l
        if update:
            db = vectors
            dgamma = vectors + width
            dbeta = vectors + 2 * width
        else:
            db = grad + off_below[1]
            dgamma = grad + off_below[2]
            dbeta = grad + off_below[3]
        if has_bn(net, l):
            bn_relu_backward(n, d_out, dS, ws + work.h[l], ws + work.s_hat[l],
                             theta + off_below[2], ws + work.stats[l] + d_out, eps,
                             db, dgamma, dbeta, vectors + 3 * width, vectors + 4 * width,
                             vectors + 5 * width)
            if update:
                sgd_vector(theta + off_below[2], dgamma, d_out, eta)
                sgd_vector(theta + off_below[3], dbeta, d_out, eta)
        else:
            relu_backward(n, d_out, dS, ws + work.h[l], db)


# ----------------------------------------------------------------------------------------------
# Entry points: they hold the GIL only to allocate the workspace and the offset tables.

cdef class _Plan:
    """Offset tables of a ``Work`` and the workspace array they index (owned by Python)."""
    cdef Net net
    cdef Work work
    cdef Py_ssize_t[:, ::1] tables
    cdef object buffer

    def __cinit__(self, const int64_t[::1] sizes, const int64_t[:, ::1] offsets,
                  const int64_t[::1] stat_offsets, bint batch_norm, Py_ssize_t n,
                  bint with_batch, dtype):
        self.net.k = sizes.shape[0] - 1
        self.net.sizes = &sizes[0]
        self.net.offsets = &offsets[0, 0]
        self.net.stat_offsets = &stat_offsets[0]
        self.net.batch_norm = batch_norm
        self.tables = np.empty((3, self.net.k), dtype=np.intp)
        self.work.h = &self.tables[0, 0]
        self.work.s_hat = &self.tables[1, 0]
        self.work.stats = &self.tables[2, 0]
        self.buffer = np.empty(plan_work(&self.net, n, with_batch, &self.work), dtype=dtype)


def scores(floating[::1] theta, const floating[::1] running, const int64_t[::1] sizes,
           const int64_t[:, ::1] offsets, const int64_t[::1] stat_offsets, bint batch_norm,
           const floating[:, ::1] X, bint batch_stats, double eps, floating[:, ::1] out):
    """Write the scores of X (n, d) into ``out`` (n, K), with batch statistics or running averages.

    The caller keeps ``sizes``, ``offsets`` and ``stat_offsets`` alive during the call.
    """
    cdef Py_ssize_t n = X.shape[0]
    cdef Py_ssize_t K = sizes[sizes.shape[0] - 1]
    cdef _Plan plan = _Plan(sizes, offsets, stat_offsets, batch_norm, n, False,
                            np.asarray(theta).dtype)
    cdef floating[::1] ws = plan.buffer
    cdef const floating* run = &running[0] if running.shape[0] > 0 else NULL
    with nogil:
        forward(&plan.net, &theta[0], run, &ws[0], &plan.work, &X[0, 0], n, batch_stats,
                <floating>eps)
        memcpy(&out[0, 0], &ws[plan.work.scores], n * K * sizeof(floating))
        add_bias(n, K, &out[0, 0], &theta[offsets[plan.net.k - 1, 1]])


def loss_and_gradients(floating[::1] theta, const int64_t[::1] sizes,
                       const int64_t[:, ::1] offsets, const int64_t[::1] stat_offsets,
                       bint batch_norm, const floating[:, ::1] X, const int64_t[::1] y,
                       double lam, double eps, floating[::1] grad):
    """Return the mean cross-entropy of X (n, d) and y (n,) with batch statistics.

    Writes the gradient of the cost (cross-entropy plus ``lam * sum ||W||^2``) into ``grad``,
    laid out like theta. Leaves theta unchanged.
    """
    cdef Py_ssize_t n = X.shape[0]
    cdef _Plan plan = _Plan(sizes, offsets, stat_offsets, batch_norm, n, False,
                            np.asarray(theta).dtype)
    cdef floating[::1] ws = plan.buffer
    cdef double loss
    with nogil:
        forward(&plan.net, &theta[0], <floating*>NULL, &ws[0], &plan.work, &X[0, 0], n, True,
                <floating>eps)
        loss = loss_backward(&plan.net, &theta[0], &ws[0], &plan.work, &X[0, 0], &y[0], n, lam,
                             <floating>eps, &grad[0], <floating>0)
    return loss


def train_steps(floating[::1] theta, floating[::1] running, const int64_t[::1] sizes,
                const int64_t[:, ::1] offsets, const int64_t[::1] stat_offsets,
                bint batch_norm, const floating[:, ::1] X, const int64_t[::1] y,
                const int64_t[::1] idx, Py_ssize_t batch_size, const double[::1] etas,
                double lam, double alpha, double eps, double[::1] losses):
    """Run ``len(etas)`` SGD steps in place on theta and running, as the reference does.

    Step s gathers the rows ``idx[s * batch_size : (s + 1) * batch_size]`` of X and y (only
    the last batch may be short), forms the batch statistics, updates the running averages
    with them, and takes ``theta := theta - etas[s] * gradient``. Writes each step's mean
    cross-entropy, computed before its update, into ``losses``.
    """
    cdef Py_ssize_t n_steps = etas.shape[0]
    cdef Py_ssize_t n_idx = idx.shape[0]
    cdef Py_ssize_t d = X.shape[1]
    cdef Py_ssize_t s, i, start, rows, row
    cdef _Plan plan = _Plan(sizes, offsets, stat_offsets, batch_norm, batch_size, True,
                            np.asarray(theta).dtype)
    cdef floating[::1] ws = plan.buffer
    cdef int64_t[::1] labels = np.empty(batch_size, dtype=np.int64)
    cdef floating* batch = &ws[plan.work.batch]
    cdef floating* run = &running[0] if running.shape[0] > 0 else NULL
    with nogil:
        for s in range(n_steps):
            start = s * batch_size
            rows = min(batch_size, n_idx - start)
            for i in range(rows):
                row = idx[start + i]
                memcpy(batch + i * d, &X[row, 0], d * sizeof(floating))
                labels[i] = y[row]

            forward(&plan.net, &theta[0], run, &ws[0], &plan.work, batch, rows, True,
                    <floating>eps)
            update_running(&plan.net, run, &ws[0], &plan.work, alpha)
            losses[s] = loss_backward(&plan.net, &theta[0], &ws[0], &plan.work, batch,
                                      &labels[0], rows, lam, <floating>eps, <floating*>NULL,
                                      <floating>etas[s])
