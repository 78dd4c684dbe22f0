"""Inference throughput: scores for 10,000 samples with the running averages, per backend."""
import pytest

from conftest import (BACKENDS, BATCH_NORM, DTYPES, INFERENCE_SAMPLES, NETS, describe, label,
                      median_seconds, time_first_call)

ROUNDS = 20
WARMUP = 3


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_norm", BATCH_NORM, ids=label)
@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_inference(benchmark, make_network, pools, bench_threads, backend, net, batch_norm,
                   dtype):
    network = make_network(backend, net, batch_norm, dtype)
    X, _ = pools(dtype, rows=INFERENCE_SAMPLES)
    # The backend is called directly, so the time leaves out Network.scores' input checks.
    scores = network._backend.scores
    args = (network, X, False)

    first_call_s = time_first_call(scores, *args)
    describe(benchmark, "inference", backend, net, batch_norm, dtype, bench_threads,
             first_call_s=first_call_s, samples=INFERENCE_SAMPLES)
    benchmark.pedantic(scores, args=args, rounds=ROUNDS, warmup_rounds=WARMUP)

    median = median_seconds(benchmark)
    if median is not None:
        benchmark.extra_info["samples_per_second"] = INFERENCE_SAMPLES / median
