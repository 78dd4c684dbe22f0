"""Figures as PNG files, drawn with matplotlib's object-oriented API.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas directly, so nothing here
selects a global backend or needs a display, and importing fastkbn leaves pyplot untouched.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def new_figure(width=10.0, height=3.2, ncols=1):
    """Create a headless figure and its axes, not registered with pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def save_figure(fig, path) -> Path:
    """Write ``fig`` as a PNG at 100 dpi, creating the folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def plot_curves(history, path, title: str = "") -> Path:
    """Loss, cost and accuracy on training and validation data against the training step.

    ``history`` is a :class:`fastkbn.History` or its ``to_dict()``. Curves that are all NaN
    (no validation data, or training curves not evaluated) are left out.
    """
    get = (lambda key: np.asarray(history[key])) if isinstance(history, dict) else \
        (lambda key: np.asarray(getattr(history, key)))
    steps = get("step")
    fig, axes = new_figure(ncols=3)
    for ax, quantity in zip(axes, ("loss", "cost", "accuracy")):
        for split, style in (("train", "-"), ("val", "--")):
            values = get(f"{split}_{quantity}")
            if values.size and not np.isnan(values).all():
                label = "training" if split == "train" else "validation"
                ax.plot(steps, values, style, label=label)
        ax.set_xlabel("update step")
        ax.set_ylabel(quantity)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
