"""Mini-batch training with a cyclical learning rate, history, divergence checks and checkpoints.

The loop here runs in Python only between logging points: each stretch of steps inside one
epoch is a single ``backend.train_steps`` call, which the compiled backends run without
returning to Python. Between stretches the loop evaluates, checks for divergence, writes
checkpoints and updates the progress bar.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import config
from .errors import TrainingDivergedError
from .fileio import save_npz_atomic
from .network import Network, load_npz_checked
from .schedules import CyclicalSchedule
from .validation import check_finite_number, check_positive_int

logger = logging.getLogger(__name__)

_CURVES = ("train_loss", "train_cost", "train_accuracy", "val_loss", "val_cost", "val_accuracy")


@dataclass
class History:
    """Curves and per-step values recorded by ``train``. Accuracies are fractions in [0, 1].

    Attributes
    ----------
    step : ndarray of int64, shape (m,)
        Training steps at which the curves were evaluated (0 is before the first update).
    epoch : ndarray of float64, shape (m,)
        The same points in epochs.
    train_loss, train_cost, train_accuracy, val_loss, val_cost, val_accuracy : ndarray (m,)
        Curves evaluated with the running averages; the validation ones are NaN without
        validation data.
    lr : ndarray of float64, shape (steps,)
        Learning rate of every step.
    batch_loss : ndarray of float64, shape (steps,)
        Mean cross-entropy of every step's mini-batch, before its update.
    """

    step: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    epoch: np.ndarray = field(default_factory=lambda: np.zeros(0))
    train_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    train_cost: np.ndarray = field(default_factory=lambda: np.zeros(0))
    train_accuracy: np.ndarray = field(default_factory=lambda: np.zeros(0))
    val_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    val_cost: np.ndarray = field(default_factory=lambda: np.zeros(0))
    val_accuracy: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lr: np.ndarray = field(default_factory=lambda: np.zeros(0))
    batch_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def to_dict(self) -> dict:
        """Return every field as a list, ready for JSON."""
        return {f.name: getattr(self, f.name).tolist() for f in fields(self)}

    @classmethod
    def from_arrays(cls, arrays: dict, prefix: str = "") -> "History":
        """Rebuild from arrays named ``prefix + field``, as checkpoints store them."""
        return cls(**{f.name: np.asarray(arrays[prefix + f.name]) for f in fields(cls)})

    def _append_point(self, step, epoch, values):
        self.step = np.append(self.step, np.int64(step))
        self.epoch = np.append(self.epoch, epoch)
        for name in _CURVES:
            setattr(self, name, np.append(getattr(self, name), values[name]))


@dataclass
class TrainConfig:
    """Hyperparameters of one ``train`` call, validated."""

    batch_size: int = config.BATCH_SIZE
    eta_min: float = config.ETA_MIN
    eta_max: float = config.ETA_MAX
    n_s: int = config.N_S
    cycles: int = config.CYCLES
    lam: float = config.LAM
    seed: int = 0
    points_per_cycle: int = config.POINTS_PER_CYCLE

    def __post_init__(self):
        self.batch_size = check_positive_int("batch_size", self.batch_size)
        self.schedule = CyclicalSchedule(self.eta_min, self.eta_max, self.n_s)
        self.cycles = check_positive_int("cycles", self.cycles)
        self.lam = check_finite_number("lam", self.lam, minimum=0.0)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) \
                or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        self.seed = int(self.seed)
        self.points_per_cycle = check_positive_int("points_per_cycle", self.points_per_cycle)

    @property
    def total_steps(self) -> int:
        return self.schedule.steps(self.cycles)

    def eval_steps(self) -> np.ndarray:
        """Steps at which the curves are evaluated: 0, then evenly per cycle, then the end."""
        points = np.linspace(0, self.total_steps, self.cycles * self.points_per_cycle + 1)
        return np.unique(np.round(points).astype(np.int64))

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in
                ("batch_size", "eta_min", "eta_max", "n_s", "cycles", "lam", "seed",
                 "points_per_cycle")}


def _unpack_data(data):
    """Accept a Dataset-like object (``X_train, y_train[, X_val, y_val]``) or a tuple."""
    if isinstance(data, (tuple, list)):
        if len(data) == 2:
            return data[0], data[1], None, None
        if len(data) == 4:
            return tuple(data)
        raise ValueError(f"data as a tuple must be (X, y) or (X, y, X_val, y_val), got "
                         f"{len(data)} items")
    try:
        X, y = data.X_train, data.y_train
    except AttributeError:
        raise TypeError("data must have X_train and y_train attributes (as load_cifar10 "
                        "returns) or be a tuple (X, y) or (X, y, X_val, y_val), got "
                        f"{type(data).__name__}") from None
    return X, y, getattr(data, "X_val", None), getattr(data, "y_val", None)


class _TrainingRun:
    """The state of one training run between chunks of steps; what a checkpoint stores."""

    def __init__(self, net, cfg, n_train):
        self.net = net
        self.cfg = cfg
        self.n_train = n_train
        # A batch of one sample has zero variance, so batch normalization cannot use it: an
        # epoch whose last batch would hold one sample drops that sample instead.
        self.n_epoch = n_train
        if net.batch_norm and n_train % cfg.batch_size == 1:
            self.n_epoch = n_train - 1
            logger.warning("with %d samples and batch size %d the last batch of each epoch "
                           "would hold one sample, which batch normalization cannot use; that "
                           "sample (a different one each epoch) is skipped", n_train,
                           cfg.batch_size)
        self.rng = np.random.default_rng(cfg.seed)
        self.order = np.zeros(0, dtype=np.int64)
        self.pos = 0
        self.step = 0
        self.history = History(lr=cfg.schedule.rates(0, cfg.total_steps),
                               batch_loss=np.full(cfg.total_steps, np.nan))

    def ensure_epoch(self):
        """Draw the next epoch's shuffled order once the current one is used up."""
        if self.pos >= self.n_epoch or self.order.size == 0:
            self.order = self.rng.permutation(self.n_train).astype(np.int64)
            self.pos = 0

    # Checkpoints -----------------------------------------------------------------------------

    def save(self, path):
        meta = {"format_version": config.FORMAT_VERSION, "kind": "checkpoint",
                "config": self.net.config(), "train_config": self.cfg.to_dict(),
                "step": self.step, "pos": self.pos, "n_train": self.n_train,
                "rng_state": self.rng.bit_generator.state}
        arrays = {"meta": np.array(json.dumps(meta)), **self.net.state_arrays(),
                  "order": self.order}
        arrays.update({f"history_{f.name}": getattr(self.history, f.name)
                       for f in fields(History)})
        save_npz_atomic(path, arrays)

    def restore(self, path):
        arrays, meta = load_npz_checked(path)
        if meta.get("kind") != "checkpoint":
            raise ValueError(f"{path} is a saved model, not a training checkpoint; pass a "
                             "checkpoint written during training")
        ours = self.cfg.to_dict()
        if meta["train_config"] != ours:
            diff = {k: (meta["train_config"].get(k), v) for k, v in ours.items()
                    if meta["train_config"].get(k) != v}
            raise ValueError(f"{path} was written with other training settings "
                             f"(checkpoint, requested): {diff}; resume with the same settings")
        if meta["config"] != self.net.config() or meta["n_train"] != self.n_train:
            raise ValueError(f"{path} was written for another network or data set "
                             f"({meta['config']}, {meta['n_train']} samples); resume with the "
                             "same network and data")
        saved = Network.load(path, backend=self.net.backend)
        self.net.theta[...] = saved.theta
        self.net.running[...] = saved.running
        self.order = np.asarray(arrays["order"], dtype=np.int64)
        self.pos = int(meta["pos"])
        self.step = int(meta["step"])
        self.rng.bit_generator.state = meta["rng_state"]
        self.history = History.from_arrays(arrays, "history_")


