"""Training: convergence, determinism, divergence, partial batches, checkpoints and resume."""
import logging

import numpy as np
import pytest

import fastkbn
from fastkbn import Network, TrainingDivergedError, train


ALL_BACKENDS = ("numpy", "numba", "cython")


def separable(n=600, d=20, k=3, seed=0, dtype="float32"):
    """Linearly separable classes with a margin: samples near a class boundary are dropped."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3 * n, d))
    scores = X @ rng.normal(size=(d, k))
    top2 = np.sort(scores, axis=1)[:, -2:]
    keep = np.flatnonzero(top2[:, 1] - top2[:, 0] > 1.0)[:n]
    return X[keep].astype(dtype), scores[keep].argmax(axis=1)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("batch_norm", [True, False])
def test_separable_problem_learned(backend, batch_norm):
    X, y = separable(n=1200)
    net = Network([20, 40, 3], batch_norm=batch_norm, backend=backend, seed=0)
    history = train(net, (X[:1000], y[:1000], X[1000:], y[1000:]), batch_size=25, n_s=200,
                    cycles=2, lam=1e-4, eta_max=0.1, progress=False)
    assert history.train_accuracy[-1] >= 0.99
    assert history.val_accuracy[-1] >= 0.97
    assert net.accuracy(X[1000:], y[1000:]) == history.val_accuracy[-1]


def test_history_layout():
    X, y = separable(n=230)
    net = Network([20, 10, 3], backend="numpy", seed=0)
    history = train(net, (X, y, X[:50], y[:50]), batch_size=20, n_s=30, cycles=2,
                    points_per_cycle=4, progress=False)
    assert history.step.tolist() == [0, 15, 30, 45, 60, 75, 90, 105, 120]
    assert history.lr.shape == (120,)
    assert history.batch_loss.shape == (120,)
    assert np.isfinite(history.batch_loss).all()
    np.testing.assert_array_equal(history.lr, fastkbn.cyclical_lr(np.arange(120), 1e-5, 0.1, 30))
    for name in ("train_loss", "train_cost", "train_accuracy", "val_loss", "val_cost",
                 "val_accuracy"):
        assert getattr(history, name).shape == (9,)
    assert (history.train_cost >= history.train_loss).all()
    assert set(history.to_dict()) >= {"step", "lr", "val_accuracy"}


def test_no_validation_data_gives_nan_curves():
    X, y = separable(n=100)
    history = train(Network([20, 10, 3], backend="numpy", seed=0), (X, y), batch_size=20,
                    n_s=5, cycles=1, progress=False)
    assert np.isnan(history.val_accuracy).all()
    assert np.isfinite(history.train_accuracy).all()


def test_evaluation_leaves_running_averages():
    X, y = separable(n=100)
    net = Network([20, 10, 3], backend="numpy", seed=0)
    train(net, (X, y), batch_size=20, n_s=5, cycles=1, progress=False)
    before = net.running.copy()
    net.evaluate(X, y)
    net.accuracy(X, y)
    assert np.array_equal(before, net.running)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_same_seed_same_history_bit_for_bit(backend):
    X, y = separable(n=230)
    histories = []
    for _ in range(2):
        net = Network([20, 10, 3], backend=backend, seed=1)
        histories.append(train(net, (X, y, X[:40], y[:40]), batch_size=20, n_s=12, cycles=2,
                               seed=5, progress=False).to_dict())
    assert histories[0] == histories[1]


def test_other_seed_other_shuffle():
    X, y = separable(n=230)
    runs = [train(Network([20, 10, 3], backend="numpy", seed=1), (X, y), batch_size=20, n_s=12,
                  cycles=1, seed=s, progress=False).batch_loss for s in (0, 1)]
    assert not np.array_equal(runs[0], runs[1])


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_last_batch_of_one_dropped_with_warning(backend, caplog):
    X, y = separable(n=101)
    net = Network([20, 10, 3], backend=backend, seed=0)
    with caplog.at_level(logging.WARNING, logger="fastkbn.training"):
        history = train(net, (X, y), batch_size=10, n_s=25, cycles=1, progress=False)
    assert "would hold one sample" in caplog.text
    assert np.isfinite(net.running).all()
    assert np.isfinite(history.batch_loss).all()
    assert np.isfinite(net.scores(X, batch_stats=False)).all()


def test_last_batch_of_one_kept_without_batch_norm(caplog):
    X, y = separable(n=101)
    with caplog.at_level(logging.WARNING, logger="fastkbn.training"):
        train(Network([20, 10, 3], batch_norm=False, backend="numpy", seed=0), (X, y),
              batch_size=10, n_s=25, cycles=1, progress=False)
    assert "one sample" not in caplog.text


@pytest.mark.parametrize("kwargs,match", [
    (dict(eta_min=0.2, eta_max=0.1), "eta_min .* larger than eta_max"),
    (dict(n_s=0), "n_s"),
    (dict(cycles=0), "cycles must be a positive integer"),
    (dict(lam=-0.1), "lam must be >= 0.0"),
    (dict(lam=float("nan")), "lam must be finite"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(batch_size=500), "batch_size 500 is larger than the 100 training samples"),
    (dict(checkpoint_every=5), "checkpoint_every needs a checkpoint path"),
])
def test_train_rejects_bad_hyperparameters(kwargs, match):
    X, y = separable(n=100)
    net = Network([20, 10, 3], backend="numpy", seed=0)
    before = net.theta.copy()
    with pytest.raises(ValueError, match=match):
        train(net, (X, y), **{"n_s": 5, "cycles": 1, "progress": False, **kwargs})
    assert np.array_equal(before, net.theta)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_divergence_stops_with_last_finite_parameters(backend):
    X, y = separable(n=200)
    X *= 1e3
    net = Network([20, 10, 3], batch_norm=False, backend=backend, seed=0)
    with pytest.raises(TrainingDivergedError, match="diverged at step") as info:
        train(net, (X, y), batch_size=20, n_s=50, cycles=1, eta_min=1e3, eta_max=1e4,
              progress=False)
    assert info.value.step >= 0
    assert info.value.eta >= 1e3
    assert np.isfinite(net.theta).all()
    assert np.isfinite(net.running).all()


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_resume_is_bit_identical(backend, tmp_path):
    X, y = separable(n=230)
    data = (X, y, X[:40], y[:40])
    settings = dict(batch_size=20, n_s=17, cycles=2, seed=3, progress=False)

    full = Network([20, 10, 3], backend=backend, seed=1)
    full_history = train(full, data, **settings)

    class Interrupt:
        """Backend wrapper that raises KeyboardInterrupt on its fifth call."""

        def __init__(self, inner):
            self.inner, self.calls, self.name = inner, 0, inner.name

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def train_steps(self, *args):
            self.calls += 1
            if self.calls == 5:
                raise KeyboardInterrupt
            return self.inner.train_steps(*args)

    checkpoint = tmp_path / "checkpoint.npz"
    part = Network([20, 10, 3], backend=backend, seed=1)
    part._backend = Interrupt(part._backend)
    with pytest.raises(KeyboardInterrupt):
        train(part, data, checkpoint=checkpoint, checkpoint_every=7, **settings)
    assert checkpoint.exists()

    resumed = Network([20, 10, 3], backend=backend, seed=99)
    history = train(resumed, data, checkpoint=checkpoint, resume=True, **settings)
    assert np.array_equal(resumed.theta, full.theta)
    assert np.array_equal(resumed.running, full.running)
    assert history.to_dict() == full_history.to_dict()


def test_resume_with_other_settings_rejected(tmp_path):
    X, y = separable(n=100)
    checkpoint = tmp_path / "checkpoint.npz"
    train(Network([20, 10, 3], backend="numpy", seed=1), (X, y), batch_size=20, n_s=5,
          cycles=1, checkpoint=checkpoint, progress=False)
    with pytest.raises(ValueError, match="other training settings"):
        train(Network([20, 10, 3], backend="numpy", seed=1), (X, y), batch_size=20, n_s=6,
              cycles=1, checkpoint=checkpoint, resume=True, progress=False)
    with pytest.raises(ValueError, match="another network"):
        train(Network([20, 12, 3], backend="numpy", seed=1), (X, y), batch_size=20, n_s=5,
              cycles=1, checkpoint=checkpoint, resume=True, progress=False)


def test_checkpoint_loads_as_network(tmp_path):
    X, y = separable(n=100)
    net = Network([20, 10, 3], backend="numpy", seed=1)
    train(net, (X, y), batch_size=20, n_s=5, cycles=1, checkpoint=tmp_path / "c.npz",
          progress=False)
    loaded = Network.load(tmp_path / "c.npz", backend="numpy")
    assert np.array_equal(loaded.theta, net.theta)


def test_data_object_and_errors():
    X, y = separable(n=100)

    class Data:
        X_train, y_train, X_val, y_val = X, y, X[:10], y[:10]

    history = train(Network([20, 10, 3], backend="numpy", seed=1), Data(), batch_size=20,
                    n_s=5, cycles=1, progress=False)
    assert np.isfinite(history.val_accuracy).all()
    with pytest.raises(TypeError, match="X_train and y_train"):
        train(Network([20, 10, 3], backend="numpy"), object(), progress=False)
    with pytest.raises(ValueError, match=r"\(X, y\) or \(X, y, X_val, y_val\)"):
        train(Network([20, 10, 3], backend="numpy"), (X, y, X), progress=False)


def test_resume_after_interrupt_during_evaluation(tmp_path):
    X, y = separable(n=230)
    data = (X, y, X[:40], y[:40])
    settings = dict(batch_size=20, n_s=17, cycles=1, seed=3, points_per_cycle=2,
                    progress=False)
    full_history = train(Network([20, 10, 3], backend="numpy", seed=1), data, **settings)

    net = Network([20, 10, 3], backend="numpy", seed=1)
    calls = {"n": 0}
    original = net._evaluate_checked

    def interrupt_second_point(*args):
        calls["n"] += 1
        # Calls 1-2 evaluate step 0 (training, validation); call 3 is step 17's first.
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args)

    net._evaluate_checked = interrupt_second_point
    checkpoint = tmp_path / "checkpoint.npz"
    with pytest.raises(KeyboardInterrupt):
        train(net, data, checkpoint=checkpoint, **settings)

    resumed = Network([20, 10, 3], backend="numpy", seed=1)
    history = train(resumed, data, checkpoint=checkpoint, resume=True, **settings)
    assert history.step.tolist() == [0, 17, 34]
    assert history.to_dict() == full_history.to_dict()
