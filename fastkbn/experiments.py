"""The classic k-layer batch-normalization study on CIFAR-10, written as plain data.

An :class:`Experiment` is a named list of :class:`Stage` objects, and a stage is a list of runs:
:class:`RunSpec` (train one network and test it) or :class:`GradcheckSpec` (compare analytic and
numerical gradients). A stage either lists its runs or sweeps one field of a base run over
values that are fixed (a tuple), drawn from a log-spaced range (:class:`LogRange`) or taken from
the best finished runs of earlier stages (:class:`TopValues`). The runner in
:mod:`fastkbn.study` resolves stages in dependency order, runs them and caches each run by
:meth:`RunSpec.key`; the report writer in :mod:`fastkbn.report` picks its tables and figures by
:attr:`Experiment.report`.

To add an experiment, build an ``Experiment`` and put it into :data:`EXPERIMENTS` (or pass it to
:func:`fastkbn.study.run_study`); the runner needs no change.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Mapping, Union

import numpy as np

from . import config

TRAIN_EVAL_SIZE = 5000
"""Training rows on which the training curves are evaluated: a forward pass over all 45,000
images at every curve point costs more than the steps between points."""

N_VAL = 5000
"""Validation rows, taken from the end of the training batches, in the full study."""

CLASSIC_HIDDEN_3 = (50, 50)
CLASSIC_HIDDEN_9 = (50, 30, 20, 20, 10, 10, 10, 10)

# Settings of the shrunken study that ``fastkbn reproduce --quick`` runs.
QUICK_N_TRAIN = 4000
QUICK_N_VAL = 1000
QUICK_N_S = 40
QUICK_POINTS_PER_CYCLE = 5


def _digest(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def format_lam(lam: float) -> str:
    """Format a regularization coefficient the way run labels and report tables show it."""
    return f"{lam:.2g}"


class _KeyedSpec:
    """Shared by the spec dataclasses: a ``hidden`` tuple, a ``label`` and a ``kind``."""

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

    def to_dict(self) -> dict:
        """Return every field but ``label`` as JSON-ready values."""
        out = dataclasses.asdict(self)
        out.pop("label")
        out["hidden"] = list(self.hidden)
        return out

    def key(self) -> str:
        """Hex digest of the JSON of :meth:`to_dict` and the run kind; stable across sessions."""
        return _digest({"kind": self.kind, **self.to_dict()})


@dataclass(frozen=True)
class RunSpec(_KeyedSpec):
    """One training run: a network, its training settings and the data rows it trains on.

    Every field except ``label`` goes into :meth:`key`, so two specs with equal keys give equal
    results on the same data and backend.

    Attributes
    ----------
    hidden : tuple of int
        Hidden-layer widths; the input width and the number of classes come from the data.
    batch_norm : bool
    init : str or float
        ``"he"``, ``"xavier"`` or the standard deviation of every layer's weights.
    lam, cycles, n_s, batch_size, eta_min, eta_max, seed, points_per_cycle
        As in :func:`fastkbn.train`; ``seed`` seeds both the weights and the shuffling.
    dtype : {"float32", "float64"}
    train_eval_size : int or None
        Training rows used for the training curves (None: all of them).
    n_train : int or None
        Train on the first ``n_train`` training rows only (None: all of them).
    label : str
        Name of the run in tables and plots, for example ``"with BN"``.
    """

    hidden: tuple = CLASSIC_HIDDEN_3
    batch_norm: bool = True
    init: Union[str, float] = "he"
    lam: float = config.LAM
    cycles: int = config.CYCLES
    n_s: int = config.N_S
    batch_size: int = config.BATCH_SIZE
    eta_min: float = config.ETA_MIN
    eta_max: float = config.ETA_MAX
    seed: int = 0
    dtype: str = config.DEFAULT_DTYPE
    points_per_cycle: int = config.POINTS_PER_CYCLE
    train_eval_size: Union[int, None] = TRAIN_EVAL_SIZE
    n_train: Union[int, None] = None
    label: str = field(default="", compare=False)

    kind = "train"

    @property
    def steps(self) -> int:
        """Number of SGD steps the run takes."""
        return 2 * self.n_s * self.cycles

    def work(self) -> int:
        """Relative cost of the run, in 3-layer training steps, for scheduling and progress."""
        widths = (3072, *self.hidden, 10)
        macs = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
        reference_macs = 3072 * 50 + 50 * 50 + 50 * 10
        return max(1, round(self.steps * macs / reference_macs))


@dataclass(frozen=True)
class GradcheckSpec(_KeyedSpec):
    """A gradient check in float64 on the first ``n`` training rows and ``dims`` features.

    Attributes
    ----------
    hidden, batch_norm, init, seed
        The network, as in :class:`RunSpec`.
    dims : int
        Input features used: the first ``dims`` columns of the standardized images.
    n : int
        Samples in the batch.
    lam : float
        L2 coefficient of the cost.
    h : float
        Finite-difference step. 1e-4 rather than the library's 1e-5: with the fourth-order
        stencil the truncation error stays far below round-off, which shrinks as 1/h (on
        standardized CIFAR-10 slices the largest error drops from about 1e-7 to 1e-8).
    label : str
    """

    hidden: tuple = CLASSIC_HIDDEN_3
    batch_norm: bool = True
    init: Union[str, float] = "he"
    dims: int = 20
    n: int = 10
    lam: float = config.LAM
    h: float = 1e-4
    seed: int = 0
    label: str = field(default="", compare=False)

    kind = "gradcheck"

    @property
    def steps(self) -> int:
        return 0

    def work(self) -> int:
        """Relative cost in 3-layer training steps: four cost evaluations per parameter."""
        widths = (self.dims, *self.hidden, 10)
        n_params = sum(a * b + 3 * b for a, b in zip(widths[:-1], widths[1:]))
        return max(1, n_params // 20)


Spec = Union[RunSpec, GradcheckSpec]


@dataclass(frozen=True)
class LogRange:
    """``count`` values whose base-10 logarithms lie in ``[low, high]``.

    ``sampling="grid"`` spaces the logarithms evenly, ends included; ``"random"`` draws them
    uniformly with ``seed`` (log-uniform sampling) and sorts them.
    """

    low: float
    high: float
    count: int
    sampling: str = "grid"
    seed: int = 0

    def __post_init__(self):
        if self.sampling not in ("grid", "random"):
            raise ValueError(f"invalid sampling {self.sampling!r}; expected 'grid' or 'random'")
        if not (isinstance(self.count, int) and self.count >= 1):
            raise ValueError(f"count must be a positive integer, got {self.count!r}")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low <= self.high):
            raise ValueError(f"invalid log10 range [{self.low}, {self.high}]; expected finite "
                             "bounds with low <= high")

    def values(self) -> tuple:
        """Compute the values as Python floats, rounded to 6 significant digits for stable keys."""
        if self.sampling == "grid":
            exponents = np.linspace(self.low, self.high, self.count)
        else:
            rng = np.random.default_rng(self.seed)
            exponents = np.sort(rng.uniform(self.low, self.high, size=self.count))
        return tuple(float(f"{10.0 ** e:.6g}") for e in exponents)


@dataclass(frozen=True)
class TopValues:
    """The values of ``field`` in the ``k`` best finished runs of earlier stages.

    Runs are ranked by ``metric`` of their results, highest first. Ties go to the smaller
    value, so the choice never depends on the order in which runs finished.
    """

    stages: tuple
    k: int
    field: str = "lam"
    metric: str = "val_accuracy"

    def select(self, finished: Mapping[str, list]) -> tuple:
        """Pick the values from ``finished``: stage name to a list of (spec, result) pairs."""
        candidates = {}
        for stage in self.stages:
            for spec, result in finished[stage]:
                value = getattr(spec, self.field)
                score = result.get(self.metric)
                if score is None or (isinstance(score, float) and math.isnan(score)):
                    continue
                candidates[value] = max(score, candidates.get(value, -math.inf))
        ranked = sorted(candidates.items(), key=lambda item: (-item[1], item[0]))
        return tuple(value for value, _ in ranked[:self.k])


@dataclass(frozen=True)
class Stage:
    """A group of runs: listed in ``runs``, or ``base`` with ``field`` set to each value.

    Attributes
    ----------
    name : str
        Unique within its experiment; :class:`TopValues` refers to stages by this name.
    title : str
        Heading of the stage in the report.
    runs : tuple of RunSpec or GradcheckSpec
    base : RunSpec or None
        Template of a sweep; its ``field`` is replaced by each of ``values``.
    field : str
    values : tuple, LogRange or TopValues
    """

    name: str
    title: str = ""
    runs: tuple = ()
    base: Union[RunSpec, None] = None
    field: str = "lam"
    values: Union[tuple, LogRange, TopValues] = ()

    def __post_init__(self):
        if self.runs and self.base is not None:
            raise ValueError(f"stage {self.name!r} has both runs and a sweep base; give one")
        if not self.runs and self.base is None:
            raise ValueError(f"stage {self.name!r} has no runs; give runs or a sweep base")
        if self.base is not None and self.field not in {f.name for f in
                                                         dataclasses.fields(self.base)}:
            raise ValueError(f"stage {self.name!r} sweeps unknown field {self.field!r}")

    @property
    def depends_on(self) -> tuple:
        """Names of the stages whose results this stage needs before it can run."""
        return self.values.stages if isinstance(self.values, TopValues) else ()

    def expected_count(self) -> int:
        """Number of runs, known before the stages it depends on have finished."""
        if self.runs:
            return len(self.runs)
        if isinstance(self.values, TopValues):
            return self.values.k
        if isinstance(self.values, LogRange):
            return self.values.count
        return len(self.values)

    def resolve(self, finished: Mapping[str, list]) -> tuple:
        """Build the stage's runs from the finished (spec, result) pairs of the stages it needs."""
        if self.runs:
            return tuple(self.runs)
        if isinstance(self.values, TopValues):
            values = self.values.select(finished)
        elif isinstance(self.values, LogRange):
            values = self.values.values()
        else:
            values = tuple(self.values)
        return tuple(self._sweep_run(value) for value in values)

    def _sweep_run(self, value) -> RunSpec:
        value_text = format_lam(value) if isinstance(value, float) else str(value)
        label = f"{self.field}={value_text}"
        if self.base.label:
            label = f"{self.base.label}, {label}"
        return dataclasses.replace(self.base, **{self.field: value}, label=label)


