"""The command-line interface on tiny synthetic CIFAR-10 archives."""
import json
import subprocess
import sys

import pytest

from fastkbn import Network
from fastkbn.cli import EXIT_DIVERGED, EXIT_GRADCHECK_FAILED, main
from cifar_fixtures import write_cifar_archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return write_cifar_archive(tmp_path_factory.mktemp("cifar") / "cifar-10-python.tar.gz")


def run_train(archive, out, *extra):
    return main(["train", "--data", str(archive), "--hidden", "8", "--n-s", "4", "--cycles", "1",
                 "--batch-size", "10", "--n-val", "20", "--no-progress", "--out", str(out),
                 "--backend", "numpy", *extra])


@pytest.mark.filterwarnings("ignore:.*official")
def test_train_writes_outputs(archive, tmp_path, capsys):
    assert run_train(archive, tmp_path / "run") == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    for key in ("test_accuracy", "val_accuracy", "train_accuracy"):
        assert 0.0 <= result[key] <= 1.0
    assert result["backend"] == "numpy"
    assert result["dtype"] == "float32"
    assert result["train_seconds"] > 0
    assert result["config"]["train"]["n_s"] == 4
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    net = Network.load(tmp_path / "run" / "model.npz", backend="numpy")
    assert net.sizes == (3072, 8, 10)
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:.*official")
def test_train_divergence_exits_nonzero_and_saves_nothing(archive, tmp_path, capsys):
    status = run_train(archive, tmp_path / "run", "--eta-min", "1e6", "--eta-max", "1e7",
                       "--no-bn")
    assert status == EXIT_DIVERGED
    assert "diverged at step" in capsys.readouterr().err
    assert not (tmp_path / "run" / "model.npz").exists()
    assert not (tmp_path / "run" / "result.json").exists()


@pytest.mark.filterwarnings("ignore:.*official")
def test_train_resume_of_finished_run_is_identical(archive, tmp_path):
    assert run_train(archive, tmp_path / "run", "--checkpoint-every", "3") == 0
    first = json.loads((tmp_path / "run" / "result.json").read_text())
    assert main(["train", "--resume", str(tmp_path / "run"), "--no-progress"]) == 0
    second = json.loads((tmp_path / "run" / "result.json").read_text())
    assert second["history"] == first["history"]
    assert second["test_accuracy"] == first["test_accuracy"]


def test_train_resume_without_run_fails(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) != 0
    assert "config.json not found" in capsys.readouterr().err
    (tmp_path / "config.json").write_text("{}")
    assert main(["train", "--resume", str(tmp_path)]) != 0
    assert "start it again without --resume" in capsys.readouterr().err


def test_data_command_without_data(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FASTKBN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main(["data"]) == 1
    assert "does not exist. Pass the CIFAR-10 archive" in capsys.readouterr().err


def test_version_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("fastkbn ")


@pytest.mark.filterwarnings("ignore:.*official")
def test_output_files_readable_by_group(archive, tmp_path):
    import os
    old = os.umask(0o022)
    try:
        assert run_train(archive, tmp_path / "run") == 0
    finally:
        os.umask(old)
    for name in ("result.json", "model.npz", "config.json", "checkpoint.npz"):
        assert (tmp_path / "run" / name).stat().st_mode & 0o777 == 0o644, name


@pytest.mark.filterwarnings("ignore:.*official")
def test_bad_option_values_fail_cleanly(archive, tmp_path, capsys):
    assert run_train(archive, tmp_path / "run", "--lam", "-1") == 1
    assert "--lam must be >= 0.0, got -1.0" in capsys.readouterr().err
    assert run_train(archive, tmp_path / "run", "--eta-min", "1", "--eta-max", "0.1") == 1
    assert "--eta-min (1.0) is larger than --eta-max (0.1)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    # Settings are checked before the data is read: the missing archive is never reached.
    assert run_train(tmp_path / "missing.tar.gz", tmp_path / "run", "--lam", "-1") == 1
    assert "--lam" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_train(archive, tmp_path / "run", "--n-s", "0")
    assert "argument --n-s: invalid value 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--hidden", "50,x"])
    assert "invalid hidden sizes '50,x'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--init", "gauss"])
    assert "invalid init 'gauss'" in capsys.readouterr().err


def test_gradcheck_command(tmp_path, capsys):
    report = tmp_path / "g.json"
    assert main(["gradcheck", "--hidden", "50,50", "--backend", "numpy", "--json",
                 str(report)]) == 0
    out = capsys.readouterr().out
    assert "gamma2" in out
    assert "passed" in out
    payload = json.loads(report.read_text())
    assert payload["passed"] is True
    assert set(payload["errors"]) >= {"W1", "b3", "beta2"}


def test_gradcheck_command_fails_above_tolerance(capsys):
    assert main(["gradcheck", "--hidden", "10", "--backend", "numpy", "--tol", "1e-30"]) == \
        EXIT_GRADCHECK_FAILED
    assert "FAILED" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:.*official")
def test_data_command(archive, capsys):
    assert main(["data", "--data", str(archive)]) == 0
    out = capsys.readouterr().out
    assert str(archive) in out


def test_python_dash_m_help():
    proc = subprocess.run([sys.executable, "-m", "fastkbn", "train", "--help"],
                          capture_output=True, text=True, check=True)
    assert "--n-s" in proc.stdout
    assert "steps per half cycle" in proc.stdout


@pytest.mark.filterwarnings("ignore:.*official")
def test_train_ctrl_c_saves_and_exits_130(archive, tmp_path, monkeypatch, capsys):
    import fastkbn.training

    original = fastkbn.training.train

    def interrupted(*args, **kwargs):
        kwargs["checkpoint_every"] = 1
        original(*args, **{**kwargs, "cycles": 1})
        raise KeyboardInterrupt

    monkeypatch.setattr(fastkbn.training, "train", interrupted)
    assert run_train(archive, tmp_path / "run") == 130
    err = capsys.readouterr().err
    assert "state saved to" in err
    assert "--resume" in err
    assert (tmp_path / "run" / "checkpoint.npz").exists()
    assert not (tmp_path / "run" / "result.json").exists()
