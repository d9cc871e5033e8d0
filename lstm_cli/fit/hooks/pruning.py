"""Pruning a sweep's losing points: the rungs, the two rules, and a point's decision at a rung.

A point decides alone, at its rung epochs only (grace_epochs * reduction_factor^i), from what
the other points of its sweep have recorded in the tracking store: each point records its
validation number at every rung it reaches (the metric `rung/<epoch>/<metric>`), and reads the
others' with one search. So it works whatever runs the points (the basic, joblib or SLURM
launcher, packed points, optuna) and wherever the store is (SQLite, a server); between rungs
it costs nothing.

- `median`: stop if worse than the median of the other points recorded at that rung.
- `asha` (asynchronous successive halving, as Ray Tune's ASHA): go on only if in the top
  1/reduction_factor of the points recorded at that rung so far, this one included.

With points running side by side, which ones are pruned depends on the order they reach each
rung: the first point of a sweep has no one to lose against. A store that cannot be read at a
rung never stops a point.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

from lstm_cli.fit.hooks.base import Hook

NONE, MEDIAN, ASHA = "none", "median", "asha"  # `prune.kind` (lstm_cli.config.choices.Pruning)
PRUNED = "pruned"  # `Loop.stopped_by` when pruning stopped the point


def rung_key(metric: str, epoch: int) -> str:
    """The metric a point records its `metric` under at rung `epoch` (the UI groups them)."""
    return f"rung/{epoch}/{metric}"


def rungs(grace_epochs: int, reduction_factor: int, epochs: int) -> list[int]:
    """The epochs where a point may be stopped: grace * factor^i, before its last epoch."""
    out, epoch = [], grace_epochs
    while epoch < epochs:
        out.append(epoch)
        epoch *= reduction_factor
    return out


def keeps(
    kind: str, value: float, others: list[float], reduction_factor: int, lower_is_better: bool
) -> bool:
    """Whether a point with `value` at a rung goes on, against the `others` recorded there."""
    sign = -1.0 if lower_is_better else 1.0  # compared as "higher is better"
    mine = sign * value
    theirs = [sign * v for v in others if math.isfinite(v)]
    if not theirs:
        return True  # nobody to lose against (the first point to reach the rung)
    if not math.isfinite(mine):
        return False  # a diverged point (NaN loss) loses against any recorded one
    if kind == MEDIAN:
        return mine >= statistics.median(theirs)
    import numpy as np  # not at import: the CLI reads TAG before it needs numbers

    cutoff = np.percentile([*theirs, mine], (1 - 1 / reduction_factor) * 100)  # linear, as Ray
    return bool(mine >= cutoff)


class Pruner(Hook):
    """One point's pruning: `decide(epoch, value)` after every epoch, stopping the loop at a
    rung where the point loses.

    Args:
        kind, metric, grace_epochs, reduction_factor: the config's `prune`.
        epochs: the point's epochs (no rung at or after the last).
        read: rung key -> (this point's recorded value or None, the other points' values);
            it may raise (the store is away): the point then goes on.
        record: (rung key, value, epoch) -> None, this point's value into the store.
    """

    def __init__(
        self,
        kind: str,
        metric: str,
        grace_epochs: int,
        reduction_factor: int,
        epochs: int,
        read: Callable[[str], tuple[float | None, list[float]]],
        record: Callable[[str, float, int], None],
    ) -> None:
        self.kind, self.metric, self.factor = kind, metric, reduction_factor
        self.rungs = set(rungs(grace_epochs, reduction_factor, epochs))
        self._read, self._record = read, record
        self.pruned_at: int | None = None

    def on_epoch_end(self, loop, metrics) -> None:
        if self.decide(metrics.epoch, getattr(metrics, self.metric)):
            loop.stop(PRUNED)

    def decide(self, epoch: int, value: float) -> bool:
        """Whether the point stops after `epoch`, where its metric was `value`."""
        if epoch not in self.rungs:
            return False
        key = rung_key(self.metric, epoch)
        try:
            mine, others = self._read(key)
        except Exception:
            mine, others = None, []
        if mine is None:  # recorded by an attempt before a stop (resume, requeue): once only
            self._record(key, value, epoch)
        if keeps(self.kind, value, others, self.factor, self.metric == "val_loss"):
            return False
        self.pruned_at = epoch
        return True
