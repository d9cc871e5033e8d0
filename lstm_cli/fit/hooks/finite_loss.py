"""The finite-loss check: a loss that became NaN or infinite ends the training at once, before
any later hook (early stopping, pruning, a checkpoint) acts on the diverged weights."""

from __future__ import annotations

import math
from collections.abc import Callable

from lstm_cli.fit.hooks.base import Hook
from lstm_cli.runtime.errors import Diverged


class FiniteLoss(Hook):
    """Raise `Diverged` after an epoch whose training or validation loss is not finite, first
    telling `diverged(epoch)` (a run tags itself, so that `resume` refuses it)."""

    def __init__(self, learning_rate: float, diverged: Callable[[int], None] | None = None):
        self.learning_rate = learning_rate
        self.diverged = diverged

    def on_epoch_end(self, loop, metrics) -> None:
        if math.isfinite(metrics.train_loss) and math.isfinite(metrics.val_loss):
            return
        if self.diverged is not None:
            self.diverged(metrics.epoch)
        raise Diverged(metrics.epoch, self.learning_rate)
