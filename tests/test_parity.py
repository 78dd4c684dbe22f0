"""Every compiled backend against the NumPy reference on the same inputs.

A backend that fails to import is an error here, not a skip: CI installs all of them.
"""
import numpy as np
import pytest

import fastkbn
from fastkbn import config
from conftest import COMPILED_BACKENDS, make_problem

HIDDEN = {1: [16], 2: [16, 12], 8: [16, 12, 10, 10, 8, 8, 8, 8]}
D, K = 24, 10


def rel_err(a, b, scale=None):
    """Largest difference between a and the reference b, relative to b's largest magnitude.

    ``scale`` (the whole buffer that b is a slice of) sets the denominator instead, for slices
    that are zero up to round-off: the hidden biases under batch normalization, whose gradient
    is zero analytically because the batch mean cancels them.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    reference = b if scale is None else np.asarray(scale, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(reference)), 1e-30))


def pair(backend, n_hidden, batch_norm, dtype, seed=3):
    sizes = [D, *HIDDEN[n_hidden], K]
    ref = fastkbn.Network(sizes, batch_norm=batch_norm, dtype=dtype, backend="numpy", seed=seed)
    fast = ref.copy(backend=backend)
    return ref, fast


CASES = [(n_hidden, bn, dtype) for n_hidden in HIDDEN for bn in (True, False)
         for dtype in ("float64", "float32")]


@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
@pytest.mark.parametrize("n_hidden,batch_norm,dtype", CASES)
@pytest.mark.parametrize("n", [2, 3, 100])
def test_one_step_matches_reference(backend, n_hidden, batch_norm, dtype, n):
    ref, fast = pair(backend, n_hidden, batch_norm, dtype)
    X, y = make_problem(ref.sizes, n, dtype)
    tol = config.PARITY_RTOL[dtype]

    for batch_stats in (True, False):
        assert rel_err(fast.scores(X, batch_stats=batch_stats),
                       ref.scores(X, batch_stats=batch_stats)) <= tol

    loss_ref, grad_ref = ref.loss_and_gradients(X, y, lam=0.01)
    loss_fast, grad_fast = fast.loss_and_gradients(X, y, lam=0.01)
    assert abs(loss_fast - loss_ref) <= tol * abs(loss_ref)
    for name, (sl, _) in ref.layout.slices().items():
        assert rel_err(grad_fast[sl], grad_ref[sl], grad_ref) <= tol, name

    # One training step, then inference with the updated running averages.
    idx = np.arange(n, dtype=np.int64)
    etas = np.array([0.05])
    losses_ref = ref._backend.train_steps(ref, X, y, idx, n, etas, 0.01)
    losses_fast = fast._backend.train_steps(fast, X, y, idx, n, etas, 0.01)
    assert rel_err(losses_fast, losses_ref) <= tol
    assert rel_err(fast.theta, ref.theta) <= tol
    if ref.running.size:
        assert rel_err(fast.running, ref.running) <= tol
    assert rel_err(fast.scores(X, batch_stats=False), ref.scores(X, batch_stats=False)) <= tol


def roundoff_spread(n_hidden, batch_norm, dtype, run):
    """How far the reference drifts from itself when theta is nudged by about one ulp.

    Some configurations (eight narrow batch-normalized layers at batch 3) are chaotic: a
    1e-14 change of theta grows to order 1 within 50 steps on the reference alone, so no
    backend can match it more closely than that. Returns the spread of theta and of the losses.
    """
    base, _ = pair("numpy", n_hidden, batch_norm, dtype)
    nudged = base.copy()
    ulp = np.finfo(nudged.dtype).eps
    nudged.theta *= 1 + ulp * np.random.default_rng(11).standard_normal(nudged.theta.size)
    losses_base = run(base)
    losses_nudged = run(nudged)
    return rel_err(nudged.theta, base.theta), rel_err(losses_nudged, losses_base)


@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
@pytest.mark.parametrize("n_hidden,batch_norm,dtype", CASES)
@pytest.mark.parametrize("batch_size", [2, 3, 100])
def test_fifty_steps_match_reference(backend, n_hidden, batch_norm, dtype, batch_size):
    ref, fast = pair(backend, n_hidden, batch_norm, dtype)
    # 50 steps whose last batch is partial (one sample short of full; two samples at least).
    n = 49 * batch_size + max(2, batch_size - 1)
    X, y = make_problem(ref.sizes, n, dtype, seed=5)
    idx = np.random.default_rng(1).permutation(n).astype(np.int64)
    etas = fastkbn.cyclical_lr(np.arange(50), 1e-3, 5e-2, 20)

    def run(net):
        return net._backend.train_steps(net, X, y, idx, batch_size, etas, 0.005)

    losses_ref = run(ref)
    losses_fast = run(fast)

    # The bound is the parity tolerance of config, or ten times the reference's own round-off
    # spread where the dynamics amplify round-off beyond it.
    theta_spread, loss_spread = roundoff_spread(n_hidden, batch_norm, dtype, run)
    tol = config.PARITY_STEPS_RTOL[dtype]
    assert rel_err(losses_fast, losses_ref) <= max(tol, 10 * loss_spread)
    theta_tol = max(tol, 10 * theta_spread)
    for name, (sl, _) in ref.layout.slices().items():
        assert rel_err(fast.theta[sl], ref.theta[sl], ref.theta) <= theta_tol, name
    for name, sl in ref.layout.stat_slices().items():
        assert rel_err(fast.running[sl], ref.running[sl]) <= max(tol, 10 * theta_spread), name


def test_roundoff_spread_small_where_not_chaotic():
    """The relaxed bound above only matters in the chaotic cases."""
    X, y = make_problem([D, *HIDDEN[2], K], 100 * 50, "float64", seed=5)
    idx = np.arange(100 * 50, dtype=np.int64)
    etas = fastkbn.cyclical_lr(np.arange(50), 1e-3, 5e-2, 20)
    theta_spread, loss_spread = roundoff_spread(
        2, True, "float64", lambda net: net._backend.train_steps(net, X, y, idx, 100, etas, 0.005))
    assert theta_spread < 1e-12
    assert loss_spread < 1e-12


@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
@pytest.mark.parametrize("batch_norm", [True, False])
def test_gradcheck_on_backend(backend, batch_norm):
    net = fastkbn.Network([20, 12, 10, 5], batch_norm=batch_norm, dtype="float64",
                          backend=backend, seed=2)
    X, y = make_problem(net.sizes, 10, "float64")
    result = fastkbn.gradcheck(net, X, y, lam=0.01)
    worst = max(r["max_rel"] for r in result.values())
    assert worst <= config.GRADCHECK_REL_TOL


@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_bit_identical(backend, dtype):
    X, y = make_problem([D, 16, 12, K], 230, dtype, seed=7)
    runs = []
    for _ in range(2):
        net = fastkbn.Network([D, 16, 12, K], dtype=dtype, backend=backend, seed=4)
        history = fastkbn.train(net, (X, y), batch_size=20, n_s=15, cycles=1, progress=False)
        runs.append((net.theta.copy(), net.running.copy(), history.batch_loss))
    for a, b in zip(*runs):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
def test_training_matches_reference(backend):
    X, y = make_problem([D, 16, 12, K], 230, "float64", seed=7)
    nets = {}
    for name in ("numpy", backend):
        net = fastkbn.Network([D, 16, 12, K], dtype="float64", backend=name, seed=4)
        fastkbn.train(net, (X, y), batch_size=20, n_s=15, cycles=1, progress=False)
        nets[name] = net
    assert rel_err(nets[backend].theta, nets["numpy"].theta) <= config.PARITY_STEPS_RTOL["float64"]
