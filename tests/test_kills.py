"""kill -9 at seeded points of a run, then `lstm-digits resume`: the resumed run equals one that
was never stopped (every step once, the same values and final weights).

The CLI runs under a small harness that wraps one function of the package and SIGKILLs the
process at its n-th call (before or after it), so each point is the same on every run: during
the training, during a metrics write, right after a checkpoint, inside a checkpoint (torn
state, a missing pointer) and during the final logging.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import (
    CURVES,
    EXPERIMENT,
    cli_env,
    histories,
    latest_checkpoint,
    run_cli,
    sqlite_uri,
)

EPOCHS = 12
# Small batches: epochs long enough (tens of ms) that the writer keeps up with every checkpoint.
ARGS = (
    f"epochs={EPOCHS}",
    "hidden_size=8",
    "batch_size=16",
    "seed=3",
    "checkpoint.every_epochs=3",
    "checkpoint.every_seconds=0",
)

# Runs `lstm-digits ARGS` with one function wrapped: SIGKILL at its first call for which the
# point's condition holds (see POINTS), before or after the call.
HARNESS = r"""
import importlib, json, os, signal, sys
from pathlib import Path

kind, module_name, qualname, when, condition = sys.argv[1].split(" ", 4)
del sys.argv[1]
owner_name, _, attr = qualname.rpartition(".")
module = importlib.import_module(module_name)
owner = getattr(module, owner_name) if owner_name else module
real = getattr(owner, attr)

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def wrapped(*args, **kwargs):
    if not eval(condition):
        return real(*args, **kwargs)
    if kind == "raise":  # a failure there, not a death
        raise RuntimeError("injected")
    if kind == "sigint":  # Ctrl-C there
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)
    if kind == "torn":  # the slot gets its new state but not its new meta, then it dies
        Path(args[2], "meta.json").unlink()
        real(*args, **kwargs)
        die()
    if when == "before":
        die()
    real(*args, **kwargs)
    die()

