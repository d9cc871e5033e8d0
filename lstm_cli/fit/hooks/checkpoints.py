"""Checkpoints: when the training state is saved, and what it holds. A resume or a requeue
goes on from the newest one bit for bit (see `jobs.resume_rules`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from lstm_cli.fit.hooks.base import Hook
from lstm_cli.fit.hooks.pruning import PRUNED
from lstm_cli.runtime.errors import TrainingFailed


class Checkpoints(Hook):
    """Save the training state every `every_epochs` epochs, at most once per `every_seconds`,
    and once at the end of training, stopped early or not (a pruned point excepted: it will
    not go on). `every_epochs=0`: never, and no cost (see conf/config.yaml's `checkpoint`).

    `save(epoch, arrays, meta)` hands a checkpoint to the run's writer, which sends it after
    the metrics of its epochs. `meta` is what a checkpoint must still match to be resumed (the
    model's spec, the data's digest); `stopping`, an `EarlyStopping` whose state is part of the
    training's; `last_epoch`, the epoch of the checkpoint the training went on from.
    """

    def __init__(
        self,
        save: Callable[[int, dict[str, np.ndarray], dict], None],
        every_epochs: int,
        every_seconds: float,
        meta: dict,
        last_epoch: int = 0,
        stopping: Any = None,
    ) -> None:
        self.save = save
        self.every_epochs = every_epochs
        self.every_seconds = every_seconds
        self.meta = meta
        self.last_epoch = last_epoch
        self.stopping = stopping
        self.last_time = time.monotonic()

    @property
    def enabled(self) -> bool:
        return self.every_epochs > 0

    def on_epoch_end(self, loop, metrics) -> None:
        due = metrics.epoch - self.last_epoch >= self.every_epochs
        if self.enabled and due and time.monotonic() - self.last_time >= self.every_seconds:
            self.checkpoint(loop.trainer, metrics.epoch)

    def on_end(self, loop) -> None:
        last = loop.last_epoch  # `resume` with more epochs goes on from here
        if self.enabled and self.last_epoch != last and loop.stopped_by != PRUNED:
            self.checkpoint(loop.trainer, last)

    def checkpoint(self, trainer: Any, epoch: int) -> None:
        """Hand the training state after `epoch` to `save` (a copy: training goes on
        meanwhile). A state with NaN or infinite values is never saved."""
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
        self.save(epoch, arrays, meta)
        self.last_epoch, self.last_time = epoch, time.monotonic()
