"""Split one training step's time into batch gathering, the two large GEMMs and the rest.

Usage: python bench/profile_step.py [--threads N] [--rows ROWS]

Times ``train_steps`` of each backend on the 3072-50-50-10 network with batch normalization
(float32, batch 100, random rows of a ROWS x 3072 pool) beside the parts that bound it: copying
each batch's rows out of the pool, and the forward ``X_b W1^T`` and weight-gradient ``dS1^T X_b``
products, with and without that copy. Prints milliseconds per step (median of 7 repeats).
"""
import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

import fastkbn

STEPS = 450
BATCH = 100


def median_seconds(fn, repeats=7):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default: 1)")
    parser.add_argument("--rows", type=int, default=45000,
                        help="rows in the pool that batches are drawn from (default: 45000)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.rows, 3072)).astype(np.float32)
    y = rng.integers(0, 10, args.rows)
    idx = np.resize(rng.permutation(args.rows), STEPS * BATCH).astype(np.int64)
    etas = np.full(STEPS, 0.01)
    batch = np.empty((BATCH, 3072), np.float32)
    dS = rng.normal(size=(BATCH, 50)).astype(np.float32)

    with threadpool_limits(args.threads):
        per_step = {}
        for name in fastkbn.available_backends():
            net = fastkbn.Network([3072, 50, 50, 10], backend=name, seed=0)
            net._backend.train_steps(net, X, y, idx[:2 * BATCH], BATCH, etas[:2], 0.005)
            per_step[name] = median_seconds(
                lambda: net._backend.train_steps(net, X, y, idx, BATCH, etas, 0.005)) / STEPS
        W = np.ascontiguousarray(net.params["W1"])

        def gather():
            for s in range(STEPS):
                np.take(X, idx[s * BATCH:(s + 1) * BATCH], axis=0, out=batch)

        def gemms_on_cached_batch():
            for _ in range(STEPS):
                np.dot(batch, W.T)
                np.dot(dS.T, batch)

        def gather_and_gemms():
            for s in range(STEPS):
                np.take(X, idx[s * BATCH:(s + 1) * BATCH], axis=0, out=batch)
                np.dot(batch, W.T)
                np.dot(dS.T, batch)

        parts = {"gather": gather, "two GEMMs, batch in cache": gemms_on_cached_batch,
                 "gather + two GEMMs": gather_and_gemms}
        part_times = {label: median_seconds(fn) / STEPS for label, fn in parts.items()}

    print(f"3072-50-50-10 with BN, float32, batch {BATCH}, {args.threads} BLAS thread(s), "
          f"pool of {args.rows} rows")
    for name, seconds in {**per_step, **part_times}.items():
        print(f"{name:<28} {seconds * 1e3:7.3f} ms/step")


if __name__ == "__main__":
    main()
