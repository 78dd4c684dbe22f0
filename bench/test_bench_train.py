"""Time per training step and per epoch of every backend, network, BN setting and dtype.

One step is one ``train_steps`` call on one batch of 100, so it includes the per-call overhead
(a few microseconds) that a whole epoch in one call spreads over 450 steps. An epoch is 45,000
samples in 450 batches drawn through a shuffled index from a 5,000-row random pool.
"""
import numpy as np
import pytest

from conftest import (BACKENDS, BATCH_NORM, DTYPES, EPOCH_SAMPLES, NETS, describe, label,
                      median_seconds, time_first_call)
from fastkbn import benchmark as fb

STEP_ROUNDS = 200
STEP_WARMUP = 20
EPOCH_ROUNDS = 3
EPOCH_WARMUP = 1

parametrize = pytest.mark.parametrize
cases = [parametrize("dtype", DTYPES), parametrize("batch_norm", BATCH_NORM, ids=label),
         parametrize("net", NETS), parametrize("backend", BACKENDS)]


def apply(marks):
    def decorate(test):
        for mark in marks:
            test = mark(test)
        return test
    return decorate


@apply(cases)
def test_train_step(benchmark, make_network, pools, shuffled_index, bench_threads, backend, net,
                    batch_norm, dtype):
    network = make_network(backend, net, batch_norm, dtype)
    X, y = pools(dtype)
    batch = shuffled_index(X.shape[0], fb.BATCH_SIZE)
    etas = np.full(1, fb.ETA)
    train_steps = network._backend.train_steps
    args = (network, X, y, batch, fb.BATCH_SIZE, etas, fb.LAM)

    first_call_s = time_first_call(train_steps, *args)
    describe(benchmark, "step", backend, net, batch_norm, dtype, bench_threads,
             first_call_s=first_call_s, batch_size=fb.BATCH_SIZE, steps_per_round=1)
    benchmark.pedantic(train_steps, args=args, rounds=STEP_ROUNDS, warmup_rounds=STEP_WARMUP)


@apply(cases)
def test_train_epoch(benchmark, make_network, pools, shuffled_index, bench_threads, backend,
                     net, batch_norm, dtype):
    network = make_network(backend, net, batch_norm, dtype)
    X, y = pools(dtype)
    steps = EPOCH_SAMPLES // fb.BATCH_SIZE
    idx = shuffled_index(X.shape[0], EPOCH_SAMPLES)
    etas = np.full(steps, fb.ETA)
    train_steps = network._backend.train_steps

    first_call_s = time_first_call(train_steps, network, X, y, idx[:fb.BATCH_SIZE],
                                   fb.BATCH_SIZE, etas[:1], fb.LAM)
    describe(benchmark, "epoch", backend, net, batch_norm, dtype, bench_threads,
             first_call_s=first_call_s, batch_size=fb.BATCH_SIZE, steps_per_round=steps)
    benchmark.pedantic(train_steps, args=(network, X, y, idx, fb.BATCH_SIZE, etas, fb.LAM),
                       rounds=EPOCH_ROUNDS, warmup_rounds=EPOCH_WARMUP)

    median = median_seconds(benchmark)
    if median is not None:
        benchmark.extra_info["median_seconds_per_step"] = median / steps
