"""Showing each epoch as it ends (a bar or plain lines: `views.console.epoch_progress`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lstm_cli.fit.hooks.base import Hook


class Progress(Hook):
    """Call `show(metrics)` after each epoch."""

    def __init__(self, show: Callable[[Any], None]) -> None:
        self.show = show

    def on_epoch_end(self, loop, metrics) -> None:
        self.show(metrics)
