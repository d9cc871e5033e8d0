"""Checkpoints in the run's artifacts: the state a training needs to go on bit for bit.

Two slots, written in turn (`checkpoints/a/`, `checkpoints/b/`): a new checkpoint goes into the
slot that does not hold the one a resume would use, so a write the process dies in (or a full
disk tears) spoils at most that slot. Each slot's `meta.json` carries the digest of its
`state.npz`: a torn or mixed slot is found out when read, and the other one serves. The
pointer `checkpoints/latest.json`, written last, names the newest for people and tools.

In the artifacts, not on a local disk, so that a job requeued on another node of a cluster
finds them through the tracking server. Written by the run's background writer (see
`tracking.writer`), after the metrics of the epochs they cover.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.tracking import MlflowClient

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
        slot: the slot it was read from.
    """

    epoch: int
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    slot: str = SLOTS[0]


@dataclass(frozen=True)
class Slot:
    """What one slot holds: a checkpoint, or why none can be read from it (`problem`)."""

    name: str
    checkpoint: Checkpoint | None
    problem: str | None  # None with a checkpoint; "empty" if never written


def other(slot: str) -> str:
    return SLOTS[1] if slot == SLOTS[0] else SLOTS[0]


def save(run_id: str, slot: str, epoch: int, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write a checkpoint of `epoch` into `slot`, then the pointer to it."""
    client = MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp, "state.npz")
        np.savez(state, **arrays)
        digest = hashlib.sha256(state.read_bytes()).hexdigest()
        meta = {**meta, "format": FORMAT, "epoch": epoch, "sha256": digest}
        Path(tmp, "meta.json").write_text(json.dumps(meta))
        client.log_artifacts(run_id, tmp, f"{ROOT}/{slot}")
    client.log_dict(run_id, {"slot": slot, "epoch": epoch, "format": FORMAT}, LATEST)


def slots(run_id: str) -> list[Slot]:
    """Both slots, readable ones first, newest first."""
    found = [_read(MlflowClient(), run_id, name) for name in SLOTS]
    return sorted(
        found, key=lambda s: -1 if s.checkpoint is None else s.checkpoint.epoch, reverse=True
    )


def latest(run_id: str) -> Checkpoint | None:
    """The run's newest readable checkpoint; None if it has none."""
    newest = slots(run_id)[0]
    return newest.checkpoint


def _read(client: MlflowClient, run_id: str, name: str) -> Slot:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = Path(client.download_artifacts(run_id, f"{ROOT}/{name}", tmp))
        except Exception:  # any store's "no such artifact" (each says it its own way)
            return Slot(name, None, "empty")
        try:
            meta = json.loads((folder / "meta.json").read_text())
            state = (folder / "state.npz").read_bytes()
            digest = meta.get("sha256")  # checkpoints before this check have none
            if digest is not None and hashlib.sha256(state).hexdigest() != digest:
                return Slot(name, None, "torn: its state does not match its digest")
            with np.load(folder / "state.npz") as saved:
                arrays = {key: saved[key] for key in saved.files}
            epoch = int(meta["epoch"])
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as ex:
            return Slot(name, None, f"unreadable: {type(ex).__name__}")
    return Slot(name, Checkpoint(epoch=epoch, arrays=arrays, meta=meta, slot=name), None)