setattr(owner, attr, wrapped)
from lstm_cli.commands.app import main
sys.argv[0] = "lstm-digits"
main()
"""

# Where the process dies: kind, module, function, before|after, and the condition (a Python
# expression of the call's `args`) of the call it dies at. Conditions name epochs, not call
# counts: the writer drops a checkpoint a newer one overtook, so counts vary from run to run.
META_EPOCH = "json.loads(Path(args[2], 'meta.json').read_text())['epoch']"
POINTS = {
    # With no checkpoint yet (the first is of epoch 3): resume replays the run from its start.
    "before the first checkpoint": "call lstm_cli.tracking.run_handle Run.log_epoch before "
    "args[2] == 2",
    "in an epoch's end": "call lstm_cli.tracking.run_handle Run.log_epoch before args[2] == 8",
    "after a metrics write": "call lstm_cli.tracking.run_handle Run._log_metrics_now after "
    "any(m.key == 'val_loss' and m.step >= 7 for m in args[1])",
    "right after a checkpoint": "call lstm_cli.tracking.checkpoint_slots save after args[2] >= 6",
    "inside a checkpoint (torn slot)": "torn mlflow.tracking MlflowClient.log_artifacts - "
    f"{META_EPOCH} >= 6",
    "inside a checkpoint (no pointer)": "call mlflow.tracking MlflowClient.log_dict before "
    "str(args[3]).endswith('latest.json') and args[2]['epoch'] >= 6",
    "during the final logging": "call lstm_cli.tracking.run_handle Run.log_figure before "
    "args[2] == 'gates.png'",
}


def _only_run(uri: str):
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    return run


def _final_weights(uri: str, run_id: str) -> dict[str, np.ndarray]:
    saved = latest_checkpoint(uri, run_id)
    assert saved.epoch == EPOCHS
    return saved.arrays


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The same run, never stopped: what every resumed run must equal."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    uri = sqlite_uri(workdir)
    result = run_cli("train", *ARGS, f"tracking.uri={uri}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    run_id = _only_run(uri).info.run_id
    return histories(uri, run_id), _final_weights(uri, run_id)


@pytest.mark.slow
@pytest.mark.fault
@pytest.mark.parametrize("point", list(POINTS), ids=list(POINTS))
def test_a_run_killed_anywhere_resumes_to_the_uninterrupted_run(tmp_path, uninterrupted, point):
    uri = sqlite_uri(tmp_path)
    killed = _harness(tmp_path, POINTS[point], "train", *ARGS, f"tracking.uri={uri}")
    assert killed.returncode == -9, killed.stderr  # it died at the point, not before
    run_id = _only_run(uri).info.run_id
    listed = run_cli("runs", "--format", "json", "--tracking-uri", uri, cwd=tmp_path)
    assert json.loads(listed.stdout)[0]["status"] == "RUNNING (lost)"  # its process is gone

    resumed = run_cli("resume", run_id, "--tracking-uri", uri, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    if "torn" in point:  # the slot it died in is not used: said in one line
        assert "cannot be read" in resumed.stderr
    if point == "before the first checkpoint":
        assert f"resume run {run_id} from its start (it has no checkpoint)" in resumed.stdout
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["resumed"] == "1"
    got, (want, weights) = histories(uri, run_id), uninterrupted
    for name in CURVES:
        assert [step for step, _ in got[name]] == list(range(1, EPOCHS + 1))  # each step once
        np.testing.assert_allclose([v for _, v in got[name]], [v for _, v in want[name]], atol=1e-6)
    final = _final_weights(uri, run_id)
    assert final.keys() == weights.keys()
    for name, value in weights.items():
        np.testing.assert_allclose(final[name], value, atol=1e-6)
    client = MlflowClient(uri)
    for name in run.data.metrics:  # every metric, the final ones too: one value per step
        steps = [m.step for m in client.get_metric_history(run_id, name)]
        assert len(steps) == len(set(steps)), (name, sorted(steps))
    assert run.outputs.model_outputs  # the record is complete: the model too
    names = {a.path for a in MlflowClient(uri).list_artifacts(run_id)}
    assert {"learning_curves.png", "misclassified.png", "insight.json"} <= names


def _harness(tmp_path, point: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", HARNESS, point, *args],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.fault
@pytest.mark.parametrize(
    ("failure", "code"),
    [
        ("raise lstm_cli.fit.trainer Trainer.epoch before True", 1),  # in its first new epoch
        ("sigint lstm_cli.fit.trainer trainer_for before True", 130),
    ],
    ids=["an error", "Ctrl-C"],
)
def test_a_resume_that_fails_before_its_first_epoch_changes_nothing(tmp_path, failure, code):
    uri = sqlite_uri(tmp_path)
    killed = _harness(
        tmp_path, POINTS["right after a checkpoint"], "train", *ARGS, f"tracking.uri={uri}"
    )
    assert killed.returncode == -9, killed.stderr
    client = MlflowClient(uri)
    run_id = _only_run(uri).info.run_id
    before = client.get_run(run_id)
    failed = _harness(tmp_path, failure, "resume", run_id, "--tracking-uri", uri)
    assert failed.returncode == code, failed.stderr
    assert failed.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in failed.stderr
    after = client.get_run(run_id)
    assert (after.info.status, after.info.end_time) == (before.info.status, before.info.end_time)
    assert after.data.tags == before.data.tags and after.data.metrics == before.data.metrics
    resumed = run_cli("resume", run_id, "--tracking-uri", uri, cwd=tmp_path)  # then it goes on
    assert resumed.returncode == 0, resumed.stderr
    assert client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.slow
@pytest.mark.fault
def test_the_harness_points_are_real():
    """Each point names a function that exists (a rename would make its test pass vacuously:
    the run would not die, and the kill's exit code is asserted above too)."""
    import importlib

    for spec in POINTS.values():
        _, module_name, qualname, _, _ = spec.split(" ", 4)
        owner_name, _, attr = qualname.rpartition(".")
        module = importlib.import_module(module_name)
        assert hasattr(getattr(module, owner_name) if owner_name else module, attr), spec


STOPPING = (
    "epochs=40",
    "hidden_size=8",
    "batch_size=16",
    "seed=3",
    "early_stopping.patience=2",
    "early_stopping.min_delta=0.02",
    "checkpoint.every_epochs=3",
    "checkpoint.every_seconds=0",
    "tracking.log_model=false",
)


@pytest.mark.slow
@pytest.mark.fault
def test_a_run_that_stops_early_stops_at_the_same_epoch_once_resumed(tmp_path):
    """The best weights and the patience count are in the checkpoint: killed between its best
    epoch and its stop, the resumed run stops where the uninterrupted one did, with the same
    kept weights (its test numbers)."""
    straight, killed_dir = tmp_path / "straight", tmp_path / "killed"
    straight.mkdir(), killed_dir.mkdir()
    whole = run_cli("train", *STOPPING, f"tracking.uri={sqlite_uri(straight)}", cwd=straight)
    assert whole.returncode == 0, whole.stderr
    want = _only_run(sqlite_uri(straight))
    stopped = int(want.data.metrics["stopped_epoch"])
    assert 4 < stopped < 40, "the reference run must stop early for this test to mean anything"

    uri = sqlite_uri(killed_dir)
    point = f"call lstm_cli.tracking.run_handle Run.log_epoch before args[2] == {stopped - 1}"
    killed = _harness(killed_dir, point, "train", *STOPPING, f"tracking.uri={uri}")
    assert killed.returncode == -9, killed.stderr
    run_id = _only_run(uri).info.run_id
    resumed = run_cli("resume", run_id, "--tracking-uri", uri, cwd=killed_dir)
    assert resumed.returncode == 0, resumed.stderr
    got = MlflowClient(uri).get_run(run_id)
    for name in ("stopped_epoch", "restored_epoch", "test_accuracy", "test_loss", "val_accuracy"):
        assert got.data.metrics[name] == pytest.approx(want.data.metrics[name], abs=1e-6), name
    mine, theirs = histories(uri, run_id), histories(sqlite_uri(straight), want.info.run_id)
    for name in CURVES:  # steps 1..stopped, and the kept epoch's values at stopped + 1
        assert [s for s, _ in mine[name]] == list(range(1, stopped + 2))
        np.testing.assert_allclose(
            [v for _, v in mine[name]], [v for _, v in theirs[name]], atol=1e-6
        )
