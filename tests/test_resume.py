"""Stop and go on: checkpoints, `lstm-digits resume`, one unbroken history in the same run."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import (
    CLI,
    CURVES,
    EXPERIMENT,
    assert_one_line_error,
    cli_env,
    histories,
    latest_checkpoint,
    run_cli,
    sqlite_uri,
    stop,
)

TRAINING = ("hidden_size=8", "seed=2", "tracking.log_model=false", "checkpoint.every_seconds=0")


def _runs(uri: str) -> list:
    """The runs of the default experiment in the store at `uri` (none if it has none yet)."""
    if not Path(uri.removeprefix("sqlite:///")).exists():
        return []
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id]) if experiment else []


def _only_run(uri: str):
    (run,) = _runs(uri)
    return run


def _train_until_stopped(tmp_path, uri: str, *args: str, after: int) -> str:
    """Train, then SIGTERM once `after` epochs are in the store; return the run id."""
    proc = subprocess.Popen(
        [CLI, "train", *args, f"tracking.uri={uri}"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.3)
            runs = _runs(uri)  # no client before the CLI has made the store: it would make it
            if (
                runs
                and len(MlflowClient(uri).get_metric_history(runs[0].info.run_id, "val_loss"))
                >= after
            ):
                break
    finally:
        stderr = stop(proc, signal.SIGTERM)
    assert proc.returncode == 143, stderr
    return runs[0].info.run_id


@pytest.mark.slow
def test_a_stopped_run_resumed_equals_the_uninterrupted_one(tmp_path):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    straight.mkdir(), stopped.mkdir()
    args = ("epochs=300", "checkpoint.every_epochs=40", *TRAINING)
    whole = run_cli("train", *args, f"tracking.uri={sqlite_uri(straight)}", cwd=straight)
    assert whole.returncode == 0, whole.stderr
    expected = _only_run(sqlite_uri(straight))

    uri = sqlite_uri(stopped)
    run_id = _train_until_stopped(stopped, uri, *args, after=50)
    killed = MlflowClient(uri).get_run(run_id)
    assert killed.info.status == "KILLED"
    logged = len(MlflowClient(uri).get_metric_history(run_id, "val_loss"))
    saved = json.loads(_artifact(uri, run_id, "checkpoints/latest.json"))
    assert saved["epoch"] == logged < 300  # SIGTERM saves at its epoch's end, off the grid

    resumed = run_cli("resume", run_id[:8], "--tracking-uri", uri, cwd=stopped)
    assert resumed.returncode == 0, resumed.stderr
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_id == run_id
    got, want = histories(uri, run_id), histories(sqlite_uri(straight), expected.info.run_id)
    for name in CURVES:
        assert [step for step, _ in got[name]] == list(range(1, 301))  # no gap, no duplicate
        np.testing.assert_allclose([v for _, v in got[name]], [v for _, v in want[name]], atol=1e-6)
    final, reference = (
        latest_checkpoint(uri, run_id).arrays,
        latest_checkpoint(sqlite_uri(straight), expected.info.run_id).arrays,
    )
    for name, value in reference.items():
        np.testing.assert_allclose(final[name], value, atol=1e-6)
    assert run.data.metrics["val_accuracy"] == pytest.approx(
        expected.data.metrics["val_accuracy"], abs=1e-6
    )
    names = {a.path for a in MlflowClient(uri).list_artifacts(run_id)}
    assert {"learning_curves.png", "confusion_matrix.png", "config.yaml"} <= names


def _artifact(uri: str, run_id: str, path: str) -> str:
    """A text artifact of a run, read through MLflow."""
    return Path(MlflowClient(uri).download_artifacts(run_id, path)).read_text()


@pytest.mark.slow
def test_a_finished_run_goes_on_with_more_epochs(tmp_path):
    uri = sqlite_uri(tmp_path)
    first = run_cli("train", "epochs=20", *TRAINING, f"tracking.uri={uri}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run_id = _only_run(uri).info.run_id
    same = run_cli("resume", "best", "--tracking-uri", uri, cwd=tmp_path)
    assert_one_line_error(same, 2, "has trained 20 of epochs=20")
    more = run_cli("resume", run_id, "epochs=30", "--tracking-uri", uri, cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert [s for s, _ in histories(uri, run_id)["val_loss"]] == list(range(1, 31))
    assert run.data.tags["resumed"] == "1" and run.data.tags["resume_overrides"] == "epochs=30"
    # The final figures are the trained-on model's, at its new last epoch (the 20 epochs' stay).
    history = MlflowClient(uri).get_metric_history(run_id, "test_accuracy")
    tested = sorted((m.step, m.value) for m in history)
    assert [step for step, _ in tested] == [20, 30]
    assert run.data.metrics["test_accuracy"] == tested[-1][1]
    (shown,) = [line for line in more.stdout.splitlines() if "test_accuracy" in line]
    assert f"{tested[-1][1]:.4f}" in shown


@pytest.fixture(scope="module")
def resumable(tmp_path_factory):
    """A finished 5-epoch run with a checkpoint, and one without."""
    workdir = tmp_path_factory.mktemp("resumable")
    uri = sqlite_uri(workdir)
    for every in (5, 0):
        done = run_cli(
            "train",
            "epochs=5",
            *TRAINING,
            f"checkpoint.every_epochs={every}",
            f"tracking.uri={uri}",
            cwd=workdir,
        )
        assert done.returncode == 0, done.stderr
    client = MlflowClient(uri)
    runs = client.search_runs(
        [client.get_experiment_by_name(EXPERIMENT).experiment_id],
        order_by=["attributes.start_time ASC"],
    )
    return workdir, uri, runs[0].info.run_id, runs[1].info.run_id


@pytest.mark.slow
@pytest.mark.parametrize(
    ("which", "args", "fragment"),
    [
        ("with", ["hidden_size=16", "epochs=9"], "hidden_size= would change what run"),
        ("with", ["data.split_seed=1", "epochs=9"], "data.split_seed= would change"),
        (None, ["epochs=9"], "no run 'ffffffff'"),
    ],
)
def test_resume_refusals_are_one_line_and_leave_the_run_alone(resumable, which, args, fragment):
    workdir, uri, with_checkpoint, without = resumable
    ref = {"with": with_checkpoint, "without": without, None: "ffffffff"}[which]
    before = MlflowClient(uri).get_run(with_checkpoint)
    result = run_cli("resume", ref, *args, "--tracking-uri", uri, cwd=workdir)
    assert_one_line_error(result, 2, fragment)
    after = MlflowClient(uri).get_run(with_checkpoint)
    assert (after.info.status, after.info.end_time) == (before.info.status, before.info.end_time)


@pytest.mark.slow
def test_a_run_without_a_checkpoint_goes_on_from_its_start_in_the_same_run(resumable):
    """Training is deterministic: its epochs are replayed, and the store keeps what it has."""
    workdir, uri, _, without = resumable
    before = histories(uri, without)
    more = run_cli("resume", without, "epochs=9", "--tracking-uri", uri, cwd=workdir)
    assert more.returncode == 0, more.stderr
    assert f"resume run {without} from its start (it has no checkpoint)" in more.stdout
    assert f"lstm-digits ui --tracking-uri {uri}" in more.stdout  # the store it resumed in
    after = histories(uri, without)
    for name in CURVES:
        assert [step for step, _ in after[name]] == list(range(1, 10))  # each step once
        assert after[name][:5] == before[name]  # the stored epochs, as they were
    assert MlflowClient(uri).get_run(without).info.status == "FINISHED"


@pytest.mark.slow
def test_a_diverged_run_ends_failed_in_one_line_and_resume_refuses_it(tmp_path):
    """The loss checked before any checkpoint: none holds NaN, and `resume` refuses the run (it
    would diverge again)."""
    uri = sqlite_uri(tmp_path)
    diverging = ("epochs=5", "learning_rate=1e38", "checkpoint.every_epochs=1")
    failed = run_cli("train", *diverging, *TRAINING, f"tracking.uri={uri}", cwd=tmp_path)
    run = _only_run(uri)
    assert_one_line_error(
        failed,
        1,
        f"run {run.info.run_id} FAILED: the loss became NaN or infinite at epoch 1 "
        "(learning_rate=1e+38): train it again with a lower learning_rate",
    )
    assert run.info.status == "FAILED" and run.data.tags["diverged_at_epoch"] == "1"
    names = {a.path for a in MlflowClient(uri).list_artifacts(run.info.run_id)}
    assert "checkpoints" not in names
    refused = run_cli("resume", run.info.run_id, "--tracking-uri", uri, cwd=tmp_path)
    assert_one_line_error(refused, 2, f"run {run.info.run_id} diverged at epoch 1", "learning_rate")
    assert MlflowClient(uri).get_run(run.info.run_id).info == run.info


@pytest.mark.slow
def test_a_checkpoint_of_another_format_is_refused(resumable):
    workdir, uri, run_id, _ = resumable
    client = MlflowClient(uri)
    client.log_dict(run_id, {"slot": "a", "epoch": 5, "format": 999}, "checkpoints/latest.json")
    meta = json.loads(_artifact(uri, run_id, "checkpoints/a/meta.json"))
    client.log_dict(run_id, {**meta, "format": 999}, "checkpoints/a/meta.json")
    result = run_cli("resume", run_id, "epochs=9", "--tracking-uri", uri, cwd=workdir)
    assert_one_line_error(result, 2, "checkpoint has format 999")


@pytest.mark.slow
def test_a_run_still_running_is_not_resumed(tmp_path):
    uri = sqlite_uri(tmp_path)
    proc = subprocess.Popen(
        [CLI, "train", "epochs=100000", *TRAINING, f"tracking.uri={uri}"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _runs(uri):
            time.sleep(0.5)
        run_id = _only_run(uri).info.run_id
        result = run_cli("resume", run_id, "epochs=200000", "--tracking-uri", uri, cwd=tmp_path)
        assert_one_line_error(result, 2, "is still running on")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert MlflowClient(uri).get_run(run_id).info.status == "KILLED"
