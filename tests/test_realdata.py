"""Training on the real CIFAR-10 archive named by FASTKBN_DATA (skipped without it)."""
import os

import pytest

import fastkbn

pytestmark = [pytest.mark.realdata,
              pytest.mark.skipif(not os.environ.get("FASTKBN_DATA"),
                                 reason="FASTKBN_DATA does not name a CIFAR-10 archive"),
              pytest.mark.filterwarnings("ignore:.*official")]


@pytest.fixture(scope="module")
def cifar():
    return fastkbn.load_cifar10(os.environ["FASTKBN_DATA"])


def test_three_layer_batch_norm_accuracy(cifar):
    net = fastkbn.Network([3072, 50, 50, 10], batch_norm=True, seed=0)
    fastkbn.train(net, cifar, n_s=2250, cycles=2, lam=0.005, progress=False,
                  train_eval_size=5000)
    assert net.accuracy(cifar.X_test, cifar.y_test) >= 0.51
