"""Tests of ``fastkbn reproduce``: the experiments as data, the runner, its cache and the CLI.

Most tests run the whole study on a tiny synthetic archive with the NumPy backend and a
schedule shrunk further than ``--quick`` (see ``tiny_quick``), so each takes a few seconds.
"""
import dataclasses
import json
import os
from pathlib import Path

import pytest

from cifar_fixtures import write_cifar_archive
from fastkbn import experiments, report, study
from fastkbn.cli import main
from fastkbn.experiments import (EXPERIMENTS, GradcheckSpec, LogRange, RunSpec, Stage,
                                 TopValues)

# The fixture archive is not the official one, which load_cifar10 warns about.
pytestmark = pytest.mark.filterwarnings("ignore:.*not the official CIFAR-10 archive")

# 2,000 training rows: 1,000 for training and the 1,000 validation rows of --quick.
ROWS_PER_BATCH = 400


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return write_cifar_archive(tmp_path_factory.mktemp("data") / "cifar-10-python.tar.gz",
                               n_per_batch=ROWS_PER_BATCH)


def shrink_further(experiment):
    """Apply ``quick`` with 20-step runs and a gradient check on hidden layers [10, 10]."""
    shrunk = experiments.quick(experiment, n_s=5, points_per_cycle=2)
    stages = []
    for stage in shrunk.stages:
        runs = tuple(dataclasses.replace(spec, hidden=(10, 10))
                     if isinstance(spec, GradcheckSpec) else spec for spec in stage.runs)
        stages.append(dataclasses.replace(stage, runs=runs) if runs else stage)
    return dataclasses.replace(shrunk, stages=tuple(stages))


@pytest.fixture
def tiny_quick(monkeypatch):
    """Make ``--quick`` run the study shrunk by ``shrink_further``, in a few seconds."""
    monkeypatch.setattr(study, "quick", shrink_further)


@pytest.fixture
def count_runs(monkeypatch):
    """Count the runs executed in this process (with --jobs 1 every run is)."""
    calls = []
    real = study.execute_run

    def counted(spec, data_dir, backend):
        calls.append(spec)
        return real(spec, data_dir, backend)

    monkeypatch.setattr(study, "execute_run", counted)
    return calls


def reproduce(archive, out, *extra):
    """Run ``fastkbn reproduce --quick`` with the NumPy backend, in this process by default."""
    jobs = [] if "--jobs" in extra else ["--jobs", "1"]
    return main(["reproduce", "--quick", "--data", str(archive), "--out", str(out),
                 "--backend", "numpy", "--no-progress", *jobs, *extra])


def total_runs(names=None):
    chosen = experiments.select(names)
    return sum(stage.expected_count() for e in chosen.values() for stage in e.stages)


def run_numbers(results_path):
    """Every run's numbers from results.json, without timings and cache flags."""
    results = json.loads(Path(results_path).read_text())
    out = {}
    for experiment in results["experiments"]:
        for stage in experiment["stages"]:
            for run in stage["runs"]:
                numbers = {k: v for k, v in run.items()
                           if k not in ("seconds", "cpu_seconds", "cached", "computed")}
                out[(experiment["name"], stage["name"], run["label"])] = numbers
    return out


# ----------------------------------------------------------------------------------------------
# Experiments as data.

def test_registry_names_and_order():
    assert list(EXPERIMENTS) == ["gradcheck", "three_layer", "nine_layer", "lambda_search",
                                 "init_sensitivity"]


def test_default_study_run_count():
    assert total_runs() == 1 + 2 + 2 + (6 + 10 + 3) + 6


def test_spec_key_ignores_label():
    assert RunSpec(label="a").key() == RunSpec(label="b").key()


def test_spec_key_changes_with_settings():
    assert RunSpec().key() != RunSpec(lam=0.01).key()
    assert RunSpec().key() != RunSpec(n_train=100).key()
    assert RunSpec().key() != GradcheckSpec().key()


