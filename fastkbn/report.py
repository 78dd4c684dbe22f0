"""The report of ``fastkbn reproduce``: tables, figures, checks and the NumPy time estimate.

:func:`write_report` takes what :func:`fastkbn.study.run_study` returns and writes
``report.md``, ``results.json`` and PNG figures. Each experiment's ``report`` field picks its
writer in :data:`REPORT_WRITERS`. A writer returns Markdown lines, a summary of every number it
shows (which goes into ``results.json``) and checks of our figures against the public spread.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from .experiments import format_lam
from .fileio import write_json_atomic, write_text_atomic
from .plots import new_figure, plot_curves, save_figure

logger = logging.getLogger(__name__)

GRADCHECK_MAX_ERROR = 1e-7
"""Largest absolute or relative gradient error the study accepts in float64."""

QUICK_SKIP_REASON = ("a quick run trains on a few thousand images with a short schedule, so "
                     "its accuracies are not compared with the published ones")
"""Why a quick run skips the accuracy checks; the terminal summary and the report show it."""

NUMPY_TIMING_STEPS = 50
"""Training steps timed per network shape for the NumPy reference estimate."""

NUMPY_TIMING_ROWS = 1000
"""Rows of random data used to time the NumPy reference's steps and evaluations."""


def _percent(fraction):
    return None if fraction is None else 100.0 * fraction


def _fmt(value, digits=2):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _check(what, value, low, high, *, quick_comparable=False):
    """A check of ``value`` against [low, high].

    ``quick_comparable`` marks checks that a quick run passes as the full study does, such as
    the gradient check; :func:`write_report` skips the others in a quick run.
    """
    passed = value is not None and low <= value <= high
    return {"what": what, "value": value, "low": low, "high": high, "passed": passed,
            "compared": True, "quick_comparable": quick_comparable}


def _spread_cells(reference, label, value, quick, published=None):
    """Published value, spread and whether ``value`` is inside it, as table cells.

    ``published`` defaults to the reference's figure for ``label``. A quick run shows "n/a"
    in place of inside or not, because its accuracies are not compared.
    """
    if published is None and reference:
        published = reference.published_figure(label)
    spread = reference.spread.get(label) if reference else None
    if spread is None:
        return [_fmt(published), "–", "–"]
    inside = value is not None and spread[0] <= value <= spread[1]
    if quick:
        verdict = "n/a"
    else:
        verdict = "yes" if inside else "**no**"
    return [_fmt(published), f"{spread[0]:g}–{spread[1]:g}", verdict]


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _runs(result, stage=None):
    return [run for s in result["stages"] if stage in (None, s["name"]) for run in s["runs"]]


def _slug(text):
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


# ----------------------------------------------------------------------------------------------
# Writers, one per kind of experiment.

def _write_gradcheck(result, experiment, figures, quick):
    lines, summary, checks = [], {}, []
    for run in _runs(result):
        rows = [[name, f"{e['max_abs']:.2e}", f"{e['max_rel']:.2e}"]
                for name, e in run["errors"].items()]
        lines += [f"Network {run['sizes']}, {run['label']}, backend {run['backend']}:", ""]
        lines += _table(["parameter", "max absolute error", "max relative error"], rows) + [""]
        summary[run["label"]] = {"errors": run["errors"], "max_abs": run["max_abs"],
                                 "max_rel": run["max_rel"]}
        lines += [f"Largest relative error {run['max_rel']:.2e}, largest absolute error "
                  f"{run['max_abs']:.2e}; the study accepts at most {GRADCHECK_MAX_ERROR:g} "
                  "for each.", ""]
        for kind in ("relative", "absolute"):
            checks.append(_check(f"{result['name']}: largest {kind} error ({run['label']})",
                                 run[f"max_{kind[:3]}"], 0.0, GRADCHECK_MAX_ERROR,
                                 quick_comparable=True))
    return lines, summary, checks


