"""Ctrl-C, SIGTERM or a scheduler's warning, asked for while an epoch trains: the training ends
at the epoch's end (the checkpoint hook then saves it), and the run ends KILLED."""

from __future__ import annotations

from lstm_cli.fit.hooks.base import Hook
from lstm_cli.runtime import signals

STOP_REQUESTED = "stop requested"  # `Loop.stopped_by` when a signal asked for the stop


class StopRequests(Hook):
    """Stop the loop after an epoch during which a stop was asked for (`signals.requested`)."""

    def on_epoch_end(self, loop, metrics) -> None:
        if signals.requested() is not None:
            loop.stop(STOP_REQUESTED)
