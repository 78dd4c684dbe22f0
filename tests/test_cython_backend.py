"""Cython-specific checks: the extension builds and imports, odd array layouts reach the kernels
only as C-contiguous copies, and the fused SGD update agrees with the plain gradient.

Parity with the NumPy reference lives in test_parity.py. This file covers what is particular to
the compiled kernels: raw pointers, workspaces and the update inside the dW GEMM.
"""
import numpy as np
import pytest

import fastkbn
from conftest import make_problem

SIZES = [24, 16, 12, 10]
DTYPES = ["float32", "float64"]
# Round-off bounds relative to the largest entry of the compared array.
RTOL = {"float32": 1e-4, "float64": 1e-12}


def scaled_err(a, b):
    """Max absolute difference relative to the largest entry of b (never a per-entry ratio)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def make_net(dtype, batch_norm=True, backend="cython", sizes=SIZES, seed=1):
    return fastkbn.Network(sizes, batch_norm=batch_norm, dtype=dtype, backend=backend, seed=seed)


def test_extension_imports():
    from fastkbn.kernels import _cykernels

    assert callable(_cykernels.train_steps)
    assert fastkbn.get_backend("cython").name == "cython"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["fortran", "row_strided", "column_strided", "read_only"])
def test_noncontiguous_X_read_correctly(dtype, layout):
    net = make_net(dtype)
    X, y = make_problem(SIZES, 40, dtype, seed=3)
    if layout == "fortran":
        X_odd = np.asfortranarray(X)
    elif layout == "row_strided":
        padded = np.zeros((2 * X.shape[0], X.shape[1]), dtype=dtype)
        padded[::2] = X
        X_odd = padded[::2]
    elif layout == "column_strided":
        padded = np.zeros((X.shape[0], 2 * X.shape[1]), dtype=dtype)
        padded[:, 1::2] = X
        X_odd = padded[:, 1::2]
    else:
        X_odd = X.copy()
        X_odd.flags.writeable = False
    assert np.array_equal(X_odd, X)

    for batch_stats in (True, False):
        assert np.array_equal(net.scores(X_odd, batch_stats=batch_stats),
                              net.scores(X, batch_stats=batch_stats))

    loss_odd, grad_odd = net.loss_and_gradients(X_odd, y, lam=0.01)
    loss, grad = net.loss_and_gradients(X, y, lam=0.01)
    assert loss_odd == loss
    assert np.array_equal(grad_odd, grad)

    nets = [make_net(dtype), make_net(dtype)]
    for candidate, data in zip(nets, (X_odd, X)):
        fastkbn.train(candidate, (data, y), batch_size=8, n_s=5, cycles=1, progress=False)
    assert np.array_equal(nets[0].theta, nets[1].theta)
    assert np.array_equal(nets[0].running, nets[1].running)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("lam", [0.0, 0.01])
def test_fused_update_equals_gradient_step(dtype, batch_norm, lam):
    # The SGD update rides inside the dW GEMM, so it must equal theta - eta * grad computed with
    # the separate gradient path, including the layer below having used the old W.
    net = make_net(dtype, batch_norm)
    X, y = make_problem(SIZES, 30, dtype, seed=4)
    eta = 0.05
    _, grad = net.loss_and_gradients(X, y, lam=lam)
    expected = net.theta - net.theta.dtype.type(eta) * grad

    idx = np.arange(30, dtype=np.int64)
    net._backend.train_steps(net, X, y, idx, 30, np.array([eta]), lam)
    assert scaled_err(net.theta, expected) <= RTOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_and_gradients_leave_state(dtype):
    net = make_net(dtype)
    X, y = make_problem(SIZES, 20, dtype, seed=5)
    theta = net.theta.copy()
    running = net.running.copy()
    net.loss_and_gradients(X, y, lam=0.01)
    net.scores(X, batch_stats=True)
    assert np.array_equal(net.theta, theta)
    assert np.array_equal(net.running, running)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_norm", [True, False])
def test_short_last_batch_matches_reference(dtype, batch_norm):
    # 7 steps of 9 rows, the last one with 3 rows, drawn at random with repeats.
    ref = make_net(dtype, batch_norm, backend="numpy")
    fast = ref.copy(backend="cython")
    X, y = make_problem(SIZES, 80, dtype, seed=6)
    idx = np.random.default_rng(2).integers(0, 80, size=6 * 9 + 3).astype(np.int64)
    etas = np.linspace(0.01, 0.05, 7)

    losses_ref = ref._backend.train_steps(ref, X, y, idx, 9, etas, 0.005)
    losses_fast = fast._backend.train_steps(fast, X, y, idx, 9, etas, 0.005)
    assert losses_fast.dtype == np.float64
    assert losses_fast.shape == (7,)
    assert scaled_err(losses_fast, losses_ref) <= 10 * RTOL[dtype]
    assert scaled_err(fast.theta, ref.theta) <= 10 * RTOL[dtype]
    if batch_norm:
        assert scaled_err(fast.running, ref.running) <= 10 * RTOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_steps_leave_network(dtype):
    net = make_net(dtype)
    X, y = make_problem(SIZES, 10, dtype)
    theta = net.theta.copy()
    losses = net._backend.train_steps(net, X, y, np.arange(10, dtype=np.int64), 5,
                                      np.empty(0), 0.01)
    assert losses.shape == (0,)
    assert np.array_equal(net.theta, theta)


@pytest.mark.parametrize("dtype", DTYPES)
def test_single_layer_network(dtype):
    # k = 1: no hidden layer, so no batch normalization and no input gradient at all.
    ref = make_net(dtype, backend="numpy", sizes=[24, 10])
    fast = ref.copy(backend="cython")
    X, y = make_problem([24, 10], 12, dtype)
    assert scaled_err(fast.scores(X, batch_stats=False), ref.scores(X, batch_stats=False)) \
        <= RTOL[dtype]
    loss_ref, grad_ref = ref.loss_and_gradients(X, y, lam=0.01)
    loss_fast, grad_fast = fast.loss_and_gradients(X, y, lam=0.01)
    assert abs(loss_fast - loss_ref) <= RTOL[dtype] * abs(loss_ref)
    assert scaled_err(grad_fast, grad_ref) <= RTOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_sample_inference(dtype):
    ref = make_net(dtype, backend="numpy")
    fast = ref.copy(backend="cython")
    X, _ = make_problem(SIZES, 1, dtype)
    assert scaled_err(fast.scores(X, batch_stats=False), ref.scores(X, batch_stats=False)) \
        <= RTOL[dtype]


def test_nan_parameters_propagate():
    # The kernels' ReLU keeps NaN as np.maximum does, so divergence reaches the loss.
    net = make_net("float64")
    X, y = make_problem(SIZES, 10, "float64")
    net.theta[0] = np.nan
    losses = net._backend.train_steps(net, X, y, np.arange(10, dtype=np.int64), 10,
                                      np.array([0.01]), 0.0)
    assert np.isnan(losses[0])
