"""Network construction, inference modes, saving and the checks on its inputs."""
import numpy as np
import pytest

import fastkbn
from fastkbn import Network
from conftest import make_problem

ALL_BACKENDS = ("numpy", "numba", "cython")


def test_init_scales():
    net = Network([3072, 50, 10], init="he", seed=0, backend="numpy", dtype="float64")
    assert net.params["W1"].std() == pytest.approx(np.sqrt(2 / 3072), rel=0.02)
    net = Network([200, 100, 10], init=1e-3, seed=0, backend="numpy", dtype="float64")
    assert net.params["W1"].std() == pytest.approx(1e-3, rel=0.05)
    assert net.params["W2"].std() == pytest.approx(1e-3, rel=0.1)
    assert np.all(net.params["gamma1"] == 1)
    assert np.all(net.params["beta1"] == 0)
    assert np.all(net.running_stats["var1"] == 1)


def test_same_seed_same_weights():
    a = Network([30, 20, 5], seed=3, backend="numpy")
    b = Network([30, 20, 5], seed=3, backend="numpy")
    assert np.array_equal(a.theta, b.theta)


def test_parameter_names_and_shapes():
    net = Network([7, 5, 4, 3], backend="numpy")
    shapes = {name: view.shape for name, view in net.params.items()}
    assert shapes == {"W1": (5, 7), "b1": (5,), "gamma1": (5,), "beta1": (5,),
                      "W2": (4, 5), "b2": (4,), "gamma2": (4,), "beta2": (4,),
                      "W3": (3, 4), "b3": (3,)}
    assert set(Network([7, 5, 3], batch_norm=False, backend="numpy").params) == \
        {"W1", "b1", "W2", "b2"}


def test_batch_stats_forward_leaves_running_averages():
    net = Network([6, 5, 3], backend="numpy", seed=0)
    X, _ = make_problem(net.sizes, 20, "float32")
    before = net.running.copy()
    P = net.forward(X, batch_stats=True)
    assert np.array_equal(net.running, before)
    assert P.shape == (20, 3)
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-6)


def test_inference_modes_differ_and_are_explicit():
    net = Network([6, 5, 3], backend="numpy", seed=0)
    X, _ = make_problem(net.sizes, 20, "float32")
    X = X * 3 + 2
    assert not np.allclose(net.scores(X, batch_stats=True), net.scores(X, batch_stats=False))
    with pytest.raises(TypeError):
        net.scores(X)


def test_gradients_dict_keys_and_shapes():
    net = Network([6, 5, 4, 3], backend="numpy", seed=0, dtype="float64")
    X, y = make_problem(net.sizes, 8, "float64")
    grads = net.gradients(X, y, lam=0.1)
    assert set(grads) == set(net.params)
    for name in grads:
        assert grads[name].shape == net.params[name].shape


def test_save_load_round_trip(tmp_path):
    net = Network([6, 5, 4, 3], backend="numpy", seed=0, dtype="float64", init="xavier",
                  alpha=0.8)
    net.running[:] = np.arange(net.running.size)
    path = net.save(tmp_path / "model.npz")
    loaded = Network.load(path, backend="numpy")
    assert np.array_equal(loaded.theta, net.theta)
    assert np.array_equal(loaded.running, net.running)
    assert loaded.config() == net.config()
    assert list(tmp_path.iterdir()) == [path]


def _rewrite(path, dest, drop=None, replace=None):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    if drop:
        del arrays[drop]
    if replace:
        arrays.update(replace)
    np.savez(dest, **arrays)
    return dest


def test_load_rejects_damaged_files(tmp_path):
    net = Network([6, 5, 3], backend="numpy", seed=0)
    path = net.save(tmp_path / "model.npz")

    with pytest.raises(ValueError, match="missing array 'W2'"):
        Network.load(_rewrite(path, tmp_path / "a.npz", drop="W2"))
    with pytest.raises(ValueError, match="'b1' has shape"):
        Network.load(_rewrite(path, tmp_path / "b.npz", replace={"b1": np.zeros(4, "f4")}))
    with pytest.raises(ValueError, match="'W1' has dtype float64"):
        Network.load(_rewrite(path, tmp_path / "c.npz",
                              replace={"W1": np.zeros((5, 6))}))
    meta = str(np.load(path)["meta"]).replace('"format_version": 1', '"format_version": 99')
    with pytest.raises(ValueError, match="format version 99"):
        Network.load(_rewrite(path, tmp_path / "d.npz", replace={"meta": np.array(meta)}))
    truncated = tmp_path / "e.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated"):
        Network.load(truncated)
    with pytest.raises(FileNotFoundError):
        Network.load(tmp_path / "missing.npz")


