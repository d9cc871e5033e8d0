"""The CLI tier without subprocesses: the Typer app invoked in this process, with what lies
below it patched, checking what the commands handed on and what they printed (as fastapi-cli's
tests do). Bad input runs for real: `train` refuses it before importing TensorFlow or MLflow."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lstm_cli.commands import app, predict, runs, train, ui
from lstm_cli.runtime.errors import Interrupted, TrainingFailed, UserError
from tests.helpers import EXPERIMENT

runner = CliRunner()


@pytest.fixture
def received(monkeypatch):
    """What the commands hand on (`train.launch`, `ui.serve_ui`, `runs.list_runs`,
    `predict.prediction`) replaced by recorders of their arguments."""
    calls: dict[str, tuple] = {}
    monkeypatch.setattr(train, "launch", lambda argv: calls.setdefault("train", (argv,)))
    for module, name in ((ui, "serve_ui"), (runs, "list_runs"), (predict, "prediction")):
        recorder = lambda *a, _n=name, **k: calls.setdefault(_n, (a, k))  # noqa: E731
        monkeypatch.setattr(module, name, recorder)
    return calls


def test_train_hands_every_override_and_flag_to_the_experiment(received):
    args = ["-m", "hidden_size=50,100", "hydra/launcher=joblib", "--cfg", "job", "seed=3"]
    result = runner.invoke(app.app, ["train", *args])
    assert result.exit_code == 0, result.output
    assert received["train"] == (args,)


def test_reading_commands_get_the_store_and_experiment_train_uses(received, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"
    assert runner.invoke(app.app, ["runs", "--sort", "val_accuracy", "--limit", "3"]).exit_code == 0
    assert received["list_runs"] == (
        (default, EXPERIMENT, None, "val_accuracy", False, 3, False, "table"),
        {},
    )
    assert runner.invoke(app.app, ["ui", "--port", "5099"]).exit_code == 0
    assert received["serve_ui"] == ((default, EXPERIMENT), {"host": "127.0.0.1", "port": 5099})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5001")
    image = tmp_path / "digit.png"
    args = ["predict", "3f2a", "--image", str(image), "--experiment", "other"]
    assert runner.invoke(app.app, args).exit_code == 0
    uri = "http://127.0.0.1:5001"
    assert received["prediction"] == ((uri, "other", "3f2a", None, image), {})


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (UserError("hidden_size=0 is invalid"), 2, "error: hidden_size=0 is invalid"),
        (OSError(13, "Permission denied", "/x"), 2, "error: cannot write or read /x: Permission"),
        (TrainingFailed("the loss became NaN"), 1, "error: the loss became NaN"),
        (RuntimeError("boom\nmore"), 1, "error: RuntimeError: boom"),
        (KeyboardInterrupt(), 130, "error: interrupted: no run was made"),
        (Interrupted(signal.SIGTERM), 143, "error: terminated (SIGTERM): no run was made"),
    ],
)
def test_every_failure_of_train_is_one_line_with_its_exit_code(monkeypatch, error, code, line):
    def fails(argv):
        raise error

    monkeypatch.setattr(train, "launch", fails)
    result = runner.invoke(app.app, ["train"])
    assert result.exit_code == code
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(line), result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("hidden_size=0", "hidden_size=0 is invalid"),
        ("hidden_size=-5", "hidden_size=-5 is invalid"),
        ("epochs=0", "epochs=0 is invalid"),
        ("batch_size=0", "batch_size=0 is invalid"),
        ("learning_rate=-1", "learning_rate=-1.0 is invalid"),
        ("output_activation=bogus", "expected one of [tanh, linear, sigmoid, relu]"),
        (
            "cell=bogus",
            "expected one of [article, lstm, peephole, cifg, nig, nfg, nog, niaf, gru, rnn]",
        ),
        ("hydra/launcher=bogus", "available options in 'hydra/launcher'"),
    ],
)
def test_bad_input_is_refused_before_anything_is_tracked(tmp_path, monkeypatch, override, fragment):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app.app, ["train", override, f"tracking.uri=sqlite:///{tmp_path}/m.db"])
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and fragment in line
    assert list(Path(tmp_path).iterdir()) == []  # no store, no output directory


def test_reading_commands_refuse_bad_options_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app.app, ["runs", "--limit", "0", "--tracking-uri", "bogus://x"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("lstm-digits train hidd", ["hidden_size="]),
        ("lstm-digits train output_activation=", ["output_activation=linear"]),
        ("lstm-digits train data.scaling=u", ["data.scaling=unit"]),
        ("lstm-digits train experiment=d", ["experiment=debug"]),
        ("lstm-digits train hydra/launcher=j", ["hydra/launcher=joblib"]),
        ("lstm-digits ru", ["runs"]),
        ("lstm-digits runs --for", ["--format"]),
    ],
)
def test_the_shell_completes_commands_options_and_overrides(line, expected):
    """Through the completion entry point, as the installed bash completion calls it."""
    words = line.split() + ([""] if line.endswith(" ") else [])
    env = {
        "_LSTM_DIGITS_COMPLETE": "complete_bash",
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) - 1),
    }
    result = runner.invoke(app.app, [], env=env, prog_name="lstm-digits")
    assert set(expected) <= set(result.output.split()), result.output


def test_an_unknown_format_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app.app, ["runs", "--format", "xml"])
    assert result.exit_code == 2
    assert result.stderr == "error: --format xml is not known: use one of table, json, csv, ids\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["experiment=nope"],
            "available options in 'experiment': article, debug, keras, study, wide",
        ),
        (["-cd", "no/such/dir"], "--config-dir no/such/dir: no such directory"),
        (["-cd", "."], "--config-dir .: the directory holds no config (*.yaml)"),
        (["-cp", "."], "--config-path replaces the packaged configs"),
        (["-sc", "install=bash"], "lstm-digits --install-completion"),
    ],
)
def test_config_sources_that_do_not_exist_are_one_line(tmp_path, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app.app, ["train", *args])
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and fragment in line
    assert list(tmp_path.iterdir()) == []


def test_train_help_lists_the_config_groups():
    result = runner.invoke(app.app, ["train", "--help"], env={"COLUMNS": "200"})
    assert "experiment=article|debug|keras|study|wide" in result.output
    assert "hydra/launcher=basic|joblib|local|slurm" in result.output


def test_a_slurm_sweep_on_a_local_sqlite_store_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app.app, ["train", "-m", "hidden_size=8,16", "hydra/launcher=slurm"])
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert "a SLURM sweep cannot track to the SQLite store" in line
    assert "tracking.sqlite_on_cluster=true" in line
    assert list(tmp_path.iterdir()) == []  # no store, no parent run, no job


def test_a_database_uri_without_its_driver_names_the_extra(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a)
    )
    monkeypatch.chdir(tmp_path)
    uri = "postgresql://mlflow:s3cret@127.0.0.1:5432/mlflow"
    result = runner.invoke(app.app, ["train", f"tracking.uri={uri}"])
    assert result.exit_code == 2
    assert "needs the psycopg driver" in result.stderr and "lstm-digits[postgres]" in result.stderr
    assert "s3cret" not in result.output and "mlflow:***@" in result.stderr
