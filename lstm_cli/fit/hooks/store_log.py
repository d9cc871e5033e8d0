"""Logging every epoch's metrics to the store, the values it lacks only (a replayed epoch)."""

from __future__ import annotations

from collections.abc import Callable

from lstm_cli.fit.hooks.base import Hook


class StoreLog(Hook):
    """Hand each epoch's metrics to `log(values, epoch)` (a run's `log_epoch`), leaving out
    those whose epoch is in `logged` already (by metric name): a run going on after a stop
    replays its epochs and keeps one value per step."""

    def __init__(
        self, log: Callable[[dict[str, float], int], None], logged: dict[str, set[int]]
    ) -> None:
        self.log = log
        self.logged = logged

    def on_epoch_end(self, loop, metrics) -> None:
        values = metrics.as_dict()
        missing = {k: v for k, v in values.items() if metrics.epoch not in self.logged.get(k, ())}
        self.log(missing, metrics.epoch)