def _accuracy_rows(runs, reference, quick):
    rows, summary, checks = [], {}, []
    for run in runs:
        test = _percent(run["test_accuracy"])
        rows.append([run["label"], _fmt(_percent(run["val_accuracy"])), _fmt(test),
                     *_spread_cells(reference, run["label"], test, quick)])
        summary[run["label"]] = {"test_accuracy_percent": test,
                                 "val_accuracy_percent": _percent(run["val_accuracy"]),
                                 "diverged": run["diverged"]}
        if reference and run["label"] in reference.spread:
            checks.append(_check(f"test accuracy, {run['label']}", test,
                                 *reference.spread[run["label"]]))
    return rows, summary, checks


def _accuracy_section(result, experiment, quick):
    """Start a section with the table of accuracies beside the reference figures.

    Returns the runs, the table's lines, the summary and the checks, each check named after the
    experiment.
    """
    runs = _runs(result)
    rows, summary, checks = _accuracy_rows(runs, experiment.reference, quick)
    for check in checks:
        check["what"] = f"{result['name']}: {check['what']}"
    lines = _table(["run", "validation %", "test %", "published test %", "public spread %",
                    "inside"], rows) + [""]
    return runs, lines, summary, checks


def _write_curves(result, experiment, figures, quick):
    runs, lines, summary, checks = _accuracy_section(result, experiment, quick)
    for run in runs:
        if not run["history"]:
            lines.append(f"{run['label']}: diverged ({run['diverged']}); no curves.")
            continue
        path = figures / f"{result['name']}_{_slug(run['label'])}.png"
        plot_curves(run["history"], path, f"{run['sizes']}, {run['label']}, "
                                          f"lambda={format_lam(run['spec']['lam'])}")
        lines += [f"![{run['label']}](figures/{path.name})", ""]
    return lines, summary, checks


def _retrain_lines(result, stage, reference, quick):
    """Table of the retrained lambda values, ranked by validation accuracy, and its check.

    A row shows a published figure only for the same lambda (to 2 significant digits), never
    for the same rank. The spread is that of each public run's best lambda, so it applies to
    rank 1 whatever its lambda.
    """
    ranked = sorted(stage["runs"], key=lambda r: (-r["val_accuracy"], r["spec"]["lam"]))
    rows = []
    for rank, run in enumerate(ranked, start=1):
        test = _percent(run["test_accuracy"])
        published = reference.published_figure(run["label"], stage["name"]) if reference \
            else None
        rows.append([rank, format_lam(run["spec"]["lam"]), _fmt(_percent(run["val_accuracy"])),
                     _fmt(test), *_spread_cells(reference, f"best {rank}", test, quick,
                                                published=published)])
    lines = [f"**{stage['title']}** (ranked by validation accuracy):", ""]
    lines += _table(["rank", "lambda", "validation %", "test %", "published test %",
                     "public spread %", "inside"], rows) + [""]
    published_runs = reference.stage_published.get(stage["name"], {}) if reference else {}
    if published_runs:
        listed = ", ".join(f"{label.removeprefix('lam=')}: {figure:.2f} %"
                           for label, figure in published_runs.items())
        lines += [f"Test accuracy of the published run's best {len(published_runs)} lambda "
                  f"values: {listed}. The published test % column shows them only where our "
                  "lambda is the same to 2 significant digits.", ""]

    summary = [{"lam": run["spec"]["lam"], "cycles": run["spec"]["cycles"],
                "val_accuracy_percent": _percent(run["val_accuracy"]),
                "test_accuracy_percent": _percent(run["test_accuracy"])} for run in ranked]
    checks = []
    if ranked and reference and "best 1" in reference.spread:
        checks.append(_check(f"{result['name']}: test accuracy of the best lambda "
                             f"({format_lam(ranked[0]['spec']['lam'])})",
                             _percent(ranked[0]["test_accuracy"]), *reference.spread["best 1"]))
    return lines, summary, checks


