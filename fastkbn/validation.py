"""Input checks shared by the public API. Each raises before any computation, with the value."""
from __future__ import annotations

import math
import numbers

import numpy as np

from .config import DTYPES


def check_dtype(dtype) -> np.dtype:
    """Return ``dtype`` as a NumPy float dtype, or raise naming the accepted values."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in DTYPES:
        raise ValueError(f"invalid dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    return dt


def check_sizes(sizes) -> tuple:
    """Return layer sizes ``(d, h1, ..., K)`` as a tuple of positive ints, or raise."""
    try:
        out = tuple(sizes)
    except TypeError:
        raise TypeError(f"sizes must be a sequence of layer widths, got {sizes!r}") from None
    if len(out) < 2:
        raise ValueError(f"sizes {list(out)} needs at least an input width and a number of "
                         "classes, for example [3072, 50, 50, 10]")
    for i, s in enumerate(out):
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s <= 0:
            raise ValueError(f"layer size {s!r} at position {i} of sizes {list(out)} is invalid; "
                             "every size must be a positive integer")
    if out[-1] < 2:
        raise ValueError(f"the last size is the number of classes and must be at least 2, "
                         f"got {out[-1]}")
    return tuple(int(s) for s in out)


def check_finite_number(name: str, value, *, minimum=None, strict=False, maximum=None,
                        strict_max=False) -> float:
    """Return ``value`` as a float after checking it is finite and inside the given bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        bound = ">" if strict else ">="
        raise ValueError(f"{name} must be {bound} {minimum}, got {value}")
    if maximum is not None and (value > maximum or (strict_max and value == maximum)):
        bound = "<" if strict_max else "<="
        raise ValueError(f"{name} must be {bound} {maximum}, got {value}")
    return value


def check_positive_int(name: str, value) -> int:
    """Return ``value`` after checking it is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_X(X, width: int, dtype: np.dtype, name: str = "X") -> np.ndarray:
    """Return X as a C-contiguous ``(n, width)`` array of ``dtype``, or raise.

    X must already have the network's dtype: converting silently would hide a float64 array fed
    to a float32 network (or the reverse) and the precision the caller expects. Fortran-ordered
    and strided arrays are copied into C order. C-contiguous read-only arrays (memory-mapped
    data shared between workers) are used in place, because no backend writes to X.
    """
    if not isinstance(X, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(X).__name__}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n samples, {width} features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {X.shape}); pass at least one sample")
    if X.shape[1] != width:
        raise ValueError(f"{name} has {X.shape[1]} features per sample but the network's input "
                         f"width is {width}")
    if X.dtype != dtype:
        raise TypeError(f"{name} has dtype {X.dtype} but the network computes in {dtype}; "
                        f"convert it with {name}.astype(np.{dtype.name}) or build the network "
                        f"with dtype={X.dtype.name!r}")
    if not np.isfinite(X).all():
        bad = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"{name} contains a non-finite value ({X[bad[0], bad[1]]}) at row "
                         f"{bad[0]}, column {bad[1]}; remove or impute such values first")
    return np.ascontiguousarray(X)


def check_y(y, n: int, n_classes: int, name: str = "y") -> np.ndarray:
    """Return labels as a contiguous int64 ``(n,)`` array in ``0..n_classes-1``, or raise."""
    y_arr = np.asarray(y)
    if y_arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D with one integer label per sample, got shape "
                         f"{y_arr.shape}; for a column vector pass {name}.ravel()")
    if y_arr.shape[0] != n:
        raise ValueError(f"{name} has {y_arr.shape[0]} labels but X has {n} samples")
    if y_arr.dtype.kind == "f":
        if not np.isfinite(y_arr).all() or (y_arr != np.round(y_arr)).any():
            bad = y_arr[~np.isfinite(y_arr) | (y_arr != np.round(y_arr))][0]
            raise ValueError(f"{name} contains the non-integer label {bad}; labels must be "
                             f"integers in 0..{n_classes - 1}")
    elif y_arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer labels, got dtype {y_arr.dtype}")
    if n and (y_arr.min() < 0 or y_arr.max() >= n_classes):
        bad = y_arr.min() if y_arr.min() < 0 else y_arr.max()
        hint = ""
        if y_arr.min() >= 1 and y_arr.max() == n_classes:
            hint = "; the labels look 1-based, subtract 1"
        raise ValueError(f"{name} contains label {bad:g} outside the valid range "
                         f"0..{n_classes - 1}{hint}")
    return np.ascontiguousarray(y_arr, dtype=np.int64)
