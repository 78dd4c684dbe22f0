"""Named constants: default hyperparameters, numerical tolerances and thresholds.

Kernels and tests read these names instead of repeating literals, so a tolerance or a default
changes in one place.
"""

# Batch normalization.
BN_EPS = 1e-8
"""Added to the batch variance before the square root. Small, because the initialization study
uses weights with sigma = 1e-4, whose hidden-layer variances fall far below the usual 1e-5."""

RUNNING_ALPHA = 0.9
"""Default momentum of the running averages: ``avg <- alpha * avg + (1 - alpha) * batch``."""

MIN_BN_BATCH = 2
"""Smallest batch whose statistics are defined: one sample has zero variance."""

# Training defaults: the classic CIFAR-10 setup (45,000 training images, batch 100).
BATCH_SIZE = 100
ETA_MIN = 1e-5
ETA_MAX = 1e-1
N_S = 2250
CYCLES = 2
LAM = 0.005
POINTS_PER_CYCLE = 10
"""How many times per cycle ``train`` evaluates loss, cost and accuracy for the history."""

# Dtypes.
DTYPES = ("float32", "float64")
DEFAULT_DTYPE = "float32"

# Gradient checks.
GRADCHECK_H = 1e-5
GRADCHECK_REL_FLOOR = 1e-3
"""Denominator floor of the relative error ``|a - n| / max(floor, |a| + |n|)``. In float64 the
cost's round-off (about 1e-16 of a cost near 2.3) becomes an absolute error near 1e-10 in a
centered difference with h = 1e-5. Gradients that are zero analytically (hidden biases under
batch normalization) or tiny would read as relative errors of order 1; with the floor they are
compared absolutely, at 1e-3 times the tolerance."""
GRADCHECK_REL_TOL = 1e-6
"""Largest relative error that ``fastkbn gradcheck`` accepts in float64."""

# Parity between a backend and the NumPy reference (relative error).
PARITY_RTOL = {"float64": 1e-12, "float32": 1e-4}
PARITY_STEPS_RTOL = {"float64": 1e-10, "float32": 1e-3}

# Checkpoint and model files.
FORMAT_VERSION = 1
