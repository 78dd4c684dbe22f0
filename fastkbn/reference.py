"""The NumPy reference path: the oracle every other backend is tested against.

It is unfused and kept obvious on purpose: one function per layer operation, forward and backward
side by side, every intermediate kept. Speed is the compiled backends' job. The functions trust
their inputs (dtype, contiguity and shapes are checked by the public wrappers in ``network``).

Shapes: ``n`` samples, layer ``l`` maps ``d_in`` to ``d_out`` features, ``K`` classes.
Hidden layer: ``S = H W^T + b``, ``S_hat = (S - mu) / sqrt(v + eps)``, ``S_tilde = gamma * S_hat +
beta``, ``H_next = max(S_tilde, 0)``. The last layer's ``S`` are the scores.
"""
from __future__ import annotations

import numpy as np

from .config import BN_EPS
from .layout import Layout


# ----------------------------------------------------------------------------------------------
# Layer operations, each forward beside its backward.

def linear_forward(H, W, b):
    """``S = H W^T + b``. H is (n, d_in), W is (d_out, d_in), b is (d_out,); S is (n, d_out)."""
    return H @ W.T + b


def linear_backward(dS, H, W, lam, need_dH=True):
    """Gradients of ``S = H W^T + b`` plus ``lam * ||W||^2``.

    dS is (n, d_out), H is (n, d_in). Returns dW (d_out, d_in), db (d_out,) and dH (n, d_in),
    or None for dH when ``need_dH`` is False (the first layer, whose input is the data).
    """
    dW = dS.T @ H + 2 * lam * W
    db = dS.sum(axis=0)
    dH = dS @ W if need_dH else None
    return dW, db, dH


def batchnorm_forward(S, gamma, beta, eps=BN_EPS):
    """Normalize with batch statistics, then scale and shift. S is (n, d).

    The variance is the biased one (divided by n), the maximum-likelihood estimate that the
    backward formula below assumes. Returns S_tilde (n, d), S_hat (n, d), mu (d,) and v (d,).
    """
    mu = S.mean(axis=0)
    v = ((S - mu) ** 2).mean(axis=0)
    S_hat = (S - mu) / np.sqrt(v + eps)
    return gamma * S_hat + beta, S_hat, mu, v


def batchnorm_backward(G, S_hat, gamma, v, eps=BN_EPS):
    """Gradients of batch normalization with batch statistics. G = dL/dS_tilde is (n, d).

    Returns dS (n, d), dgamma (d,) and dbeta (d,). With G_hat = G * gamma, the gradient through
    the normalization is ``(G_hat - mean(G_hat) - S_hat * mean(G_hat * S_hat)) / sqrt(v + eps)``:
    the first term is the direct path, the second comes through mu, the third through v.
    """
    dgamma = (G * S_hat).sum(axis=0)
    dbeta = G.sum(axis=0)
    G_hat = G * gamma
    through_mean = G_hat.mean(axis=0)
    through_var = S_hat * (G_hat * S_hat).mean(axis=0)
    dS = (G_hat - through_mean - through_var) / np.sqrt(v + eps)
    return dS, dgamma, dbeta


def batchnorm_inference(S, gamma, beta, mean, var, eps=BN_EPS):
    """Normalize with running averages ``mean`` and ``var`` (d,), then scale and shift."""
    return gamma * (S - mean) / np.sqrt(var + eps) + beta


def relu_forward(S):
    """``max(S, 0)``."""
    return np.maximum(S, 0)


def relu_backward(dH, H):
    """Pass the gradient where the ReLU output ``H`` is positive."""
    return dH * (H > 0)


def softmax_cross_entropy(scores, y):
    """Probabilities, mean cross-entropy and its gradient for scores (n, K) and labels (n,).

    Returns P (n, K), the loss (a float) and dL/dscores = (P - Y) / n (n, K).
    """
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_P = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    P = np.exp(log_P)
    n = scores.shape[0]
    loss = -log_P[np.arange(n), y].mean()
    dscores = P.copy()
    dscores[np.arange(n), y] -= 1
    dscores /= n
    return P, float(loss), dscores


# ----------------------------------------------------------------------------------------------
# Whole network.