def _search_pass_lines(stage, reference):
    """Table of one search pass: validation and test accuracy per lambda."""
    rows = []
    for run in sorted(stage["runs"], key=lambda r: r["spec"]["lam"]):
        published = reference.published_figure(run["label"], stage["name"]) if reference \
            else None
        rows.append([format_lam(run["spec"]["lam"]), _fmt(_percent(run["val_accuracy"])),
                     _fmt(_percent(run["test_accuracy"])), _fmt(published)])
    lines = [f"**{stage['title']}**:", ""]
    lines += _table(["lambda", "validation %", "test %", "published validation %"], rows)
    summary = [{"lam": run["spec"]["lam"],
                "val_accuracy_percent": _percent(run["val_accuracy"]),
                "test_accuracy_percent": _percent(run["test_accuracy"])}
               for run in stage["runs"]]
    return lines + [""], summary


def _write_lambda_search(result, experiment, figures, quick):
    lines, summary, checks = [], {}, []
    fig, (ax,) = new_figure(width=7.0, height=4.0)
    for stage in result["stages"]:
        runs = stage["runs"]
        lams = [run["spec"]["lam"] for run in runs]
        if stage["name"] == "retrain":
            stage_lines, summary[stage["name"]], stage_checks = _retrain_lines(
                result, stage, experiment.reference, quick)
            checks += stage_checks
            ax.plot(lams, [_percent(r["test_accuracy"]) for r in runs], "k*", markersize=10,
                    label=f"{stage['title']}: test")
        else:
            stage_lines, summary[stage["name"]] = _search_pass_lines(stage, experiment.reference)
            ax.plot(lams, [_percent(r["val_accuracy"]) for r in runs], "o",
                    label=f"{stage['title']}: validation")
        lines += stage_lines

    ax.set_xscale("log")
    ax.set_xlabel("lambda")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    path = save_figure(fig, figures / f"{result['name']}.png")
    lines += [f"![lambda search](figures/{path.name})", ""]
    return lines, summary, checks


def _write_init_sensitivity(result, experiment, figures, quick):
    runs, lines, summary, checks = _accuracy_section(result, experiment, quick)
    sigmas = sorted({run["spec"]["init"] for run in runs}, reverse=True)
    fig, axes = new_figure(width=4.0 * len(sigmas), height=3.4, ncols=len(sigmas))
    for ax, sigma in zip(axes, sigmas):
        for run in runs:
            if run["spec"]["init"] != sigma or not run["history"]:
                continue
            style = "-" if run["spec"]["batch_norm"] else "--"
            ax.plot(run["history"]["step"], run["history"]["train_loss"], style,
                    label="with BN" if run["spec"]["batch_norm"] else "without BN")
        ax.set_title(f"sigma = {sigma:g}")
        ax.set_xlabel("update step")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        ax.legend()
    path = save_figure(fig, figures / f"{result['name']}.png")
    lines += [f"![training loss per sigma](figures/{path.name})", ""]
    return lines, summary, checks


REPORT_WRITERS = {"gradcheck": _write_gradcheck, "curves": _write_curves,
                  "lambda_search": _write_lambda_search,
                  "init_sensitivity": _write_init_sensitivity}
"""Report kind (``Experiment.report``) to its writer."""


# ----------------------------------------------------------------------------------------------
# NumPy reference estimate.

def _time_numpy_shape(hidden, batch_norm, dtype) -> dict:
    from .network import Network
    from .training import train

    rng = np.random.default_rng(0)
    X = rng.normal(size=(NUMPY_TIMING_ROWS, 3072)).astype(dtype)
    y = rng.integers(0, 10, size=NUMPY_TIMING_ROWS)
    net = Network([3072, *hidden, 10], batch_norm=batch_norm, dtype=dtype, backend="numpy",
                  seed=0)
    with threadpool_limits(limits=1):
        started = time.perf_counter()
        train(net, (X, y), n_s=NUMPY_TIMING_STEPS // 2, cycles=1, points_per_cycle=1,
              progress=False, eval_train=False)
        step_seconds = (time.perf_counter() - started) / NUMPY_TIMING_STEPS
        started = time.perf_counter()
        net.evaluate(X, y)
        row_seconds = (time.perf_counter() - started) / NUMPY_TIMING_ROWS
    return {"step_seconds": step_seconds, "row_seconds": row_seconds}


