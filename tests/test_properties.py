"""Property-based checks: the schedule for any parameters, parity for any small shape."""
import numpy as np
from hypothesis import given, settings, strategies as st

import fastkbn
from fastkbn import config
from conftest import COMPILED_BACKENDS, make_problem

rates = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)


@given(eta_a=rates, eta_b=rates, n_s=st.integers(1, 10_000), t=st.integers(0, 10**7))
def test_cyclical_lr_in_range_and_periodic(eta_a, eta_b, n_s, t):
    eta_min, eta_max = sorted((eta_a, eta_b))
    eta = fastkbn.cyclical_lr(t, eta_min, eta_max, n_s)
    assert eta_min <= eta <= eta_max
    assert eta == fastkbn.cyclical_lr(t + 2 * n_s, eta_min, eta_max, n_s)
    assert fastkbn.cyclical_lr(2 * n_s * (t % 7), eta_min, eta_max, n_s) == eta_min


@settings(max_examples=25, deadline=None)
@given(hidden=st.lists(st.integers(1, 12), min_size=0, max_size=4),
       d=st.integers(1, 20), k=st.integers(2, 6), n=st.integers(2, 40),
       batch_norm=st.booleans(), seed=st.integers(0, 2**16),
       backend=st.sampled_from(COMPILED_BACKENDS))
def test_one_step_parity_any_shape(hidden, d, k, n, batch_norm, seed, backend):
    ref = fastkbn.Network([d, *hidden, k], batch_norm=batch_norm, dtype="float64",
                          backend="numpy", seed=seed)
    fast = ref.copy(backend=backend)
    X, y = make_problem(ref.sizes, n, "float64", seed=seed)
    idx = np.arange(n, dtype=np.int64)

    loss_ref, grad_ref = ref.loss_and_gradients(X, y, 0.01)
    loss_fast, grad_fast = fast.loss_and_gradients(X, y, 0.01)
    scale = max(np.abs(grad_ref).max(), 1e-30)
    assert abs(loss_fast - loss_ref) <= config.PARITY_RTOL["float64"] * abs(loss_ref)
    assert np.abs(grad_fast - grad_ref).max() <= config.PARITY_RTOL["float64"] * scale

    ref._backend.train_steps(ref, X, y, idx, n, np.array([0.05]), 0.01)
    fast._backend.train_steps(fast, X, y, idx, n, np.array([0.05]), 0.01)
    scores_ref = ref.scores(X, batch_stats=False)
    scores_fast = fast.scores(X, batch_stats=False)
    assert np.abs(scores_fast - scores_ref).max() <= \
        config.PARITY_RTOL["float64"] * max(np.abs(scores_ref).max(), 1e-30)
