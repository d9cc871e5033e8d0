"""Early stopping: stop a run when its validation number stops improving, keep its best weights.

Plain numbers and arrays, no TensorFlow: its state is saved with every checkpoint, so that a
resumed or requeued run stops where the uninterrupted one would.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from lstm_cli.fit.hooks.base import Hook

if TYPE_CHECKING:
    from lstm_cli.fit.trainer import EpochMetrics
    from lstm_cli.networks.model import DigitsRNN

EARLY_STOPPED = "early stopping"  # `Loop.stopped_by` when it stopped the training


class EarlyStopping(Hook):
    """Stop when the watched validation number has not improved by more than `min_delta` for
    `patience` epochs, and keep the best epoch's weights (Keras's EarlyStopping with
    restore_best_weights). Plain state, saved with every checkpoint: a resumed run stops
    where the uninterrupted one would.
    """

    def __init__(self, patience: int, metric: str, min_delta: float) -> None:
        self.patience = patience
        self.metric = metric  # val_loss (lower is better) or val_accuracy (higher)
        self.min_delta = min_delta
        self.best = math.inf if metric == "val_loss" else -math.inf
        self.best_epoch = 0
        self.wait = 0  # epochs since the best
        self.best_weights: dict[str, np.ndarray] | None = None
        self.stopped_epoch = 0

    def on_epoch_end(self, loop, metrics) -> None:
        if self.update(metrics, loop.trainer.model):
            loop.stop(EARLY_STOPPED)

    def update(self, metrics: EpochMetrics, model: DigitsRNN) -> bool:
        """After an epoch: whether to stop now."""
        value = getattr(metrics, self.metric)
        if self.metric == "val_loss":
            better = value < self.best - self.min_delta
        else:
            better = value > self.best + self.min_delta
        if better:
            self.best, self.best_epoch, self.wait = value, metrics.epoch, 0
            self.best_weights = {k: np.array(v, copy=True) for k, v in model.get_weights().items()}
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = metrics.epoch
            return True
        return False

    def state(self) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """What a checkpoint keeps: the numbers, and the best weights by `best.` names."""
        numbers = {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
        }
        return numbers, {f"best.{k}": v for k, v in (self.best_weights or {}).items()}

    def restore(self, numbers: dict[str, float], arrays: dict[str, np.ndarray]) -> None:
        """Go on from what `state` gave."""
        self.best, self.wait = float(numbers["best"]), int(numbers["wait"])
        self.best_epoch = int(numbers["best_epoch"])
        self.stopped_epoch = int(numbers.get("stopped_epoch", 0))
        weights = {k.removeprefix("best."): v for k, v in arrays.items() if k.startswith("best.")}
        self.best_weights = weights or None
