"""The runner behind ``fastkbn reproduce``: data sharing, run cache, scheduling and the command.

:func:`run_study` resolves the stages of the experiments in :mod:`fastkbn.experiments`, runs
every run that is not cached through a ``concurrent.futures.Executor`` and returns the results;
:mod:`fastkbn.report` turns them into ``report.md``, ``results.json`` and figures.

Under the output folder, ``cache/data/<key>/`` contains the standardized CIFAR-10 arrays as
``.npy`` files that every worker maps read-only, so workers share one copy of the data, and
``cache/runs/<key>.json`` contains one finished run each. A run's key hashes its spec, the data
source and the backend, so an interrupted study resumes with the runs it has not finished. Each
run record also stores when it started and finished and which invocation computed it, so a
report made from the cache can give the wall time that the cached runs took.
"""
from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import shutil
import signal
import sys
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, wait, FIRST_COMPLETED
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from . import config
from .backends import get_backend
from .environment import library_versions, machine_info
from .experiments import EXPERIMENTS, N_VAL, QUICK_N_TRAIN, QUICK_N_VAL, _digest, quick, select
from .fileio import write_json_atomic

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Version of the cache layout; part of every key, so a new layout never reads an old file."""

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

_ARRAYS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")


class RunFailedError(RuntimeError):
    """A run of the study raised; the message names the experiment, stage and run."""


# ----------------------------------------------------------------------------------------------
# Shared data: the parent standardizes CIFAR-10 once, workers map the arrays read-only.

def _resolve_source(path):
    """Return the data location that ``load_cifar10(path)`` reads, or None if it must download."""
    from . import data

    if path is None:
        path = os.environ.get(data.DATA_ENV_VAR) or None
    if path is None:
        cached = data.default_cache_dir() / data.ARCHIVE_NAME
        return cached if cached.is_file() else None
    return Path(path).expanduser().resolve()


def data_fingerprint(source: Path) -> dict:
    """Identify a data source by path, sizes and modification times, without reading it."""
    if not source.exists():
        raise FileNotFoundError(f"CIFAR-10 data not found at {source}; pass the archive or the "
                                "extracted cifar-10-batches-py folder with --data")
    if source.is_file():
        stat = source.stat()
        return {"path": str(source), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    files = sorted(p for p in source.rglob("*") if p.is_file())
    return {"path": str(source),
            "files": [[str(p.relative_to(source)), p.stat().st_size, p.stat().st_mtime_ns]
                      for p in files]}


def open_prepared(directory) -> SimpleNamespace:
    """Map the arrays that :func:`prepare_data` wrote; float arrays are read-only memory maps."""
    directory = Path(directory)
    meta = json.loads((directory / "meta.json").read_text())
    arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
    return SimpleNamespace(**arrays, meta=meta)


def prepare_data(source, directory: Path, *, n_val: int, dtype: str, max_train_rows=None) -> Path:
    """Load and standardize CIFAR-10 and write its arrays as ``.npy`` files into ``directory``.

    Only the first ``max_train_rows`` training rows are kept (all when None). Nothing is done
    when ``directory`` already contains them. The files are written into a temporary folder that
    is then renamed, so a crash never leaves a partial data folder behind.
    """
    if (directory / "meta.json").is_file():
        return directory
    from .data import load_cifar10

    started = time.perf_counter()
    dataset = load_cifar10(source, n_val=n_val, dtype=dtype)
    tmp = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in _ARRAYS:
        array = getattr(dataset, name)
        if name in ("X_train", "y_train") and max_train_rows is not None:
            array = array[:max_train_rows]
        np.save(tmp / f"{name}.npy", np.ascontiguousarray(array))
    meta = {"source": str(dataset.source), "checksum_ok": dataset.checksum_ok, "n_val": n_val,
            "dtype": dtype, "label_names": list(dataset.label_names),
            "rows": {name: int(getattr(dataset, name).shape[0]) for name in _ARRAYS[::2]},
            "max_train_rows": max_train_rows}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    del dataset
    try:
        os.replace(tmp, directory)
    except OSError:
        # Another process prepared the same folder meanwhile; its copy is as good as ours.
        shutil.rmtree(tmp, ignore_errors=True)
        if not (directory / "meta.json").is_file():
            raise
    logger.info("prepared the shared data in %s in %.1f s", directory,
                time.perf_counter() - started)
    return directory


# ----------------------------------------------------------------------------------------------
# One run, in a worker process or inline.

def _train_result(spec, data, backend) -> dict:
    from .errors import TrainingDivergedError
    from .network import Network
    from .training import train

    X, y = data.X_train[:spec.n_train], data.y_train[:spec.n_train]
    sizes = [X.shape[1], *spec.hidden, len(data.meta["label_names"])]
    net = Network(sizes, batch_norm=spec.batch_norm, init=spec.init, dtype=spec.dtype,
                  backend=backend, seed=spec.seed)
    diverged = None
    history = None
    try:
        history = train(net, (X, y, data.X_val, data.y_val), batch_size=spec.batch_size,
                        eta_min=spec.eta_min, eta_max=spec.eta_max, n_s=spec.n_s,
                        cycles=spec.cycles, lam=spec.lam, seed=spec.seed,
                        points_per_cycle=spec.points_per_cycle, progress=False,
                        train_eval_size=spec.train_eval_size)
    except TrainingDivergedError as exc:
        # The network keeps its last finite parameters, which are tested as they are.
        diverged = str(exc)
    test = net.evaluate(data.X_test, data.y_test, spec.lam)
    val = net.evaluate(data.X_val, data.y_val, spec.lam) if len(data.y_val) else None
    curves = {}
    if history is not None:
        curves = {name: values for name, values in history.to_dict().items()
                  if name not in ("lr", "batch_loss")}
    return {"sizes": sizes, "test_accuracy": test["accuracy"], "test_loss": test["loss"],
            "val_accuracy": None if val is None else val["accuracy"],
            "val_loss": None if val is None else val["loss"], "history": curves,
            "diverged": diverged, "steps": spec.steps,
            "rows": {"train": int(X.shape[0]), "val": int(data.y_val.shape[0]),
                     "test": int(data.y_test.shape[0]),
                     "train_eval": int(min(spec.train_eval_size or X.shape[0], X.shape[0]))}}


def _gradcheck_result(spec, data, backend) -> dict:
    from .gradcheck import gradcheck
    from .network import Network

    X = np.ascontiguousarray(data.X_train[:spec.n, :spec.dims], dtype=np.float64)
    y = np.asarray(data.y_train[:spec.n])
    sizes = [spec.dims, *spec.hidden, len(data.meta["label_names"])]
    net = Network(sizes, batch_norm=spec.batch_norm, init=spec.init, dtype="float64",
                  backend=backend, seed=spec.seed)
    errors = gradcheck(net, X, y, lam=spec.lam, h=spec.h)
    return {"sizes": sizes, "errors": errors,
            "max_abs": max(e["max_abs"] for e in errors.values()),
            "max_rel": max(e["max_rel"] for e in errors.values())}


_RUNNERS = {"train": _train_result, "gradcheck": _gradcheck_result}


def execute_run(spec, data_dir: str, backend: str) -> dict:
    """Run one spec on the prepared data in ``data_dir`` and return its result record.

    BLAS is limited to one thread for every run, also without parallel workers, so a run's
    numbers do not depend on how many workers the study uses.
    """
    started = time.perf_counter()
    cpu_started = time.process_time()
    # threadpoolctl limits only the libraries loaded when the limit is set, and the compiled
    # backends load SciPy's own BLAS on import: import the backend first.
    get_backend(backend)
    with threadpool_limits(limits=1):
        data = open_prepared(data_dir)
        result = _RUNNERS[spec.kind](spec, data, backend)
    result["seconds"] = time.perf_counter() - started
    # CPU time tells a run's cost apart from waiting for a core on a busy machine.
    result["cpu_seconds"] = time.process_time() - cpu_started
    return result


def _ignore_sigint():
    # The parent handles Ctrl-C and stops the workers; a worker that saw it too would only
    # print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class InlineExecutor(Executor):
    """An executor that runs each call in the calling process when it is submitted."""

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)
        return future


def _stop_workers(executor):
    """Cancel queued calls and end the worker processes of a ProcessPoolExecutor."""
    terminate = getattr(executor, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    # NOTE: ProcessPoolExecutor has no public way to end busy workers before Python 3.14's
    # terminate_workers(), so this reads the private process table, before shutdown clears it.
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


# ----------------------------------------------------------------------------------------------
# The study.

@dataclass
class _Task:
    """One run of one stage, with what the scheduler needs to order it."""

    experiment: object
    stage: object
    index: int
    spec: object
    key: str
    upstream: bool
    order: int
    started_at: float = math.nan

    def priority(self):
        # Runs whose results other stages wait for go first, then the longest runs.
        return (not self.upstream, -self.spec.work(), self.order, self.index)

    def describe(self):
        return f"{self.experiment.name}/{self.stage.name} {self.spec.label}".strip()


def machine_description() -> dict:
    """Describe the machine and library versions for the report."""
    return {**machine_info(), "versions": library_versions()}


def _record_from_cache(path: Path, key: str):
    try:
        record = json.loads(path.read_text())
        finished = path.stat().st_mtime
    except (OSError, ValueError):
        return None
    if record.get("key") != key:
        return None
    if "computed" not in record:
        # Records written before the timestamps were stored: the file was written when the run
        # finished, so its modification time and the run's duration bound the run.
        record["computed"] = {"invocation": None, "started_at": finished - record["seconds"],
                              "finished_at": finished, "estimated": True}
    return record


def _label_estimated_invocations(records):
    """Give records without an invocation id one per group of runs with no gap between them.

    A gap in which none of these runs was in progress separates two invocations of the study,
    because the scheduler starts the next run as soon as one finishes.
    """
    undated = sorted((r for r in records if r["computed"]["invocation"] is None),
                     key=lambda r: r["computed"]["started_at"])
    group, busy_until = 0, -math.inf
    for record in undated:
        if record["computed"]["started_at"] > busy_until:
            group += 1
        busy_until = max(busy_until, record["computed"]["finished_at"])
        record["computed"]["invocation"] = f"estimated-{group}"


def _summed_wall_seconds(records):
    """Sum, over the invocations that computed ``records``, their first start to last finish.

    Returns None for no records.
    """
    spans = {}
    for record in records:
        computed = record["computed"]
        first, last = spans.get(computed["invocation"], (math.inf, -math.inf))
        spans[computed["invocation"]] = (min(first, computed["started_at"]),
                                         max(last, computed["finished_at"]))
    if not spans:
        return None
    return sum(last - first for first, last in spans.values())


def _timing_summary(records) -> dict:
    """Wall times of the runs computed now and of the cached runs when they were computed."""
    computed = [r for r in records if not r["cached"]]
    cached = [r for r in records if r["cached"]]
    return {"wall_seconds": _summed_wall_seconds(computed),
            "cached_wall_seconds": _summed_wall_seconds(cached),
            "cached_wall_estimated": any(r["computed"].get("estimated") for r in cached)}


def _expected_work(stage) -> int:
    if stage.runs:
        return sum(spec.work() for spec in stage.runs)
    return stage.expected_count() * stage.base.work()


class _Scheduler:
    """Resolve stages as their dependencies finish and keep ``jobs`` runs in flight.

    ``run_key(spec)`` names a run's cache file and ``data_dir(spec)`` prepares and returns the
    shared data folder it reads. Finished runs are written to ``runs_dir`` as they arrive.
    """

    def __init__(self, experiments, *, executor, jobs, force, backend, runs_dir, run_key,
                 data_dir, bar, invocation):
        self.executor = executor
        self.jobs = jobs
        self.force = force
        self.backend = backend
        self.runs_dir = runs_dir
        self.run_key = run_key
        self.data_dir = data_dir
        self.bar = bar
        self.invocation = invocation
        self.waiting = [(order, experiment, stage) for order, experiment in
                        enumerate(experiments) for stage in experiment.stages]
        # finished[experiment][stage][index] = (spec, record); resolved[(experiment, stage)]
        # lists the specs of a stage once its dependencies have finished.
        self.finished = {experiment.name: {} for experiment in experiments}
        self.resolved = {}
        self.ready = []
        self.inflight = {}
        self.n_computed = 0

    def run(self):
        """Run every stage to the end; on any exception, cancel what is still queued."""
        try:
            while self.waiting or self.ready or self.inflight:
                self._resolve_stages()
                self._submit_ready()
                if self.inflight:
                    self._collect()
                elif self.waiting and not self.ready:
                    names = [f"{e.name}/{s.name}" for _, e, s in self.waiting]
                    raise AssertionError(f"stages {names} wait for stages that never run")
        except BaseException:
            for future in self.inflight:
                future.cancel()
            raise

    def _stage_done(self, experiment, name):
        specs = self.resolved.get((experiment.name, name))
        return specs is not None and len(self.finished[experiment.name][name]) == len(specs)

    def _resolve_stages(self):
        # Cached runs of a newly resolved stage finish right here.
        for entry in list(self.waiting):
            order, experiment, stage = entry
            if not all(self._stage_done(experiment, name) for name in stage.depends_on):
                continue
            self.waiting.remove(entry)
            done = self.finished[experiment.name]
            specs = stage.resolve({name: [done[name][i] for i in sorted(done[name])]
                                   for name in stage.depends_on})
            self.resolved[(experiment.name, stage.name)] = specs
            done[stage.name] = {}
            self.bar.total += sum(spec.work() for spec in specs) - _expected_work(stage)
            upstream = any(stage.name in other.depends_on for other in experiment.stages)
            for index, spec in enumerate(specs):
                key = self.run_key(spec)
                record = None
                if not self.force:
                    record = _record_from_cache(self.runs_dir / f"{key}.json", key)
                if record is None:
                    self.ready.append(_Task(experiment, stage, index, spec, key, upstream, order))
                    continue
                record["cached"] = True
                self.bar.total -= spec.work()
                done[stage.name][index] = (spec, record)
            self.bar.refresh()

    def _submit_ready(self):
        self.ready.sort(key=_Task.priority)
        while self.ready and len(self.inflight) < self.jobs:
            task = self.ready.pop(0)
            directory = self.data_dir(task.spec)
            task.started_at = time.time()
            self._show([*self.inflight.values(), task])
            future = self.executor.submit(execute_run, task.spec, directory, self.backend)
            self.inflight[future] = task

    def _collect(self):
        done, _ = wait(list(self.inflight), return_when=FIRST_COMPLETED)
        for future in sorted(done, key=lambda f: self.inflight[f].priority()):
            task = self.inflight.pop(future)
            try:
                result = future.result()
            except Exception as exc:
                raise RunFailedError(f"run {task.spec.label or task.key} of "
                                     f"{task.experiment.name}/{task.stage.name} failed: "
                                     f"{type(exc).__name__}: {exc}") from exc
            record = {"key": task.key, "kind": task.spec.kind, "label": task.spec.label,
                      "spec": task.spec.to_dict(), "backend": self.backend, **result,
                      "computed": {"invocation": self.invocation,
                                   "started_at": task.started_at, "finished_at": time.time()}}
            write_json_atomic(self.runs_dir / f"{task.key}.json", record, indent=1)
            record["cached"] = False
            self.n_computed += 1
            self.finished[task.experiment.name][task.stage.name][task.index] = \
                (task.spec, record)
            self.bar.update(task.spec.work())
            logger.info("finished %s in %.1f s", task.describe(), result["seconds"])
        self._show(self.inflight.values())

    def _show(self, tasks):
        text = "; ".join(task.describe() for task in tasks)
        self.bar.set_description_str(text[:80] or "idle", refresh=True)

    def experiment_results(self, experiment) -> dict:
        """Collect every stage's run records of ``experiment`` and its timings, in stage order.

        ``wall_seconds`` covers the runs computed now and ``cached_wall_seconds`` the cached
        runs when they were computed, each from an invocation's first run starting to its
        last run finishing (None when there are no such runs).
        """
        stages = []
        for stage in experiment.stages:
            runs = self.finished[experiment.name][stage.name]
            stages.append({"name": stage.name, "title": stage.title,
                           "runs": [runs[i][1] for i in sorted(runs)]})
        records = [r for s in stages for r in s["runs"]]
        return {"name": experiment.name, "title": experiment.title,
                "description": experiment.description, "report": experiment.report,
                "stages": stages, **_timing_summary(records),
                "run_seconds": sum(r["seconds"] for s in stages for r in s["runs"]),
                "run_cpu_seconds": sum(r.get("cpu_seconds", math.nan) for s in stages
                                       for r in s["runs"])}


def run_study(experiments=None, data=None, out="runs/reproduce", *, jobs=1, backend=None,
              force=False, executor=None, n_val=N_VAL, max_train_rows=None,
              progress=True) -> dict:
    """Run the experiments, reusing cached runs, and return every result.

    Parameters
    ----------
    experiments : dict or list of Experiment, optional
        Default: all of :data:`fastkbn.experiments.EXPERIMENTS`.
    data : path, optional
        CIFAR-10 archive or folder, as for :func:`fastkbn.load_cifar10`.
    out : path
        Output folder; the cache lives in ``out/cache``.
    jobs : int
        Runs in flight at once. With ``executor`` None, 1 runs them in this process and more
        start that many worker processes.
    backend : str or None
        Backend name, as for :class:`fastkbn.Network`; resolved once here.
    force : bool
        Rerun every run and overwrite its cached result.
    executor : concurrent.futures.Executor, optional
        Where to run, for example a Dask client's executor. Its workers must see ``out``
        under the same path. It stays open afterwards.
    n_val : int
        Validation rows taken from the end of the training batches.
    max_train_rows : int or None
        Keep only the first training rows in the shared data (the quick study needs few).
    progress : bool
        Show a progress bar with the runs in flight and an estimate of the time left.

    Returns
    -------
    dict
        ``study`` (settings, machine, timings) and ``experiments``: a list with, per
        experiment, its stages and each run's spec and result record.

    Raises
    ------
    RunFailedError
        A run raised; runs finished before it stay cached.
    KeyboardInterrupt
        After stopping the workers; finished runs stay cached.
    """
    if experiments is None:
        experiments = EXPERIMENTS
    if isinstance(experiments, dict):
        experiments = list(experiments.values())
    experiments = list(experiments)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    backend_name = get_backend(backend).name
    out = Path(out)
    cache = out / "cache"
    started = time.perf_counter()
    invocation = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"

    source = _resolve_source(data)
    if source is None:
        # No archive yet: let the loader download it, then key the cache by the file.
        from .data import load_cifar10
        load_cifar10(None, n_val=n_val)
        source = _resolve_source(None)
    fingerprint = data_fingerprint(source)

    def data_key(dtype):
        return _digest({"format": CACHE_FORMAT, "source": fingerprint, "n_val": n_val,
                        "dtype": dtype, "max_train_rows": max_train_rows})

    def run_key(spec):
        dtype = getattr(spec, "dtype", config.DEFAULT_DTYPE)
        return _digest({"format": CACHE_FORMAT, "spec": spec.key(), "data": data_key(dtype),
                        "backend": backend_name})

    prepared = {}

    def data_dir(spec):
        # Gradient checks read the default dtype's data and convert their slice to float64.
        dtype = getattr(spec, "dtype", config.DEFAULT_DTYPE)
        if dtype not in prepared:
            prepared[dtype] = prepare_data(source, cache / "data" / data_key(dtype), n_val=n_val,
                                           dtype=dtype, max_train_rows=max_train_rows)
        return str(prepared[dtype])

    own_executor = executor is None
    if own_executor and jobs == 1:
        executor = InlineExecutor()
    elif own_executor:
        # Spawned workers start without a copy of this process's memory.
        executor = ProcessPoolExecutor(max_workers=jobs,
                                       mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_ignore_sigint)
    total = sum(_expected_work(stage) for experiment in experiments
                for stage in experiment.stages)
    bar = tqdm(total=total, disable=not progress, unit="step", desc="study", leave=False)
    scheduler = _Scheduler(experiments, executor=executor, jobs=jobs, force=force,
                           backend=backend_name, runs_dir=cache / "runs", run_key=run_key,
                           data_dir=data_dir, bar=bar, invocation=invocation)
    try:
        scheduler.run()
    except BaseException:
        if own_executor and isinstance(executor, ProcessPoolExecutor):
            _stop_workers(executor)
        raise
    finally:
        bar.close()
    if own_executor:
        executor.shutdown(wait=True)

    records = [record for stage_runs in scheduler.finished.values()
               for runs in stage_runs.values() for _, record in runs.values()]
    _label_estimated_invocations(records)
    experiments_out = [scheduler.experiment_results(experiment) for experiment in experiments]
    timing = _timing_summary(records)
    return {"study": {"backend": backend_name, "jobs": jobs, "n_val": n_val,
                      "max_train_rows": max_train_rows, "data": fingerprint,
                      "machine": machine_description(), "invocation": invocation,
                      "runs_computed": scheduler.n_computed,
                      "runs_cached": sum(record["cached"] for record in records),
                      "wall_seconds": time.perf_counter() - started,
                      "cached_wall_seconds": timing["cached_wall_seconds"],
                      "cached_wall_estimated": timing["cached_wall_estimated"]},
            "experiments": experiments_out}


# ----------------------------------------------------------------------------------------------
# The command.

def _default_jobs():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def add_parser(sub):
    """Register the ``reproduce`` subcommand on the CLI's subparsers."""
    from .cli import positive_int

    p = sub.add_parser(
        "reproduce", help="rerun the k-layer batch-normalization study on CIFAR-10",
        description="Run the gradient check, the 3- and 9-layer networks with and without "
                    "batch normalization, the lambda search and the initialization study, and "
                    "write DIR/report.md, DIR/results.json and DIR/figures/. Finished runs are "
                    "cached in DIR/cache, so an interrupted study continues where it stopped.")
    p.add_argument("--data", default=None, metavar="PATH",
                   help="cifar-10-python.tar.gz or an extracted cifar-10-batches-py folder "
                        "(default: $FASTKBN_DATA, then a cached download)")
    p.add_argument("--out", default="runs/reproduce", metavar="DIR",
                   help="output folder (default: runs/reproduce)")
    p.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                   help="runs in parallel, each in its own worker process with one BLAS thread "
                        "(default: the number of CPUs this process may use)")
    p.add_argument("--only", default=None, metavar="NAMES",
                   help="comma-separated experiments to run, out of "
                        f"{', '.join(EXPERIMENTS)} (default: all)")
    p.add_argument("--quick", action="store_true",
                   help=f"run the study shrunk to {QUICK_N_TRAIN} training images, "
                        f"{QUICK_N_VAL} validation images and a short schedule, to check the "
                        "pipeline in under a minute")
    p.add_argument("--backend", default=None,
                   help="numpy, numba, cython or auto (default: $FASTKBN_BACKEND, then auto)")
    p.add_argument("--force", action="store_true",
                   help="rerun every run instead of reusing the cached results")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="hide the progress bar")
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args) -> int:
    """Run the study from parsed arguments, print a summary and return the exit status."""
    from .report import (QUICK_SKIP_REASON, describe_numpy_estimate, describe_seconds,
                         estimate_numpy_seconds, write_report)

    started = time.perf_counter()
    names = None
    if args.only is not None:
        names = [name.strip() for name in args.only.split(",") if name.strip()]
        if not names:
            raise ValueError(f"--only {args.only!r} names no experiment; valid names are "
                             f"{', '.join(EXPERIMENTS)}")
    experiments = select(names)
    n_val, max_train_rows = N_VAL, None
    if args.quick:
        experiments = {name: quick(experiment) for name, experiment in experiments.items()}
        n_val, max_train_rows = QUICK_N_VAL, QUICK_N_TRAIN
    jobs = args.jobs if args.jobs is not None else _default_jobs()
    out = Path(args.out)
    runs_dir = out / "cache" / "runs"
    print(f"fastkbn reproduce: {', '.join(experiments)}{' (quick)' if args.quick else ''} "
          f"with {jobs} worker{'s' if jobs > 1 else ''}, output in {out}")

    try:
        results = run_study(experiments, args.data, out, jobs=jobs, backend=args.backend,
                            force=args.force, n_val=n_val, max_train_rows=max_train_rows,
                            progress=args.progress)
        results["study"]["quick"] = bool(args.quick)
        results["study"]["numpy_estimate"] = estimate_numpy_seconds(results, out / "cache")
        results["study"]["wall_seconds"] = time.perf_counter() - started
        paths = write_report(results, experiments, out, quick=args.quick)
    except KeyboardInterrupt:
        print(f"\nfastkbn reproduce: interrupted; finished runs are cached in {runs_dir}. Run "
              "the same command again to continue.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RunFailedError as exc:
        print(f"fastkbn reproduce: {exc}. Finished runs are cached in {runs_dir}.",
              file=sys.stderr)
        return EXIT_ERROR

    study = results["study"]
    for check in study["checks"]:
        value = "n/a" if check["value"] is None else f"{check['value']:.4g}"
        if not check["compared"]:
            print(f"  skip {check['what']}: {value} (not compared: quick run)")
            continue
        print(f"  {'ok  ' if check['passed'] else 'OUT '} {check['what']}: {value} "
              f"(expected {check['low']:g} to {check['high']:g})")
    if any(not check["compared"] for check in study["checks"]):
        print(f"  Accuracy checks skipped because {QUICK_SKIP_REASON}.")
    cached = ""
    if study["runs_cached"]:
        about = "about " if study["cached_wall_estimated"] else ""
        cached = (f"; the cached runs took {about}"
                  f"{describe_seconds(study['cached_wall_seconds'])} when computed")
    print(f"backend {study['backend']}: {time.perf_counter() - started:.1f} s wall time, "
          f"{study['runs_computed']} runs computed, {study['runs_cached']} from the cache"
          f"{cached}")
    print(describe_numpy_estimate(study["numpy_estimate"], study["jobs"]))
    print(f"wrote {paths['report']}, {paths['results']} and {paths['figures']}/")
    return 0
