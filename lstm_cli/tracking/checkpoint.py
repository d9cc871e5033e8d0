"""Checkpoints in the run's artifacts: the state a training needs to go on bit for bit.

Two slots, written in turn (`checkpoints/a/`, `checkpoints/b/`), and a pointer
`checkpoints/latest.json` written last: a checkpoint half-written when the process dies is
never the latest, and a run keeps at most two. In the artifacts, not on a local disk, so that a
job requeued on another node of a cluster finds them through the tracking server.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lstm_cli import signals

FORMAT = 1  # bump when what a checkpoint holds changes: older ones are refused, not misread
ROOT = "checkpoints"
LATEST = f"{ROOT}/latest.json"
SLOTS = ("a", "b")


@dataclass(frozen=True)
class Checkpoint:
    """A saved training state and what it belongs to.

    Attributes:
        epoch: the last epoch trained.
        arrays: the weights, Adam's moments (`m.0`, `v.0`, ...) by name.
        meta: format, epoch, Adam's beta powers, the model spec and the data digest.
    """

    epoch: int
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


def save(run_id: str, epoch: int, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write a checkpoint of `epoch` into the slot the pointer does not name, then the
    pointer."""
    client = MlflowClient()
    latest = _pointer(client, run_id)
    slot = SLOTS[1] if latest and latest["slot"] == SLOTS[0] else SLOTS[0]
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp, "state.npz"), **arrays)
        Path(tmp, "meta.json").write_text(json.dumps({**meta, "format": FORMAT, "epoch": epoch}))
        with signals.deferred():
            client.log_artifacts(run_id, tmp, f"{ROOT}/{slot}")
            client.log_dict(run_id, {"slot": slot, "epoch": epoch, "format": FORMAT}, LATEST)


def _pointer(client: MlflowClient, run_id: str) -> dict[str, Any] | None:
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, LATEST, tmp)
            return json.loads(Path(path).read_text())
    except (MlflowException, OSError, ValueError):
        return None


def latest(run_id: str) -> Checkpoint | None:
    """The run's latest complete checkpoint; None if it has none."""
    client = MlflowClient()
    pointer = _pointer(client, run_id)
    if pointer is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(client.download_artifacts(run_id, f"{ROOT}/{pointer['slot']}", tmp))
        meta = json.loads((folder / "meta.json").read_text())
        with np.load(folder / "state.npz") as saved:
            arrays = {name: saved[name] for name in saved.files}
    return Checkpoint(epoch=int(meta["epoch"]), arrays=arrays, meta=meta)
