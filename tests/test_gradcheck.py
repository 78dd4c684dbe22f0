"""Analytic gradients of the reference path against centered differences."""
import numpy as np
import pytest

import fastkbn
from fastkbn import Network, config
from fastkbn.gradcheck import relative_error
from conftest import make_problem

# Depths of the classic study with narrower layers, so the check stays fast.
NETWORKS = {2: [], 3: [20, 15], 9: [15, 12, 10, 10, 8, 8, 8, 8]}


@pytest.mark.parametrize("layers", NETWORKS)
@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_reference_gradients(layers, batch_norm, lam):
    net = Network([20, *NETWORKS[layers], 10], batch_norm=batch_norm, dtype="float64",
                  backend="numpy", seed=layers)
    X, y = make_problem(net.sizes, 10, "float64", seed=layers)
    errors = fastkbn.gradcheck(net, X, y, lam=lam)
    assert set(errors) == set(net.params)
    worst = max(errors.values(), key=lambda e: e["max_rel"])
    assert worst["max_rel"] <= config.GRADCHECK_REL_TOL
    assert max(e["max_abs"] for e in errors.values()) <= 1e-8


def test_gradcheck_catches_a_wrong_gradient(monkeypatch):
    net = Network([20, 10, 5], dtype="float64", backend="numpy", seed=0)
    X, y = make_problem(net.sizes, 10, "float64")
    original = net._backend.loss_and_gradients

    def off_by_a_little(net_, X_, y_, lam):
        loss, grad = original(net_, X_, y_, lam)
        grad[net.layout.slices()["W2"][0]] *= 1.001
        return loss, grad

    monkeypatch.setattr(net._backend, "loss_and_gradients", off_by_a_little)
    errors = fastkbn.gradcheck(net, X, y)
    assert errors["W2"]["max_rel"] > 1e-4
    assert errors["W1"]["max_rel"] <= config.GRADCHECK_REL_TOL


def test_gradcheck_leaves_network_unchanged():
    net = Network([20, 10, 5], seed=0, backend="numpy")
    X, y = make_problem(net.sizes, 10, "float32")
    theta, running = net.theta.copy(), net.running.copy()
    fastkbn.gradcheck(net, X, y, lam=0.1)
    assert net.dtype == np.float32
    assert np.array_equal(net.theta, theta)
    assert np.array_equal(net.running, running)


def test_relative_error_floor():
    assert relative_error(np.array([1e-17]), np.array([1e-11]))[0] <= 1e-7
    assert relative_error(np.array([1.0]), np.array([1.1]))[0] == pytest.approx(0.1 / 2.1)


def test_relu_kink_inside_stencil_is_handled():
    net = Network([20, 10, 5], batch_norm=False, dtype="float64", backend="numpy", seed=0)
    X, y = make_problem(net.sizes, 10, "float64")
    # Put the first hidden unit's input for sample 0 at 3e-6, inside the stencil of h = 1e-5.
    params = net.params
    params["b1"][0] -= (X[0] @ params["W1"][0] + params["b1"][0]) - 3e-6
    errors = fastkbn.gradcheck(net, X, y)
    assert max(e["max_rel"] for e in errors.values()) <= config.GRADCHECK_REL_TOL
    assert sum(e["kinks"] for e in errors.values()) == 0


def test_kink_left_out_when_retries_cannot_avoid_it():
    net = Network([20, 10, 5], batch_norm=False, dtype="float64", backend="numpy", seed=0)
    X, y = make_problem(net.sizes, 10, "float64")
    params = net.params
    params["b1"][0] -= X[0] @ params["W1"][0] + params["b1"][0]
    errors = fastkbn.gradcheck(net, X, y)
    assert errors["b1"]["kinks"] >= 1
    assert errors["W2"]["kinks"] == 0
