"""A hook: one side concern of training, called by the loop (`fit.loop.fit`) at its points.

    on_start(loop)              before the first epoch to train
    on_epoch_end(loop, metrics) after each epoch; `loop.stop(reason)` ends the training there
    on_stop(loop)               after the epoch where a hook stopped it
    on_end(loop)                after the last epoch (not after an exception)

Compare Keras's `Callback` and Lightning's: the loop stays a loop. A hook does nothing at a
point it does not override.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lstm_cli.fit.loop import Loop
    from lstm_cli.fit.trainer import EpochMetrics


class Hook:
    """The points a hook may act at; each does nothing here."""

    def on_start(self, loop: Loop) -> None:
        """Before the first epoch to train."""

    def on_epoch_end(self, loop: Loop, metrics: EpochMetrics) -> None:
        """After each epoch, with its metrics."""

    def on_stop(self, loop: Loop) -> None:
        """After the epoch where a hook stopped the training early."""

    def on_end(self, loop: Loop) -> None:
        """After the last epoch, stopped early or not."""
