"""The training loop: epochs, and hooks for everything else.

    loop = fit(trainer, data, epochs, hooks)
        hook.on_start(loop)               each hook, in the list's order
        for each epoch left:
            metrics = trainer.epoch(...)  one compiled call (`fit.trainer`)
            hook.on_epoch_end(loop, metrics)
            stop there if a hook called loop.stop(reason)
        hook.on_stop(loop)                if a hook stopped it
        hook.on_end(loop)

The loop knows no store, no terminal and no signal: each side concern is a hook
(`fit.hooks`), and the order of a run's hooks is one list (`jobs.run.hooks`). A notebook calls
`fit` with hooks of its own, or none. An exception a hook raises (a diverged loss, a stop at
once) ends the loop where it is: no later hook runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lstm_cli.data.digits import Digits
    from lstm_cli.fit.hooks.base import Hook
    from lstm_cli.fit.trainer import EpochMetrics, Trainer


@dataclass
class Loop:
    """A training under way, as the hooks see it.

    Attributes:
        trainer: what trains (its model, its state).
        epochs: the last epoch to train.
        history: every epoch's metrics so far, a resumed run's stored ones first.
        stopped_by: why a hook stopped it early (None: it was not).
    """

    trainer: Trainer
    epochs: int
    history: list[EpochMetrics] = field(default_factory=list)
    stopped_by: str | None = None

    @property
    def last_epoch(self) -> int:
        """The last epoch trained (0 before the first)."""
        return self.history[-1].epoch if self.history else 0

    def stop(self, reason: str) -> None:
        """End the training after this epoch (the hooks after the caller still see it)."""
        self.stopped_by = self.stopped_by or reason


def fit(
    trainer: Trainer,
    data: Digits,
    epochs: int,
    hooks: Sequence[Hook] = (),
    first_epoch: int = 1,
    history: Sequence[EpochMetrics] = (),
) -> Loop:
    """Train epochs `first_epoch`..`epochs` of `data` with `trainer`, calling `hooks` at each
    point; `history`: the epochs before `first_epoch` (a resumed run's). Returns the loop."""
    loop = Loop(trainer, epochs, list(history))
    for hook in hooks:
        hook.on_start(loop)
    for epoch in range(first_epoch, epochs + 1):
        metrics = trainer.epoch(epoch, data)
        loop.history.append(metrics)
        for hook in hooks:
            hook.on_epoch_end(loop, metrics)
        if loop.stopped_by is not None:
            break
    if loop.stopped_by is not None:
        for hook in hooks:
            hook.on_stop(loop)
    for hook in hooks:
        hook.on_end(loop)
    return loop
