"""Gradient checks: analytic gradients against centered finite differences, in float64."""
from __future__ import annotations

import numpy as np

from . import config, reference
from .validation import check_finite_number


def relative_error(analytic, numerical, floor=config.GRADCHECK_REL_FLOOR):
    """``|a - n| / max(floor, |a| + |n|)`` elementwise."""
    return np.abs(analytic - numerical) / np.maximum(floor, np.abs(analytic) + np.abs(numerical))


KINK_RETRIES = 2
"""How many times a step that crosses a ReLU kink is retried, each time 10 times smaller."""


def numerical_gradient(net, X, y, lam, h=config.GRADCHECK_H):
    """Fourth-order centered differences of the cost with batch statistics, by the reference.

    ``net`` must be float64. Returns ``(grad, kinks)``: a flat array laid out like
    ``net.theta``, and a boolean array of the same length that is True where every step tried
    moved some ReLU input across zero.

    The cost is not differentiable where a ReLU input is exactly zero, and a difference whose
    stencil straddles such a kink measures a slope that the analytic gradient does not have.
    Each entry therefore checks that no ReLU input changes sign over its stencil, and retries
    with a 10 times smaller step when one does.
    """
    theta = net.theta.copy()
    layout = net.layout
    grad = np.empty_like(theta)
    kinks = np.zeros(theta.size, dtype=bool)

    def cost_and_signs(t):
        scores, cache = reference.forward_train(t, layout, X)
        _, loss, _ = reference.softmax_cross_entropy(scores, y)
        signs = [entry["H_out"] > 0 for entry in cache[:-1]]
        return loss + reference.cost_terms(t, layout, lam), signs

    _, base_signs = cost_and_signs(theta)

    # Fourth-order centered stencil: (-f(+2h) + 8 f(+h) - 8 f(-h) + f(-2h)) / 12h. The plain
    # two-point difference leaves an O(h^2) error near 1e-6 relative on deep batch-normalized
    # networks with small batches, whose cost curves strongly.
    for i in range(theta.size):
        old = theta[i]
        for attempt in range(KINK_RETRIES + 1):
            step = h / 10 ** attempt
            values = []
            crossed = False
            for offset in (2 * step, step, -step, -2 * step):
                theta[i] = old + offset
                value, signs = cost_and_signs(theta)
                values.append(value)
                crossed |= any((a != b).any() for a, b in zip(signs, base_signs))
            theta[i] = old
            grad[i] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * step)
            if not crossed:
                break
        kinks[i] = crossed
    return grad, kinks


def gradcheck(net, X, y, lam=0.0, h=config.GRADCHECK_H) -> dict:
    """Compare ``net``'s analytic gradients with centered differences, in float64.

    Both use batch statistics of X. The analytic gradients come from the network's own backend
    on a float64 copy; the numerical ones from the NumPy reference. The network, its parameters
    and running averages are left unchanged.

    Parameters
    ----------
    net : Network
    X : ndarray, shape (n, d)
        Any float dtype; converted to float64.
    y : array of int, shape (n,)
    lam : float
        L2 coefficient of the cost.
    h : float
        Finite-difference step.

    Returns
    -------
    dict
        ``{name: {"max_abs": float, "max_rel": float, "kinks": int}}`` for every parameter
        (W1, b1, gamma1, ...). The relative error is ``|a - n| / max(floor, |a| + |n|)`` with
        floor ``config.GRADCHECK_REL_FLOOR``, so gradients that are both near zero do not count
        as failures. ``kinks`` counts the entries left out of both maxima because every
        finite-difference step tried (h, h/10, h/100) moved a ReLU input across zero, where the
        cost has no derivative.
    """
    lam = check_finite_number("lam", lam, minimum=0.0)
    h = check_finite_number("h", h, minimum=0.0, strict=True)
    net64 = net.copy(dtype="float64")
    X = np.asarray(X)
    if X.dtype.kind != "f":
        raise TypeError(f"X must be a float array, got dtype {X.dtype}")
    X, y = net64.check_Xy(X.astype(np.float64), y)
    _, analytic = net64.loss_and_gradients(X, y, lam)
    numerical, kinks = numerical_gradient(net64, X, y, lam, h)
    out = {}
    for name, (sl, _) in net.layout.slices().items():
        smooth = ~kinks[sl]
        a, n_ = analytic[sl][smooth], numerical[sl][smooth]
        out[name] = {"max_abs": float(np.max(np.abs(a - n_), initial=0.0)),
                     "max_rel": float(np.max(relative_error(a, n_), initial=0.0)),
                     "kinks": int(kinks[sl].sum())}
    return out
