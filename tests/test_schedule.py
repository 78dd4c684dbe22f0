"""The triangular cyclical learning rate."""
import numpy as np
import pytest

import fastkbn
from fastkbn import CyclicalSchedule, cyclical_lr


@pytest.mark.parametrize("t,expected", [(0, 1e-5), (250, 0.050005), (500, 0.1), (750, 0.050005),
                                        (1000, 1e-5), (1500, 0.1), (2000, 1e-5), (4500, 0.1),
                                        (10_000, 1e-5)])
def test_cyclical_lr_known_values(t, expected):
    assert cyclical_lr(t, 1e-5, 0.1, 500) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_cyclical_lr_stays_in_range_over_cycles():
    t = np.arange(0, 10 * 2 * 37 + 5)
    eta = cyclical_lr(t, 1e-5, 0.1, 37)
    assert eta.min() >= 1e-5
    assert eta.max() <= 0.1
    assert eta[0] == 1e-5
    assert eta[37] == 0.1


def test_cyclical_lr_is_periodic():
    t = np.arange(0, 300)
    assert np.array_equal(cyclical_lr(t, 1e-4, 0.05, 50), cyclical_lr(t + 100, 1e-4, 0.05, 50))


def test_schedule_object_rates_match_function():
    schedule = CyclicalSchedule(1e-5, 0.1, 20)
    assert np.array_equal(schedule.rates(15, 30), cyclical_lr(np.arange(15, 45), 1e-5, 0.1, 20))
    assert schedule.steps(3) == 120


@pytest.mark.parametrize("kwargs,match", [
    (dict(eta_min=0.2, eta_max=0.1, n_s=10), "eta_min .* larger than eta_max"),
    (dict(eta_min=1e-5, eta_max=0.1, n_s=0), "n_s"),
    (dict(eta_min=1e-5, eta_max=0.1, n_s=-3), "n_s"),
    (dict(eta_min=-1.0, eta_max=0.1, n_s=10), "eta_min"),
    (dict(eta_min=1e-5, eta_max=float("inf"), n_s=10), "eta_max must be finite"),
])
def test_cyclical_lr_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fastkbn.cyclical_lr(0, **kwargs)


def test_cyclical_lr_rejects_negative_step():
    with pytest.raises(ValueError, match="non-negative integer"):
        cyclical_lr(-1, 1e-5, 0.1, 10)