def test_save_rejects_non_finite(tmp_path):
    net = Network([6, 5, 3], backend="numpy", seed=0)
    net.theta[0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        net.save(tmp_path / "model.npz")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kwargs,match", [
    (dict(sizes=[]), "at least an input width"),
    (dict(sizes=[10]), "at least an input width"),
    (dict(sizes=[10, 0, 3]), "layer size 0 at position 1"),
    (dict(sizes=[10, -5, 3]), "layer size -5"),
    (dict(sizes=[10, 2.5, 3]), "layer size 2.5"),
    (dict(sizes=[10, 5, 1]), "number of classes"),
    (dict(sizes=[10, 3], init="gauss"), "unknown init 'gauss'; expected one of he, xavier"),
    (dict(sizes=[10, 3], init=0.0), "init"),
    (dict(sizes=[10, 3], init=-1e-3), "init"),
    (dict(sizes=[10, 3], dtype="float16"), "invalid dtype 'float16'; expected one of float32"),
    (dict(sizes=[10, 3], alpha=1.0), "alpha must be < 1.0"),
    (dict(sizes=[10, 3], alpha=-0.1), "alpha must be >= 0.0"),
    (dict(sizes=[10, 3], backend="torch"), "unknown backend 'torch'; expected one of auto"),
])
def test_constructor_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Network(**kwargs)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
class TestBadInput:
    """Every public entry point rejects bad data before a backend sees it."""

    def net(self, backend, **kwargs):
        return Network([6, 5, 4], backend=backend, seed=0, **kwargs)

    @pytest.mark.parametrize("labels,match", [
        ([0, 1, -1, 2], "label -1 outside the valid range 0..3"),
        ([0, 1, 4, 2], "label 4 outside the valid range 0..3"),
        ([1, 2, 3, 4], "1-based"),
        ([0.0, 1.5, 2.0, 3.0], "non-integer label 1.5"),
    ])
    def test_labels_rejected(self, backend, labels, match):
        net = self.net(backend)
        X, _ = make_problem(net.sizes, 4, "float32")
        with pytest.raises(ValueError, match=match):
            net.gradients(X, np.array(labels))
        with pytest.raises(ValueError, match=match):
            fastkbn.train(net, (X, np.array(labels)), batch_size=2, n_s=2, cycles=1,
                          progress=False)

    def test_label_shape_and_length(self, backend):
        net = self.net(backend)
        X, y = make_problem(net.sizes, 4, "float32")
        with pytest.raises(ValueError, match=r"shape \(4, 1\).*ravel"):
            net.evaluate(X, y.reshape(4, 1))
        with pytest.raises(ValueError, match="3 labels but X has 4 samples"):
            net.evaluate(X, y[:3])

    def test_float_labels_with_integer_values_accepted(self, backend):
        net = self.net(backend)
        X, y = make_problem(net.sizes, 4, "float32")
        assert net.evaluate(X, y.astype(float))["loss"] > 0

    @pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
    def test_non_finite_X(self, backend, bad):
        net = self.net(backend)
        X, y = make_problem(net.sizes, 40, "float32")
        X[33, 2] = bad
        before = (net.theta.copy(), net.running.copy())
        with pytest.raises(ValueError, match="non-finite value .* at row 33, column 2"):
            net.predict(X)
        with pytest.raises(ValueError, match="row 33, column 2"):
            fastkbn.train(net, (X, y), batch_size=10, n_s=5, cycles=1, progress=False)
        assert np.array_equal(net.theta, before[0])
        assert np.array_equal(net.running, before[1])

    def test_wrong_width_dtype_empty(self, backend):
        net = self.net(backend)
        X, y = make_problem([7, 4], 5, "float32")
        with pytest.raises(ValueError, match="7 features per sample but the network's input "
                                             "width is 6"):
            net.predict(X)
        X, y = make_problem(net.sizes, 5, "float64")
        with pytest.raises(TypeError, match="dtype float64 but the network computes in float32"):
            net.predict(X)
        with pytest.raises(ValueError, match="empty"):
            net.predict(np.zeros((0, 6), np.float32))
        with pytest.raises(TypeError, match="NumPy array"):
            net.predict([[0.0] * 6])

    def test_strided_fortran_readonly_inputs_read_correctly(self, backend):
        net = self.net(backend, dtype="float64")
        X, y = make_problem(net.sizes, 12, "float64")
        expected = net.scores(X, batch_stats=True)
        wide = np.zeros((12, 12))
        wide[:, ::2] = X
        fortran = np.asfortranarray(X)
        readonly = X.copy()
        readonly.flags.writeable = False
        for variant in (wide[:, ::2], fortran, readonly):
            np.testing.assert_array_equal(net.scores(variant, batch_stats=True), expected)

    def test_batch_of_one_with_batch_norm(self, backend):
        net = self.net(backend)
        X, y = make_problem(net.sizes, 1, "float32")
        with pytest.raises(ValueError, match="at least 2 samples"):
            net.gradients(X, y)
        with pytest.raises(ValueError, match="at least 2 samples"):
            net.scores(X, batch_stats=True)
        assert net.predict(X).shape == (1,)
