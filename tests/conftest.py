"""Shared fixtures: small random problems and the list of compiled backends under test."""
import os
import sys

import numpy as np
import pytest

# Let tests import the fixture writers in tests/cifar_fixtures.py by module name.
sys.path.insert(0, os.path.dirname(__file__))

COMPILED_BACKENDS = ("numba", "cython")


def make_problem(sizes, n, dtype, seed=0):
    """Random standardized-looking data X (n, d) and labels y (n,) for a network of ``sizes``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], size=n).astype(np.int64)
    return X, y


@pytest.fixture
def problem():
    return make_problem