def forward_train(theta, layout: Layout, X):
    """Forward pass with batch statistics. X is (n, d).

    Returns the scores (n, K) and a cache of every intermediate, a list with one dict per layer,
    for :func:`backward`. Running averages are not touched.
    """
    params = layout.views(theta)
    H = X
    cache = []
    for l in range(layout.k):
        W, b = params[f"W{l + 1}"], params[f"b{l + 1}"]
        S = linear_forward(H, W, b)
        entry = {"H_in": H}
        if l == layout.k - 1:
            cache.append(entry)
            return S, cache
        if layout.has_bn(l):
            gamma, beta = params[f"gamma{l + 1}"], params[f"beta{l + 1}"]
            S_tilde, S_hat, mu, v = batchnorm_forward(S, gamma, beta)
            entry.update(S_hat=S_hat, mu=mu, v=v)
        else:
            S_tilde = S
        H = relu_forward(S_tilde)
        entry["H_out"] = H
        cache.append(entry)
    raise AssertionError("unreachable: a network has at least one layer")


def forward_inference(theta, running, layout: Layout, X):
    """Forward pass with running averages. X is (n, d); returns the scores (n, K)."""
    params = layout.views(theta)
    stats = layout.stat_views(running)
    H = X
    for l in range(layout.k):
        S = linear_forward(H, params[f"W{l + 1}"], params[f"b{l + 1}"])
        if l == layout.k - 1:
            return S
        if layout.has_bn(l):
            S = batchnorm_inference(S, params[f"gamma{l + 1}"], params[f"beta{l + 1}"],
                                    stats[f"mean{l + 1}"], stats[f"var{l + 1}"])
        H = relu_forward(S)
    raise AssertionError("unreachable: a network has at least one layer")


def backward(theta, layout: Layout, cache, dscores, lam):
    """Gradients of the cost for a :func:`forward_train` cache. dscores = dL/dscores is (n, K).

    Returns a flat gradient laid out like ``theta``.
    """
    params = layout.views(theta)
    grad = np.zeros_like(theta)
    grads = layout.views(grad)
    dS = dscores
    for l in reversed(range(layout.k)):
        entry = cache[l]
        if l < layout.k - 1:
            # Here dS contains dL/dH_out of this hidden layer.
            G = relu_backward(dS, entry["H_out"])
            if layout.has_bn(l):
                dS, dgamma, dbeta = batchnorm_backward(G, entry["S_hat"], params[f"gamma{l + 1}"],
                                                       entry["v"])
                grads[f"gamma{l + 1}"][...] = dgamma
                grads[f"beta{l + 1}"][...] = dbeta
            else:
                dS = G
        dW, db, dH = linear_backward(dS, entry["H_in"], params[f"W{l + 1}"], lam, need_dH=l > 0)
        grads[f"W{l + 1}"][...] = dW
        grads[f"b{l + 1}"][...] = db
        dS = dH
    return grad


def cost_terms(theta, layout: Layout, lam):
    """``lam * sum_l ||W_l||^2``: the regularization part of the cost."""
    params = layout.views(theta)
    return lam * sum(float(np.sum(params[f"W{l + 1}"] ** 2)) for l in range(layout.k))


def loss_and_gradients(theta, layout: Layout, X, y, lam):
    """Mean cross-entropy with batch statistics and the cost's gradient (flat, like theta)."""
    scores, cache = forward_train(theta, layout, X)
    _, loss, dscores = softmax_cross_entropy(scores, y)
    return loss, backward(theta, layout, cache, dscores, lam)


def update_running(running, layout: Layout, cache, alpha):
    """``avg <- alpha * avg + (1 - alpha) * batch`` for every batch-normalized layer's mean and v."""
    stats = layout.stat_views(running)
    for l in range(layout.k):
        if layout.has_bn(l):
            mean, var = stats[f"mean{l + 1}"], stats[f"var{l + 1}"]
            mean[...] = alpha * mean + (1 - alpha) * cache[l]["mu"]
            var[...] = alpha * var + (1 - alpha) * cache[l]["v"]


def train_steps(theta, running, layout: Layout, X, y, idx, batch_size, etas, lam, alpha):
    """Run ``len(etas)`` SGD steps in place on ``theta`` and ``running``.

    Step ``s`` uses the rows ``idx[s * batch_size : (s + 1) * batch_size]`` of X (n, d) and y
    (n,), so only the last batch may be short, and learning rate ``etas[s]``. Each step computes
    the gradients with batch statistics, updates the running averages with those statistics, then
    takes ``theta <- theta - eta * grad``. Returns each step's mean cross-entropy (before its
    update) as an array of length ``len(etas)``.
    """
    losses = np.empty(len(etas), dtype=np.float64)
    for s, eta in enumerate(etas):
        rows = idx[s * batch_size:(s + 1) * batch_size]
        scores, cache = forward_train(theta, layout, X[rows])
        _, losses[s], dscores = softmax_cross_entropy(scores, y[rows])
        update_running(running, layout, cache, alpha)
        grad = backward(theta, layout, cache, dscores, lam)
        theta -= theta.dtype.type(eta) * grad
    return losses
