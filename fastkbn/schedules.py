"""Learning-rate schedules. ``train`` gets the rates of a run of steps from one call."""
from __future__ import annotations

import numpy as np

from .validation import check_finite_number, check_positive_int


def cyclical_lr(t, eta_min: float, eta_max: float, n_s: int):
    """Triangular cyclical learning rate at step ``t`` (an int or an int array).

    The rate rises linearly from ``eta_min`` to ``eta_max`` over ``n_s`` steps, falls back over
    the next ``n_s``, and repeats with period ``2 * n_s``: ``eta(0) = eta_min``,
    ``eta(n_s) = eta_max``, ``eta(2 n_s) = eta_min``. It never leaves ``[eta_min, eta_max]``.

    Returns a float for a scalar ``t`` and a float64 array for an array.
    """
    eta_min, eta_max, n_s = check_schedule(eta_min, eta_max, n_s)
    t_arr = np.asarray(t)
    if t_arr.dtype.kind not in "iu" or (t_arr < 0).any():
        raise ValueError(f"step t must be a non-negative integer, got {t!r}")
    phase = t_arr % (2 * n_s)
    # Distance from the nearest cycle start, 0..n_s, so both halves share one formula.
    rise = np.where(phase <= n_s, phase, 2 * n_s - phase)
    eta = eta_min + (rise / n_s) * (eta_max - eta_min)
    eta = np.clip(eta, eta_min, eta_max)
    return float(eta) if t_arr.ndim == 0 else eta


def check_schedule(eta_min, eta_max, n_s):
    """Validate the cyclical schedule's parameters; returns them as (float, float, int)."""
    eta_min = check_finite_number("eta_min", eta_min, minimum=0.0)
    eta_max = check_finite_number("eta_max", eta_max, minimum=0.0)
    if eta_min > eta_max:
        raise ValueError(f"eta_min ({eta_min}) is larger than eta_max ({eta_max}); swap them")
    n_s = check_positive_int("n_s (steps per half cycle)", n_s)
    return eta_min, eta_max, n_s


class CyclicalSchedule:
    """The triangular schedule as an object: ``schedule(t)`` and ``schedule.rates(start, m)``."""

    def __init__(self, eta_min: float, eta_max: float, n_s: int):
        self.eta_min, self.eta_max, self.n_s = check_schedule(eta_min, eta_max, n_s)

    def __call__(self, t):
        return cyclical_lr(t, self.eta_min, self.eta_max, self.n_s)

    def rates(self, start: int, count: int) -> np.ndarray:
        """Rates of steps ``start .. start + count - 1`` as a float64 array."""
        return cyclical_lr(np.arange(start, start + count, dtype=np.int64), self.eta_min,
                           self.eta_max, self.n_s)

    def steps(self, cycles: int) -> int:
        """Number of steps in ``cycles`` full cycles."""
        return 2 * self.n_s * cycles