def train(net: Network, data, *, batch_size=config.BATCH_SIZE, eta_min=config.ETA_MIN,
          eta_max=config.ETA_MAX, n_s=config.N_S, cycles=config.CYCLES, lam=config.LAM, seed=0,
          points_per_cycle=config.POINTS_PER_CYCLE, progress=True, eval_train=True,
          train_eval_size=None, checkpoint=None, checkpoint_every=None,
          resume=False) -> History:
    """Train ``net`` in place by mini-batch SGD with a triangular cyclical learning rate.

    Each epoch visits the training data in a new random order (from ``seed``) in batches of
    ``batch_size``; only the last batch of an epoch may be smaller. The learning rate of step t
    is :func:`fastkbn.cyclical_lr` ``(t, eta_min, eta_max, n_s)`` and training runs
    ``cycles * 2 * n_s`` steps. Each step minimizes the mean cross-entropy of its batch plus
    ``lam * sum ||W||^2`` with batch statistics, and updates the running averages.

    Parameters
    ----------
    net : Network
    data : Dataset or tuple
        An object with ``X_train (n, d)``, ``y_train (n,)`` and optionally ``X_val``, ``y_val``
        (as :func:`fastkbn.load_cifar10` returns), or a tuple ``(X, y)`` or
        ``(X, y, X_val, y_val)``. X must have the network's dtype.
    points_per_cycle : int
        How many times per cycle loss, cost and accuracy are evaluated (with the running
        averages, which evaluation leaves unchanged).
    progress : bool
        Show a tqdm progress bar.
    eval_train : bool
        Evaluate the curves on the training data too.
    train_eval_size : int or None
        Evaluate the training curves on the first ``train_eval_size`` training samples only
        (None: all of them). A forward pass over 45,000 CIFAR-10 images at every point costs
        more than the training steps between points in short runs.
    checkpoint : path or None
        Checkpoint file (``.npz``). Written every ``checkpoint_every`` steps, at the end, and on
        KeyboardInterrupt (then the interrupt is raised again).
    resume : bool
        Continue from ``checkpoint`` if that file exists. A resumed run ends bit-identical to an
        uninterrupted one with the same settings.

    Returns
    -------
    History

    Raises
    ------
    TrainingDivergedError
        When a loss or parameter becomes non-finite; ``net`` then holds the last finite
        parameters, those from before the failing stretch of steps.
    """
    cfg = TrainConfig(batch_size, eta_min, eta_max, n_s, cycles, lam, seed, points_per_cycle)
    if checkpoint_every is not None:
        checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
        if checkpoint is None:
            raise ValueError("checkpoint_every needs a checkpoint path")
    X, y, X_val, y_val = _unpack_data(data)
    X, y = net.check_Xy(X, y, "X_train", "y_train")
    has_val = X_val is not None and y_val is not None and len(y_val) > 0
    if has_val:
        X_val, y_val = net.check_Xy(X_val, y_val, "X_val", "y_val")
    n = X.shape[0]
    if cfg.batch_size > n:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the {n} training samples; "
                         f"use at most {n}")
    if net.batch_norm and n < config.MIN_BN_BATCH:
        raise ValueError(f"batch normalization needs at least {config.MIN_BN_BATCH} training "
                         f"samples, got {n}")

    if train_eval_size is not None:
        train_eval_size = check_positive_int("train_eval_size", train_eval_size)
    X_eval, y_eval = X[:train_eval_size], y[:train_eval_size]

    run = _TrainingRun(net, cfg, n)
    if resume and checkpoint is not None and Path(checkpoint).exists():
        run.restore(checkpoint)
        logger.info("resumed from %s at step %d", checkpoint, run.step)
    eval_steps = cfg.eval_steps()
    total = cfg.total_steps
    backend = net._backend

    def record():
        values = {name: math.nan for name in _CURVES}
        if eval_train:
            r = net._evaluate_checked(X_eval, y_eval, cfg.lam, False)
            values.update(train_loss=r["loss"], train_cost=r["cost"],
                          train_accuracy=r["accuracy"])
        if has_val:
            r = net._evaluate_checked(X_val, y_val, cfg.lam, False)
            values.update(val_loss=r["loss"], val_cost=r["cost"], val_accuracy=r["accuracy"])
        run.history._append_point(run.step, run.step * cfg.batch_size / run.n_epoch, values)
        return values

    # A fresh run starts with the point at step 0. A run interrupted while it evaluated has its
    # step at an evaluation point that the history lacks, so it records that point now.
    recorded = run.history.step
    if run.step in eval_steps and (recorded.size == 0 or recorded[-1] != run.step):
        record()
    # At most ~200 calls into the backend per run keeps the progress bar moving.
    max_chunk = max(1, total // 200)
    first_step = run.step
    start_time = time.perf_counter()
    bar = tqdm(total=total, initial=run.step, disable=not progress, unit="step",
               desc=f"train {net.backend}", leave=False)
    try:
        while run.step < total:
            run.ensure_epoch()
            next_eval = int(eval_steps[np.searchsorted(eval_steps, run.step, side="right")])
            stop = min(next_eval, run.step + max_chunk)
            if checkpoint_every:
                stop = min(stop, (run.step // checkpoint_every + 1) * checkpoint_every)
            batches_left = -(-(run.n_epoch - run.pos) // cfg.batch_size)
            m = min(stop - run.step, batches_left)
            end = min(run.pos + m * cfg.batch_size, run.n_epoch)
            idx = run.order[run.pos:end]

            saved_theta = net.theta.copy()
            saved_running = net.running.copy()
            etas = run.history.lr[run.step:run.step + m]
            try:
                losses = backend.train_steps(net, X, y, idx, cfg.batch_size, etas, cfg.lam)
            except KeyboardInterrupt:
                # A stretch cut short leaves the parameters mid-update: go back to its start.
                net.theta[...] = saved_theta
                net.running[...] = saved_running
                raise
            bad = ~np.isfinite(losses)
            if bad.any() or not np.isfinite(net.theta).all() \
                    or not np.isfinite(net.running).all():
                first = int(np.argmax(bad)) if bad.any() else m - 1
                net.theta[...] = saved_theta
                net.running[...] = saved_running
                step = run.step + first
                raise TrainingDivergedError(
                    step, float(etas[first]),
                    f"training diverged at step {step} (learning rate {etas[first]:.4g}): the "
                    f"loss or a parameter became non-finite; the network keeps its parameters "
                    f"from step {run.step}. Lower eta_max or raise lam")
            run.history.batch_loss[run.step:run.step + m] = losses
            run.pos = end
            run.step += m
            bar.update(m)

            if run.step in eval_steps:
                values = record()
                if has_val:
                    bar.set_postfix(val_acc=f"{values['val_accuracy']:.4f}", refresh=False)
            if checkpoint is not None and checkpoint_every and run.step % checkpoint_every == 0:
                run.save(checkpoint)
    except KeyboardInterrupt:
        if checkpoint is not None:
            run.save(checkpoint)
            logger.info("interrupted at step %d; state saved to %s", run.step, checkpoint)
        raise
    finally:
        bar.close()
    if checkpoint is not None:
        run.save(checkpoint)
    logger.info("trained %d steps in %.2f s on backend %s", total - first_step,
                time.perf_counter() - start_time, net.backend)
    return run.history
