"""CLI end to end: the console script, a temporary MLflow store, a few epochs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from lstm_cli.runtime import hardware
from tests.helpers import (
    CLI,
    EPOCHS,
    EXPERIMENT,
    assert_no_runs,
    assert_one_line_error,
    cli_env,
    free_port,
    held_out,
    run_cli,
    runs_so_far,
    sqlite_uri,
)


@pytest.mark.slow
def test_help_does_not_import_tensorflow_or_mlflow():
    code = (
        "import sys; import lstm_cli.commands.app as c\n"
        "try:\n    c.app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('tensorflow', 'mlflow', 'hydra') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "train" in out.stdout


@pytest.mark.slow
def test_version_answers_without_a_command():
    out = subprocess.run([CLI, "--version"], capture_output=True, text=True, env=cli_env())
    assert out.returncode == 0 and out.stdout.startswith("lstm-digits ")


@pytest.mark.slow
def test_run_is_tracked_with_params_metrics_and_artifacts(trained_run):
    client = MlflowClient(trained_run.uri)
    run = client.get_run(trained_run.run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["hidden_size"] == "16" and params["epochs"] == str(EPOCHS)
    assert params["output_activation"] == "tanh" and params["data.split_seed"] == "42"
    assert params["tracking.experiment"] == EXPERIMENT
    assert "hidden_size=16" in run.data.tags["overrides"]
    assert len(run.data.tags["git_commit"]) in (0, 40)
    assert run.data.tags["tf_threads"] == "1"  # hidden 16: one thread is fastest
    for name in ("best_val_accuracy", "train_seconds", "insight_seconds", "test_accuracy"):
        assert run.data.metrics[name] > 0
    for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        history = client.get_metric_history(trained_run.run_id, name)
        assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))
    artifacts = {a.path for a in client.list_artifacts(trained_run.run_id)}
    assert {"config.yaml", "learning_curves.png", "confusion_matrix.png"} <= artifacts
    local = Path(client.download_artifacts(trained_run.run_id, "confusion_matrix.json"))
    matrix = np.array(json.loads(local.read_text())["matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 360
    accuracy = np.trace(matrix) / matrix.sum()  # on the test split, as every final figure
    assert accuracy == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-6)


@pytest.mark.slow
def test_logged_model_reloads_and_reproduces_test_accuracy(trained_run, defaults):
    import mlflow

    mlflow.set_tracking_uri(trained_run.uri)
    model = mlflow.pyfunc.load_model(f"runs:/{trained_run.run_id}/model")
    raw = held_out(defaults, scaling="raw")  # the model takes images as the dataset stores them
    accuracy = float(
        np.mean(model.predict(raw.x_test.astype(np.float64)).argmax(axis=1) == raw.y_test)
    )
    logged = MlflowClient(trained_run.uri).get_run(trained_run.run_id).data.metrics["test_accuracy"]
    assert accuracy == pytest.approx(logged, abs=1e-6)


@pytest.mark.slow
def test_terminal_shows_config_final_metrics_and_how_to_open_the_ui(trained_run):
    out = trained_run.result.stdout
    assert "hidden_size=16" in out
    assert "val_accuracy" in out and trained_run.run_id in out
    assert trained_run.uri in out and "lstm-digits ui --tracking-uri" in out
    assert "Traceback" not in trained_run.result.stderr


@pytest.mark.slow
def test_same_config_and_seed_give_the_same_metrics(trained_run, tmp_path):
    uri = sqlite_uri(tmp_path)
    again = run_cli(
        "train", f"epochs={EPOCHS}", "hidden_size=16", f"tracking.uri={uri}", "seed=1", cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr
    client = MlflowClient(uri)
    (rerun,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    first = MlflowClient(trained_run.uri).get_run(trained_run.run_id).data.metrics
    for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert rerun.data.metrics[name] == first[name]


@pytest.mark.slow
@pytest.mark.skipif(not hardware.has_bf16(), reason="the CPU has no bfloat16 instructions")
def test_bf16_trains_where_the_cpu_has_it_and_stays_near_fp32(trained_run, tmp_path):
    """precision=bf16 on a CPU with avx512_bf16 or amx_bf16: the same run as `trained_run`
    (fp32), recorded as bf16, within 0.1 of its validation accuracy and 10% of its loss."""
    uri = sqlite_uri(tmp_path)
    result = run_cli(
        "train",
        f"epochs={EPOCHS}",
        "hidden_size=16",
        f"tracking.uri={uri}",
        "seed=1",
        "precision=bf16",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["precision"] == "bf16"
    fp32 = MlflowClient(trained_run.uri).get_run(trained_run.run_id).data
    assert fp32.params["precision"] == "fp32"
    assert abs(run.data.metrics["val_accuracy"] - fp32.metrics["val_accuracy"]) <= 0.1
    assert run.data.metrics["train_loss"] == pytest.approx(fp32.metrics["train_loss"], rel=0.1)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "fragment"),
    [  # the rest of the bad values are refused in process (test_cli_inprocess.py)
        ("hidden_size=0", "hidden_size=0 is invalid"),
        ("hidden_size=abc", "could not be converted to Integer"),
        ("hiden_size=100", "did you mean 'hidden_size'"),
    ],
)
def test_bad_input_is_one_line_and_tracks_nothing(tmp_path, override, fragment):
    uri = sqlite_uri(tmp_path)
    result = run_cli("train", override, f"tracking.uri={uri}", cwd=tmp_path)
    assert_one_line_error(result, 2, fragment)
    assert_no_runs(uri)


@pytest.mark.slow
def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    uri = sqlite_uri(tmp_path)
    result = run_cli("train", f"hydra.run.dir={blocker}/run", f"tracking.uri={uri}", cwd=tmp_path)
    assert_one_line_error(result, 2, str(blocker))
    assert_no_runs(uri)


@pytest.mark.slow
@pytest.mark.parametrize("uri", ["./mlruns", "bogus://x"])
def test_a_uri_mlflow_cannot_use(tmp_path, uri):
    result = run_cli("train", f"tracking.uri={uri}", cwd=tmp_path)
    assert_one_line_error(result, 2, f"tracking.uri={uri} is not a store MLflow")
    assert not (tmp_path / "outputs").exists()  # refused before Hydra made a run directory


@pytest.mark.slow
def test_unwritable_tracking_store(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_cli("train", f"tracking.uri=sqlite:///{blocker}/mlflow.db", cwd=tmp_path)
    assert_one_line_error(result, 2, "cannot write the tracking store")


@pytest.mark.slow
def test_unreachable_tracking_server_fails_within_seconds(tmp_path):
    port = free_port()  # nobody listens there
    start = time.monotonic()
    result = run_cli("train", f"tracking.uri=http://127.0.0.1:{port}", cwd=tmp_path)
    assert time.monotonic() - start < 30  # Python and MLflow start-up included; no retries
    assert_one_line_error(
        result, 2, f"cannot reach the MLflow tracking server at http://127.0.0.1:{port}"
    )
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


@pytest.mark.slow
def test_nan_loss_marks_the_run_failed_with_the_reason(tmp_path):
    uri = sqlite_uri(tmp_path)
    result = run_cli(
        "train",
        "epochs=3",
        "hidden_size=8",
        "learning_rate=1e38",
        f"tracking.uri={uri}",
        "tracking.log_model=false",
        cwd=tmp_path,
    )
    assert_one_line_error(result, 1, "NaN or infinite at epoch 1")
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert run.info.status == "FAILED"
    assert "NaN or infinite" in run.data.tags["error"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "reason"),
    [(signal.SIGINT, 130, "interrupted (Ctrl-C)"), (signal.SIGTERM, 143, "terminated (SIGTERM)")],
)
def test_a_stopped_run_is_killed_and_keeps_its_metrics(tmp_path, signum, code, reason):
    """Ctrl-C, or SIGTERM as a scheduler sends it (scancel, a time limit, docker stop)."""
    uri = sqlite_uri(tmp_path)
    proc = subprocess.Popen(
        [CLI, "train", "epochs=100000", "hidden_size=8", f"tracking.uri={uri}"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    history = []
    while time.monotonic() < deadline and not history:  # wait until epochs reach the store
        time.sleep(1)
        runs = runs_so_far(uri)
        if runs:
            history = MlflowClient(uri).get_metric_history(runs[0].info.run_id, "val_accuracy")
    assert history, "no epoch was logged within two minutes"
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    (line,) = stderr.strip().splitlines()
    run_id = runs[0].info.run_id
    assert line.endswith(f"go on with: lstm-digits resume {run_id}"), line  # the last line
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["error"] == reason
    logged = client.get_metric_history(run_id, "val_accuracy")
    assert len(logged) >= len(history)
    saved = json.loads(
        Path(client.download_artifacts(run_id, "checkpoints/latest.json")).read_text()
    )
    assert saved["epoch"] == len(logged)  # the stop saved the epoch it ended, whatever the clock