def estimate_numpy_seconds(results: dict, cache_dir: Path) -> dict:
    """Estimate how long the study's runs take on the NumPy reference backend, one process.

    Each network shape is timed once for ``NUMPY_TIMING_STEPS`` steps and one evaluation on
    random data with one BLAS thread (cached in ``cache_dir``), then scaled to every run's
    steps and evaluated rows. Gradient checks count with their measured time, because their
    numerical gradients run on the reference anyway.
    """
    timing_path = cache_dir / "numpy_timing.json"
    try:
        timings = json.loads(timing_path.read_text())
    except (OSError, ValueError):
        timings = {}
    total = 0.0
    for experiment in results["experiments"]:
        for run in _runs(experiment):
            if run["kind"] != "train":
                total += run["seconds"]
                continue
            spec = run["spec"]
            shape = json.dumps([spec["hidden"], spec["batch_norm"], spec["dtype"]])
            if shape not in timings:
                timings[shape] = _time_numpy_shape(spec["hidden"], spec["batch_norm"],
                                                   spec["dtype"])
            timing = timings[shape]
            rows = run["rows"]
            points = len(run["history"].get("step", []))
            evaluated = points * (rows["val"] + rows["train_eval"]) + rows["val"] + rows["test"]
            total += spec["cycles"] * 2 * spec["n_s"] * timing["step_seconds"]
            total += evaluated * timing["row_seconds"]
    write_json_atomic(timing_path, timings, indent=1)
    return {"sequential_seconds": total,
            "parallel_seconds": total / results["study"]["jobs"],
            "method": f"NumPy backend timed for {NUMPY_TIMING_STEPS} steps and one "
                      f"{NUMPY_TIMING_ROWS}-row evaluation per network shape, one BLAS thread, "
                      "scaled to every run's steps and evaluated rows"}


# ----------------------------------------------------------------------------------------------
# Files.

def _strict_json(value):
    """Replace NaN and infinities by None, which strict JSON readers accept."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    return value


def describe_seconds(seconds) -> str:
    """Format a duration in seconds, or in minutes from 2 minutes on; "–" for None."""
    if seconds is None:
        return "–"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


_ESTIMATED_NOTE = " (estimated from the cache files' modification times)"


def _plural(count, noun):
    return f"{count} {noun}{'' if count == 1 else 's'}"


def describe_numpy_estimate(estimate, jobs) -> str:
    """Describe the NumPy reference estimate, for one process and for ``jobs`` workers."""
    return (f"NumPy reference path, estimated: {describe_seconds(estimate['sequential_seconds'])} "
            f"in one process, about {describe_seconds(estimate['parallel_seconds'])} with {jobs} "
            f"worker{'s' if jobs > 1 else ''}")


def _wall_time_text(result) -> str:
    """One sentence with an experiment's wall time now and, for cached runs, when computed."""
    now, earlier = result["wall_seconds"], result["cached_wall_seconds"]
    if earlier is None:
        return f"Wall time: {describe_seconds(now)}."
    estimated = result["cached_wall_estimated"]
    cached = (f"The cached runs took {'about ' if estimated else ''}{describe_seconds(earlier)} "
              f"of wall time when they were computed{_ESTIMATED_NOTE if estimated else ''}.")
    if now is None:
        return cached
    return f"Wall time: {describe_seconds(now)} now. {cached}"


