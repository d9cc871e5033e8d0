"""What a training checkpoints, and when; and what a checkpoint must still match for a run to
go on from it: the model's spec and the data split's digest (`resume` checks both)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from omegaconf import DictConfig

from lstm_cli.errors import TrainingFailed


def model_spec(cfg: DictConfig, data: Any) -> dict[str, Any]:
    """What builds the model again: the architecture (from the config and the data's shapes),
    the pixel scaling and the number of rows."""
    return {
        "model": {
            "input_size": data.input_size,
            "num_classes": data.num_classes,
            "hidden_size": cfg.hidden_size,
            "cell": cfg.cell.value,
            "init": cfg.init.value,
            "output_activation": cfg.output_activation.value,
            "seed": cfg.seed,
        },
        "scaling": cfg.data.scaling.value,
        "steps": data.steps,
    }


def split_digest(data: Any) -> str:
    """A digest of a data split's arrays: a resume refuses a split that is no longer the same
    (another scikit-learn, another scaling)."""
    import hashlib

    digest = hashlib.sha256()
    arrays = [data.x_train, data.y_train, data.x_val, data.y_val]
    if data.has_validation:  # a two-way split digests as it did before the test split
        arrays += [data.x_test, data.y_test]
    for array in arrays:
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


class Saver:
    """When and what to checkpoint during a training (see conf/config.yaml's `checkpoint`).

    Every `every_epochs` epochs, at most once per `every_seconds`, and on demand (a stop, a
    last save at the end). `every_epochs=0`: never, and no cost. The run's writer sends a
    checkpoint after the metrics of its epochs, in the background.
    """

    def __init__(
        self, run: Any, every_epochs: int, every_seconds: float, meta: dict, last_epoch: int = 0,
        stopping: Any = None,
    ) -> None:  # fmt: skip
        self.run = run
        self.stopping = stopping  # its state is part of the training's
        self.every_epochs = every_epochs
        self.every_seconds = every_seconds
        self.meta = meta
        self.last_epoch = last_epoch  # the epoch of the checkpoint the training started from
        self.last_time = time.monotonic()

    @property
    def enabled(self) -> bool:
        return self.every_epochs > 0

    def after_epoch(self, trainer: Any, epoch: int) -> None:
        """Save if the interval has passed (in epochs and in seconds)."""
        due = epoch - self.last_epoch >= self.every_epochs
        if self.enabled and due and time.monotonic() - self.last_time >= self.every_seconds:
            self.save(trainer, epoch)

    def save(self, trainer: Any, epoch: int) -> None:
        """Hand the training state after `epoch` to the run's writer (a copy: training goes
        on meanwhile)."""
        state = trainer.state(epoch)
        meta = {**self.meta, "beta_powers": [float(b) for b in state.beta_powers]}
        arrays = {k: np.array(v, copy=True) for k, v in state.arrays().items()}  # not views
        broken = [k for k, v in arrays.items() if not np.isfinite(v).all()]
        if broken:  # a resume from it would train on NaN: the run ends before it is saved
            raise TrainingFailed(
                f"the training state after epoch {epoch} holds NaN or infinite values "
                f"({', '.join(broken[:3])}): not checkpointed; train it again with a lower "
                "learning_rate"
            )
        if self.stopping is not None:
            meta["early_stopping"], best = self.stopping.state()
            arrays |= best  # copies already
        self.run.save_checkpoint(epoch, arrays, meta)
        self.last_epoch, self.last_time = epoch, time.monotonic()