@dataclass(frozen=True)
class Reference:
    """Figures from other runs of the study, in percent, to print beside ours.

    ``published`` maps a run label to one published run's figure. ``stage_published`` maps a
    stage name to such a mapping for that stage alone, because sweep stages reuse labels such as
    ``lam=0.01`` for different figures. ``spread`` maps a label to the (low, high) range seen
    across many public runs, and the report checks ours against it.
    """

    source: str
    published: Mapping[str, float] = field(default_factory=dict)
    spread: Mapping[str, tuple] = field(default_factory=dict)
    note: str = ""
    stage_published: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def published_figure(self, label: str, stage: Union[str, None] = None):
        """Return the published figure of the run ``label`` in ``stage``, or None if none is."""
        if stage in self.stage_published:
            return self.stage_published[stage].get(label)
        return self.published.get(label)


@dataclass(frozen=True)
class Experiment:
    """A named part of the study: its stages, how to report it and what to compare against.

    ``report`` names a writer in :data:`fastkbn.report.REPORT_WRITERS`: ``"gradcheck"``,
    ``"curves"``, ``"lambda_search"`` or ``"init_sensitivity"``.
    """

    name: str
    title: str
    description: str
    stages: tuple
    report: str
    reference: Union[Reference, None] = None

    def __post_init__(self):
        names = [stage.name for stage in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment {self.name!r} has duplicate stage names: {names}")
        for position, stage in enumerate(self.stages):
            for needed in stage.depends_on:
                if needed not in names[:position]:
                    raise ValueError(f"stage {stage.name!r} of experiment {self.name!r} needs "
                                     f"stage {needed!r}, which must come before it")

    def stage(self, name: str) -> Stage:
        """Return the stage called ``name``."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"experiment {self.name!r} has no stage {name!r}")


# ----------------------------------------------------------------------------------------------
# The classic study.

_PUBLISHED_SOURCE = "one published run of this study"
_SPREAD_SOURCE = "many public runs of the same study"


def _with_and_without_bn(hidden) -> tuple:
    return (RunSpec(hidden=hidden, batch_norm=False, label="without BN"),
            RunSpec(hidden=hidden, batch_norm=True, label="with BN"))


def _init_runs() -> tuple:
    runs = []
    for sigma in (1e-1, 1e-3, 1e-4):
        for batch_norm in (False, True):
            runs.append(RunSpec(batch_norm=batch_norm, init=sigma,
                                label=f"sigma={sigma:g}, {'with' if batch_norm else 'without'}"
                                      " BN"))
    return tuple(runs)


GRADCHECK = Experiment(
    name="gradcheck",
    title="Gradient check",
    description="Analytic gradients of a 3-layer network [20, 50, 50, 10] with batch "
                "normalization against fourth-order centered differences, in float64 on the "
                "first 20 features of the first 10 training images, lambda = 0.005.",
    stages=(Stage("check", runs=(GradcheckSpec(label="3-layer, with BN"),)),),
    report="gradcheck",
    reference=Reference(source=_PUBLISHED_SOURCE,
                        note="Published gradient errors are of order 1e-10; the study accepts "
                             "at most 1e-7."),
)

THREE_LAYER = Experiment(
    name="three_layer",
    title="3-layer network [50, 50]",
    description="3-layer network with hidden widths [50, 50], with and without batch "
                "normalization; He initialization, lambda = 0.005, 2 cycles.",
    stages=(Stage("train", runs=_with_and_without_bn(CLASSIC_HIDDEN_3)),),
    report="curves",
    reference=Reference(source=f"{_PUBLISHED_SOURCE}; spread across {_SPREAD_SOURCE}",
                        published={"without BN": 52.70, "with BN": 52.82},
                        spread={"without BN": (52.0, 54.0), "with BN": (52.0, 54.0)}),
)

NINE_LAYER = Experiment(
    name="nine_layer",
    title="9-layer network [50, 30, 20, 20, 10, 10, 10, 10]",
    description="9-layer network with hidden widths [50, 30, 20, 20, 10, 10, 10, 10], with and "
                "without batch normalization; He initialization, lambda = 0.005, 2 cycles.",
    stages=(Stage("train", runs=_with_and_without_bn(CLASSIC_HIDDEN_9)),),
    report="curves",
    reference=Reference(source=f"{_PUBLISHED_SOURCE}; spread across {_SPREAD_SOURCE}",
                        published={"without BN": 49.43, "with BN": 51.21},
                        spread={"without BN": (40.0, 49.0), "with BN": (50.0, 52.5)}),
)


def lambda_search(coarse=LogRange(-6, -1, 6), fine=LogRange(-2.5, -1.5, 10), top_k=3,
                  retrain_cycles=3, base=RunSpec(batch_norm=True)) -> Experiment:
    """Build the lambda search: coarse pass, fine pass, then the best ``top_k`` retrained.

    ``coarse`` and ``fine`` are :class:`LogRange` objects, so their bounds, counts and
    sampling ("grid" or "random") are options. The retrain stage takes the ``top_k`` lambda
    values of both passes by validation accuracy and trains them for ``retrain_cycles`` cycles.
    """
    return Experiment(
        name="lambda_search",
        title="Search for lambda (3-layer network with BN)",
        description=f"Coarse pass over {coarse.count} lambda values with log10 in "
                    f"[{coarse.low:g}, {coarse.high:g}] ({coarse.sampling}), fine pass over "
                    f"{fine.count} values with log10 in [{fine.low:g}, {fine.high:g}] "
                    f"({fine.sampling}), {base.cycles} cycles each and ranked by validation "
                    f"accuracy; the best {top_k} of both passes are retrained for "
                    f"{retrain_cycles} cycles and tested.",
        stages=(
            Stage("coarse", title="Coarse pass", base=base, values=coarse),
            Stage("fine", title="Fine pass", base=base, values=fine),
            Stage("retrain", title=f"Best {top_k}, retrained for {retrain_cycles} cycles",
                  base=dataclasses.replace(base, cycles=retrain_cycles),
                  values=TopValues(stages=("coarse", "fine"), k=top_k)),
        ),
        report="lambda_search",
        reference=Reference(
            source=f"{_PUBLISHED_SOURCE}; spread across {_SPREAD_SOURCE}",
            # Labels are "lam=" and the value to 2 significant digits, so a run of ours
            # matches a published figure only when its lambda rounds to the same value.
            stage_published={
                "coarse": {f"lam={format_lam(lam)}": acc for lam, acc in
                           zip((1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
                               (52.02, 52.70, 51.68, 52.86, 53.30, 43.78))},
                "retrain": {f"lam={format_lam(lam)}": acc for lam, acc in
                            zip((0.0041, 0.0053, 0.0068), (54.06, 53.88, 53.30))}},
            # The spread is that of the test accuracy of each public run's best lambda.
            spread={"best 1": (53.0, 54.3)},
            note="The published coarse figures are validation accuracies, and the published "
                 "retrained figures are test accuracies after 3 cycles."),
    )


INIT_SENSITIVITY = Experiment(
    name="init_sensitivity",
    title="Sensitivity to initialization (3-layer network)",
    description="Every layer's weights drawn normal with sigma = 1e-1, 1e-3 and 1e-4, with "
                "and without batch normalization; lambda = 0.005, 2 cycles.",
    stages=(Stage("train", runs=_init_runs()),),
    report="init_sensitivity",
    reference=Reference(
        source=_SPREAD_SOURCE,
        spread={"sigma=0.0001, without BN": (9.0, 11.0),
                **{f"sigma={sigma:g}, with BN": (48.0, 55.0) for sigma in (1e-1, 1e-3, 1e-4)}},
        note="Without batch normalization sigma = 1e-4 stays at chance (10 %); with it all "
             "three sigmas reach 48-55 %."),
)

EXPERIMENTS = {experiment.name: experiment for experiment in
               (GRADCHECK, THREE_LAYER, NINE_LAYER, lambda_search(), INIT_SENSITIVITY)}
"""The classic study in report order: experiment name to :class:`Experiment`."""


# ----------------------------------------------------------------------------------------------
# The shrunken study.

def _shrink_spec(spec, n_train, n_s, points_per_cycle, train_eval_size):
    if isinstance(spec, GradcheckSpec):
        return spec
    return dataclasses.replace(spec, n_train=n_train, n_s=n_s, points_per_cycle=points_per_cycle,
                               train_eval_size=train_eval_size)


def quick(experiment: Experiment, *, n_train=QUICK_N_TRAIN, n_s=QUICK_N_S,
          points_per_cycle=QUICK_POINTS_PER_CYCLE, train_eval_size=QUICK_N_VAL) -> Experiment:
    """Shrink ``experiment``: the same stages on ``n_train`` images with a short schedule.

    Stages, sweeps and gradient checks keep their structure; every training run gets
    ``n_train``, ``n_s``, ``points_per_cycle`` and ``train_eval_size``. Results of the
    shrunken study are for checking the pipeline, not for comparison with the reference.
    """
    def shrink(spec):
        return _shrink_spec(spec, n_train, n_s, points_per_cycle, train_eval_size)

    stages = []
    for stage in experiment.stages:
        if stage.runs:
            stages.append(dataclasses.replace(stage, runs=tuple(shrink(s) for s in stage.runs)))
        else:
            stages.append(dataclasses.replace(stage, base=shrink(stage.base)))
    return dataclasses.replace(experiment, stages=tuple(stages))


def select(names=None, experiments=None) -> dict:
    """Return the experiments called ``names`` (all when None), in registry order.

    Raises ``ValueError`` that lists the valid names when a name is unknown.
    """
    experiments = EXPERIMENTS if experiments is None else experiments
    if names is None:
        return dict(experiments)
    unknown = [name for name in names if name not in experiments]
    if unknown:
        raise ValueError(f"unknown experiment {', '.join(map(repr, unknown))}; valid names are "
                         f"{', '.join(experiments)}")
    return {name: experiment for name, experiment in experiments.items() if name in names}


__all__ = ["EXPERIMENTS", "Experiment", "GradcheckSpec", "LogRange", "N_VAL", "QUICK_N_VAL",
           "Reference", "RunSpec", "Stage", "TopValues", "format_lam", "lambda_search", "quick",
           "select"]
