"""What a stop, a divergence or a failure leaves, and how it is told: the pieces, without a
store (the end-to-end cases are in test_kills.py, test_faults.py, test_resume.py and
test_sweep.py)."""

from __future__ import annotations

import os
import socket
from types import SimpleNamespace

import numpy as np
import pytest

from lstm_cli.fit.hooks.checkpoints import Checkpoints
from lstm_cli.jobs import resume_rules, task
from lstm_cli.runtime.errors import TrainingFailed, UserError
from lstm_cli.tracking import ending
from lstm_cli.tracking import parent_run as sweeps
from lstm_cli.tracking.owner import HOST_TAG, PID_TAG

RUN = "0123456789abcdef0123456789abcdef"


class _Trainer:
    """A trainer whose state holds `value` everywhere."""

    def __init__(self, value: float) -> None:
        self.value = value

    def state(self, epoch: int):
        weights = {"W": np.full((2, 2), self.value, np.float32)}
        return SimpleNamespace(
            weights=weights, beta_powers=(0.9, 0.99), arrays=lambda: {"weights.W": weights["W"]}
        )


def test_a_state_with_nan_is_never_checkpointed():
    saved: list[int] = []
    hook = Checkpoints(lambda epoch, arrays, meta: saved.append(epoch), 1, 0, meta={})
    hook.checkpoint(_Trainer(0.5), 1)
    with pytest.raises(TrainingFailed, match="after epoch 2 holds NaN or infinite values"):
        hook.checkpoint(_Trainer(float("nan")), 2)
    with pytest.raises(TrainingFailed):
        hook.checkpoint(_Trainer(float("inf")), 3)
    assert saved == [1]


def _handle(opened=True, last_epoch=0, checkpoint_epoch=0):
    return SimpleNamespace(
        run_id=RUN, opened=opened, last_epoch=last_epoch, checkpoint_epoch=checkpoint_epoch
    )


@pytest.mark.parametrize(
    ("handle", "said"),
    [
        (_handle(opened=False), f"run {RUN} is as it was before"),
        (_handle(), f"run {RUN} is KILLED before its first epoch"),
        (
            _handle(last_epoch=7),
            f"run {RUN} is KILLED after epoch 7 (no checkpoint yet: resume replays it from its "
            "start)",
        ),
        (
            _handle(last_epoch=7, checkpoint_epoch=6),
            f"run {RUN} is KILLED after epoch 7 (its checkpoint of epoch 6)",
        ),
    ],
    ids=["never written", "no epoch", "no checkpoint", "checkpointed"],
)
def test_a_stopped_run_is_named_with_what_it_keeps_and_the_command_that_goes_on(handle, said):
    assert ending.told(handle) == f"{said}; go on with: lstm-digits resume {RUN}"


def test_a_stopped_sweep_is_named_with_its_unfinished_runs():
    runs = [f"{k:08x}" + "0" * 24 for k in range(6)]
    assert sweeps.told("p" * 32, "KILLED", runs[:2]) == (
        f"sweep {'p' * 32} is KILLED with 2 run(s) unfinished (00000000 00000001); "
        f"go on with: lstm-digits resume {'p' * 32}"
    )
    assert "6 run(s) unfinished (00000000 00000001 00000002 00000003 +2 more)" in sweeps.told(
        "p" * 32, "FAILED", runs
    )
    assert sweeps.told("p" * 32, "KILLED", []) == (
        f"sweep {'p' * 32} is KILLED; go on with: lstm-digits resume {'p' * 32}"
    )


def _child(status: str, accuracy: float | None = 0.9, **tags: str) -> sweeps.Child:
    return sweeps.Child(RUN, status, accuracy, tags)


def test_a_resumed_sweeps_finished_and_pruned_points_stay_as_they_are(capsys):
    assert task._ended_before(_child("FINISHED"), "3") == 0.9
    assert task._ended_before(_child("FINISHED", 0.5, pruned_at_epoch="5"), "4") == 0.5
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == f"[job 3] done before: val_accuracy=0.9000 run {RUN}"
    assert shown[1] == f"[job 4] pruned at epoch 5 before: val_accuracy=0.5000 run {RUN}"


def test_a_resumed_sweeps_diverged_point_is_not_trained_again(capsys):
    ended = task._ended_before(_child("FAILED", None, diverged_at_epoch="2"), "1")
    assert np.isnan(ended)
    assert "diverged at epoch 2" in capsys.readouterr().out


def test_a_resumed_sweeps_stopped_point_goes_on_and_a_running_one_is_refused():
    assert task._ended_before(_child("KILLED"), "0") is None
    assert task._ended_before(_child("FAILED", error="the store was full"), "0") is None
    lost = {HOST_TAG: socket.gethostname(), PID_TAG: "999999999"}  # no such process
    assert task._ended_before(_child("RUNNING", **lost), "0") is None
    alive = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    with pytest.raises(UserError, match="still running"):
        task._ended_before(_child("RUNNING", **alive), "0")


def test_a_point_is_the_same_whatever_names_its_store():
    assert task._same_point("hidden_size=8 tracking.uri=sqlite:///a.db", "hidden_size=8")
    assert not task._same_point("hidden_size=8", "hidden_size=16")


def test_a_run_that_diverged_before_the_tag_is_known_by_its_error():
    said = resume_rules.diverged(RUN, {"error": "the loss became NaN or infinite at epoch 3 (...)"})
    assert said == (
        f"run {RUN} diverged at epoch 3 (its loss became NaN or infinite): it would diverge "
        "again; train it again with a lower learning_rate"
    )
    assert resume_rules.diverged(RUN, {"error": "interrupted (Ctrl-C)"}) is None