def test_spec_key_is_stable():
    # The cache of earlier sessions stays valid only while this digest does not change.
    assert RunSpec().key() == RunSpec(hidden=[50, 50]).key()
    assert len(RunSpec().key()) == 20


def test_log_range_grid():
    values = LogRange(-6, -1, 6).values()
    assert values == (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def test_log_range_random_is_seeded():
    first = LogRange(-2.5, -1.5, 10, sampling="random", seed=3).values()
    again = LogRange(-2.5, -1.5, 10, sampling="random", seed=3).values()
    assert first == again
    assert all(10 ** -2.5 <= v <= 10 ** -1.5 for v in first)
    assert list(first) == sorted(first)


def test_log_range_rejects_bad_sampling():
    with pytest.raises(ValueError, match="sampling"):
        LogRange(-1, 0, 3, sampling="sobol")


def test_top_values_ranks_by_metric():
    runs = [(RunSpec(lam=lam), {"val_accuracy": acc})
            for lam, acc in [(0.1, 0.4), (0.01, 0.5), (0.001, 0.5), (0.0001, 0.3)]]
    chosen = TopValues(stages=("coarse",), k=3).select({"coarse": runs})
    # Ties go to the smaller lambda, whatever the order in which runs finished.
    assert chosen == (0.001, 0.01, 0.1)


def test_stage_sweep_labels_runs():
    stage = Stage("s", base=RunSpec(), values=(0.001, 0.01))
    runs = stage.resolve({})
    assert [r.lam for r in runs] == [0.001, 0.01]
    assert [r.label for r in runs] == ["lam=0.001", "lam=0.01"]


def test_stage_order_is_checked():
    later = Stage("b", base=RunSpec(), values=TopValues(stages=("a",), k=1))
    with pytest.raises(ValueError, match="must come before"):
        experiments.Experiment("x", "x", "x", stages=(later,), report="curves")


def test_quick_shrinks_every_training_run():
    shrunk = experiments.quick(EXPERIMENTS["lambda_search"], n_s=7)
    for stage in shrunk.stages:
        assert stage.base.n_s == 7
        assert stage.base.n_train == experiments.QUICK_N_TRAIN
    assert shrunk.stage("retrain").base.cycles == 3


def test_select_unknown_name_lists_valid():
    with pytest.raises(ValueError, match="three_layer"):
        experiments.select(["three_layers"])


# ----------------------------------------------------------------------------------------------
# The command, end to end.

def test_quick_writes_report_and_figures(archive, tmp_path, tiny_quick, capsys):
    out = tmp_path / "out"
    assert reproduce(archive, out) == 0

    report = (out / "report.md").read_text()
    for experiment in EXPERIMENTS.values():
        assert f"## {experiment.title}" in report
    assert "estimated" in report
    assert "Backend: numpy" in report

    # Strict JSON: NaN would make json.loads with parse_constant raise.
    results = json.loads((out / "results.json").read_text(),
                         parse_constant=lambda name: pytest.fail(f"results.json has {name}"))
    assert [e["name"] for e in results["experiments"]] == list(EXPERIMENTS)
    assert results["study"]["runs_computed"] == total_runs()
    assert results["study"]["numpy_estimate"]["sequential_seconds"] > 0
    for experiment in results["experiments"]:
        assert experiment["summary"]
        for figure in experiment["figures"]:
            assert (out / figure).stat().st_size > 0
    assert (out / "figures" / "init_sensitivity.png").is_file()
    assert (out / "figures" / "lambda_search.png").is_file()
    assert "wrote" in capsys.readouterr().out


def test_gradcheck_errors_are_small(archive, tmp_path):
    assert reproduce(archive, tmp_path, "--only", "gradcheck") == 0
    results = json.loads((tmp_path / "results.json").read_text())
    run = results["experiments"][0]["stages"][0]["runs"][0]
    assert set(run["errors"]) == {"W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2",
                                  "beta2", "W3", "b3"}
    assert run["max_abs"] <= 1e-7
    assert run["max_rel"] <= 1e-7


def test_rerun_reuses_cache(archive, tmp_path, tiny_quick, count_runs):
    only = ("--only", "three_layer,lambda_search")
    assert reproduce(archive, tmp_path, *only) == 0
    assert len(count_runs) == total_runs(["three_layer", "lambda_search"])
    run_files = sorted((tmp_path / "cache" / "runs").glob("*.json"))
    mtimes = [p.stat().st_mtime_ns for p in run_files]

    count_runs.clear()
    assert reproduce(archive, tmp_path, *only) == 0
    assert count_runs == []
    assert [p.stat().st_mtime_ns for p in run_files] == mtimes
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["study"]["runs_cached"] == len(run_files)


def test_force_reruns_everything(archive, tmp_path, tiny_quick, count_runs):
    assert reproduce(archive, tmp_path, "--only", "three_layer") == 0
    before = run_numbers(tmp_path / "results.json")
    count_runs.clear()
    assert reproduce(archive, tmp_path, "--only", "three_layer",
                     "--force") == 0
    assert len(count_runs) == 2
    assert run_numbers(tmp_path / "results.json") == before


def test_only_runs_named_experiments(archive, tmp_path, tiny_quick, count_runs):
    assert reproduce(archive, tmp_path, "--only", "nine_layer, three_layer") == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert [e["name"] for e in results["experiments"]] == ["three_layer", "nine_layer"]
    assert len(count_runs) == 4


def test_only_unknown_name_is_rejected(archive, tmp_path, capsys):
    assert reproduce(archive, tmp_path, "--only", "three_layer,ten_layer") == 1
    err = capsys.readouterr().err
    assert "'ten_layer'" in err
    for name in EXPERIMENTS:
        assert name in err
    assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_jobs_must_be_positive(archive, tmp_path, value, capsys):
    with pytest.raises(SystemExit) as exc:
        reproduce(archive, tmp_path, "--jobs", value)
    assert exc.value.code == 2
    assert "--jobs" in capsys.readouterr().err


def test_missing_data_names_path(tmp_path, capsys):
    assert reproduce(tmp_path / "nowhere.tar.gz", tmp_path / "out") == 1
    assert "nowhere.tar.gz" in capsys.readouterr().err


def test_results_equal_for_one_and_two_workers(archive, tmp_path, tiny_quick):
    only = "three_layer,lambda_search"
    assert reproduce(archive, tmp_path / "one", "--jobs", "1", "--only", only) == 0
    # The parent resolves the specs, so the spawned workers run the same shrunken runs.
    assert reproduce(archive, tmp_path / "two", "--jobs", "2", "--only", only) == 0
    one = run_numbers(tmp_path / "one" / "results.json")
    two = run_numbers(tmp_path / "two" / "results.json")
    assert one.keys() == two.keys()
    for key in one:
        assert one[key] == two[key], key


def test_interrupt_then_resume(archive, tmp_path, tiny_quick, monkeypatch, capsys):
    real = study.execute_run
    calls = []

    def interrupted_after_five(spec, data_dir, backend):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(spec)
        return real(spec, data_dir, backend)

    monkeypatch.setattr(study, "execute_run", interrupted_after_five)
    only = ("--only", "lambda_search")
    assert reproduce(archive, tmp_path, *only) == 130
    err = capsys.readouterr().err
    assert str(tmp_path / "cache" / "runs") in err
    assert "again" in err
    assert len(list((tmp_path / "cache" / "runs").glob("*.json"))) == 5
    assert not (tmp_path / "results.json").exists()
    assert not (tmp_path / "report.md").exists()

    calls.clear()
    monkeypatch.setattr(study, "execute_run",
                        lambda spec, d, b: calls.append(spec) or real(spec, d, b))
    assert reproduce(archive, tmp_path, *only) == 0
    assert len(calls) == total_runs(["lambda_search"]) - 5
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["study"]["runs_cached"] == 5


def test_resume_after_deleted_run_files(archive, tmp_path, tiny_quick, count_runs):
    assert reproduce(archive, tmp_path, "--only", "init_sensitivity") == 0
    for path in sorted((tmp_path / "cache" / "runs").glob("*.json"))[:2]:
        path.unlink()
    count_runs.clear()
    assert reproduce(archive, tmp_path, "--only", "init_sensitivity") == 0
    assert len(count_runs) == 2


def test_failed_run_is_reported(archive, tmp_path, tiny_quick, monkeypatch, capsys):
    def broken(spec, data_dir, backend):
        raise ValueError("kernel exploded")

    monkeypatch.setattr(study, "execute_run", broken)
    assert reproduce(archive, tmp_path, "--only", "three_layer") == 1
    err = capsys.readouterr().err
    assert "three_layer/train" in err
    assert "kernel exploded" in err


def test_shared_data_is_memory_mapped(archive, tmp_path, tiny_quick):
    assert reproduce(archive, tmp_path, "--only", "three_layer") == 0
    (folder,) = (tmp_path / "cache" / "data").iterdir()
    data = study.open_prepared(folder)
    assert data.X_train.shape == (1000, 3072)
    assert data.X_val.shape == (experiments.QUICK_N_VAL, 3072)
    assert not data.X_train.flags.writeable


def test_quick_skips_accuracy_checks(archive, tmp_path, tiny_quick, capsys):
    assert reproduce(archive, tmp_path, "--only", "gradcheck,three_layer") == 0
    out = capsys.readouterr().out
    assert "OUT" not in out
    assert "not compared: quick run" in out
    assert "Accuracy checks skipped because" in out

    checks = json.loads((tmp_path / "results.json").read_text())["study"]["checks"]
    gradient = [c for c in checks if c["what"].startswith("gradcheck:")]
    accuracy = [c for c in checks if not c["what"].startswith("gradcheck:")]
    assert len(gradient) == 2
    assert all(c["compared"] and c["passed"] for c in gradient)
    assert len(accuracy) == 2
    assert not any(c["compared"] for c in accuracy)
    assert all(c["passed"] is None for c in accuracy)

    text = (tmp_path / "report.md").read_text()
    assert "2 of 2 inside, 2 skipped (quick run)" in text
    assert text.count("skipped (quick run) |") == 2
    assert "**no**" not in text


def test_gradcheck_check_names_error_kind(archive, tmp_path):
    assert reproduce(archive, tmp_path, "--only", "gradcheck") == 0
    results = json.loads((tmp_path / "results.json").read_text())
    run = results["experiments"][0]["stages"][0]["runs"][0]
    by_name = {c["what"]: c["value"] for c in results["study"]["checks"]}
    assert by_name["gradcheck: largest relative error (3-layer, with BN)"] == run["max_rel"]
    assert by_name["gradcheck: largest absolute error (3-layer, with BN)"] == run["max_abs"]
    assert "Largest relative error" in (tmp_path / "report.md").read_text()


def test_summary_names_numpy_estimate(archive, tmp_path, tiny_quick, capsys):
    assert reproduce(archive, tmp_path, "--only", "three_layer") == 0
    out = capsys.readouterr().out
    assert "NumPy reference path, estimated: " in out
    assert "in one process, about " in out
    assert "with 1 worker\n" in out


def test_cached_rerun_keeps_wall_time(archive, tmp_path, tiny_quick):
    only = ("--only", "three_layer,lambda_search")
    assert reproduce(archive, tmp_path, *only) == 0
    first = json.loads((tmp_path / "results.json").read_text())

    assert reproduce(archive, tmp_path, *only) == 0
    again = json.loads((tmp_path / "results.json").read_text())
    for before, after in zip(first["experiments"], again["experiments"]):
        assert before["wall_seconds"] > 0
        assert before["cached_wall_seconds"] is None
        assert after["wall_seconds"] is None
        assert after["cached_wall_seconds"] == pytest.approx(before["wall_seconds"])
        assert after["cached_wall_estimated"] is False
    assert again["study"]["cached_wall_seconds"] > 0

    text = (tmp_path / "report.md").read_text()
    assert "Wall time of this invocation, up to writing this report: " in text
    assert "Wall time of the cached runs when they were computed: " in text
    assert "of wall time when they were computed." in text
    assert "Total wall time" not in text
    assert "(all runs cached)" not in text


def test_old_cache_records_get_estimated_times(archive, tmp_path, tiny_quick):
    assert reproduce(archive, tmp_path, "--only", "three_layer") == 0
    for path in (tmp_path / "cache" / "runs").glob("*.json"):
        record = json.loads(path.read_text())
        del record["computed"]
        path.write_text(json.dumps(record))

    assert reproduce(archive, tmp_path, "--only", "three_layer") == 0
    (result,) = json.loads((tmp_path / "results.json").read_text())["experiments"]
    assert result["cached_wall_estimated"] is True
    assert result["cached_wall_seconds"] > 0
    assert "estimated from the cache files' modification times" in \
        (tmp_path / "report.md").read_text()


def test_wall_seconds_sum_invocations():
    def record(invocation, started, finished):
        return {"computed": {"invocation": invocation, "started_at": started,
                             "finished_at": finished}}

    records = [record("a", 0.0, 5.0), record("a", 1.0, 7.0), record("b", 100.0, 103.0)]
    assert study._summed_wall_seconds(records) == 7.0 + 3.0
    assert study._summed_wall_seconds([]) is None


def test_estimated_invocations_split_at_gaps():
    records = [{"computed": {"invocation": None, "started_at": s, "finished_at": f}}
               for s, f in [(0.0, 5.0), (4.0, 9.0), (50.0, 60.0)]]
    study._label_estimated_invocations(records)
    labels = [r["computed"]["invocation"] for r in records]
    assert labels[0] == labels[1]
    assert labels[2] != labels[0]


def retrain_run(lam, val, test):
    return {"label": f"lam={experiments.format_lam(lam)}", "val_accuracy": val,
            "test_accuracy": test, "spec": {"lam": lam, "cycles": 3}}


def test_retrain_table_matches_published_by_lambda():
    search = EXPERIMENTS["lambda_search"]
    stage = {"name": "retrain", "title": "Best 3",
             "runs": [retrain_run(0.0041, 0.54, 0.5376), retrain_run(0.00876, 0.537, 0.5355),
                      retrain_run(0.0032, 0.533, 0.5365)]}
    lines, _, checks = report._retrain_lines({"name": search.name}, stage, search.reference,
                                             False)
    rows = [line for line in lines if line.startswith("| ")][1:]
    assert rows[0].split(" | ")[4] == "54.06"
    assert rows[1].split(" | ")[4] == "–"
    assert rows[2].split(" | ")[4] == "–"
    listed = [line for line in lines if line.startswith("Test accuracy of the published")]
    assert len(listed) == 1
    for text in ("0.0041: 54.06 %", "0.0053: 53.88 %", "0.0068: 53.30 %"):
        assert text in listed[0]
    assert checks[0]["passed"]


def test_coarse_pass_does_not_use_retrain_figures():
    search = EXPERIMENTS["lambda_search"]
    stage = {"name": "coarse", "title": "Coarse pass",
             "runs": [retrain_run(0.01, 0.528, 0.533), retrain_run(0.0041, 0.52, 0.53)]}
    lines, _ = report._search_pass_lines(stage, search.reference)
    rows = [line for line in lines if line.startswith("| ")][1:]
    assert rows[0].split(" | ")[-1] == "– |"
    assert rows[1].split(" | ")[-1] == "53.30 |"


@pytest.mark.realdata
@pytest.mark.skipif(not os.environ.get("FASTKBN_DATA"), reason="FASTKBN_DATA is not set")
def test_quick_on_real_data(tmp_path):
    data = os.environ["FASTKBN_DATA"]
    assert main(["reproduce", "--quick", "--data", data, "--out", str(tmp_path),
                 "--no-progress"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    three_layer = results["experiments"][1]["summary"]
    # A few thousand images and 320 steps already lift both networks well above chance.
    assert three_layer["with BN"]["test_accuracy_percent"] > 25
    assert three_layer["without BN"]["test_accuracy_percent"] > 25