def _header(results, quick):
    study = results["study"]
    machine = study["machine"]
    dtypes = sorted({run["spec"].get("dtype", "float64") for e in results["experiments"]
                     for run in _runs(e)})
    run_cpu = sum(e["run_cpu_seconds"] for e in results["experiments"])
    lines = ["# fastkbn reproduce: k-layer networks with batch normalization on CIFAR-10", ""]
    if quick:
        lines += [f"**Quick study**: {QUICK_SKIP_REASON}. Only the gradient checks are "
                  "compared, and the accuracy checks are marked as skipped.", ""]
    wall = (f"- Wall time of this invocation, up to writing this report: "
            f"{describe_seconds(study['wall_seconds'])} ({study['runs_computed']} runs computed, "
            f"{study['runs_cached']} from the cache)")
    lines += [
        f"- Backend: {study['backend']}; dtype: {', '.join(dtypes)} (gradient checks float64)",
        f"- Machine: {machine['cpu_model']}, {machine['logical_cores']} CPUs, "
        f"{machine['platform']}, Python {machine['python']}, NumPy {machine['versions']['numpy']}",
        f"- Workers: {study['jobs']}, one BLAS thread each",
        f"- Data: {study['data']['path']}, {study['n_val']} validation rows",
        wall,
    ]
    if study["runs_cached"]:
        estimated = study["cached_wall_estimated"]
        lines.append(f"- Wall time of the cached runs when they were computed: "
                     f"{'about ' if estimated else ''}"
                     f"{describe_seconds(study['cached_wall_seconds'])}, from the first run "
                     "starting to the last finishing in each earlier invocation"
                     f"{_ESTIMATED_NOTE if estimated else ''}")
    estimate = study["numpy_estimate"]
    lines += [
        f"- CPU time of all runs: {describe_seconds(run_cpu)}",
        f"- {describe_numpy_estimate(estimate, study['jobs'])} ({estimate['method']})",
        "",
        "An experiment's wall time runs from its first run starting to its last finishing, so "
        "with several workers it includes time spent on runs of other experiments.",
        "",
    ]
    return lines


def _verdict(check) -> str:
    if not check["compared"]:
        return "skipped (quick run)"
    return "yes" if check["passed"] else "**no**"


def write_report(results: dict, experiments, out, *, quick: bool = False) -> dict:
    """Write ``report.md``, ``results.json`` and the figures into ``out``; returns their paths.

    ``experiments`` maps names to the :class:`fastkbn.experiments.Experiment` objects that
    produced ``results``. ``results`` gains each experiment's ``summary``, ``checks`` and
    ``figures``, and the study's ``checks``, before it is written.
    """
    out = Path(out)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    body, all_checks = [], []
    for result in results["experiments"]:
        experiment = experiments[result["name"]]
        before = set(figures.iterdir())
        lines, summary, checks = REPORT_WRITERS[experiment.report](result, experiment, figures,
                                                                   quick)
        result.update(summary=summary, checks=checks,
                      figures=sorted(f"figures/{p.name}" for p in set(figures.iterdir()) - before))
        all_checks += checks
        n_cached = sum(run["cached"] for run in _runs(result))
        body += [f"## {experiment.title}", "", result["description"], "",
                 f"{_plural(len(_runs(result)), 'run')}, {n_cached} from the cache: "
                 f"{describe_seconds(result['run_seconds'])} of run time and "
                 f"{describe_seconds(result['run_cpu_seconds'])} of CPU time in total. "
                 f"{_wall_time_text(result)}", ""]
        if experiment.reference:
            body += [f"Reference: {experiment.reference.source}."]
            if experiment.reference.note:
                body += [experiment.reference.note]
            body += [""]
        body += lines
    if quick:
        for check in all_checks:
            if not check["quick_comparable"]:
                check.update(compared=False, passed=None)
    results["study"]["checks"] = all_checks

    lines = _header(results, quick)
    compared = [check for check in all_checks if check["compared"]]
    passed = sum(check["passed"] for check in compared)
    title = f"## Checks against the public spread: {passed} of {len(compared)} inside"
    if len(compared) < len(all_checks):
        title += f", {len(all_checks) - len(compared)} skipped (quick run)"
    lines += [title, ""]
    lines += _table(["check", "ours", "expected", "inside"],
                    [[c["what"], "–" if c["value"] is None else f"{c['value']:.4g}",
                      f"{c['low']:g} – {c['high']:g}", _verdict(c)] for c in all_checks]) + [""]
    report_path = out / "report.md"
    results_path = out / "results.json"
    write_text_atomic(results_path, json.dumps(_strict_json(results), indent=1,
                                                allow_nan=False) + "\n")
    write_text_atomic(report_path, "\n".join(lines + body) + "\n")
    return {"report": report_path, "results": results_path, "figures": figures}
