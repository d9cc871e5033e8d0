"""What mattered in a sweep: how much each swept key explains of the validation number the
sweep selects on, and each key's marginal effect. Plain functions on the jobs as
`tracking.parent_run.Parent.children` reads them (dicts): no store, no terminal, no figure.

The importance is scikit-learn's (a core dependency, so it runs on every install): a random
forest is fitted to the points (each swept key one column, its values as numbers or as codes)
and each key's permutation importance is the mean drop of the forest's R² when that key's
values are shuffled among the points (`sklearn.inspection.permutation_importance`), with its
spread over the shuffles. Optuna's fANOVA evaluator fits the same kind of forest, but optuna is
an optional extra here (hydra-optuna-sweeper pins it below 3).

Which points count: the finished ones. A pruned point's number is of fewer epochs than the
others' (and pruning picked the losers), so it is left out, as a failed one is; the result
says how many were.

The seed is no key that matters: swept to repeat runs, it gets an importance like any key, and
that importance is the noise floor: the R² the forest owes to telling seeds apart, which only
fits noise. A key at or below it is indistinguishable from the seed's noise.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from lstm_cli.config.files import WHERE_KEYS
from lstm_cli.sweeps.summary import PRUNED, status

METRIC = "val_accuracy"  # what a sweep selects on (the validation split); the test split reports
SEED = "seed"  # a key swept only to repeat runs: the floor the others are compared with
MIN_POINTS = 8  # fewer counted points than this: no forest worth fitting
TREES = 200
REPEATS = 20  # shuffles per key
RANDOM_STATE = 0  # the forest and the shuffles: the same points give the same numbers
MAX_LEVELS = 10  # a numeric key with more distinct values (a search's) is binned ...
BINS = 5  # ... into this many quantile bins for its marginal effect
METHOD = (
    "permutation importance of a random forest (scikit-learn): the mean drop in R² when the "
    "key's values are shuffled"
)


@dataclass(frozen=True)
class Points:
    """The points an analysis counts.

    Attributes:
        keys: the swept keys (their values differ between the counted points), `seed` last.
        values: per point, its value (as typed) of each key.
        scores: per point, its `metric`.
        metric: the number explained.
        left_out: how many jobs were not counted, by why (pruned, failed, killed, no metric).
    """

    keys: list[str]
    values: list[dict[str, str]]
    scores: list[float]
    metric: str = METRIC
    left_out: dict[str, int] = field(default_factory=dict)

    @property
    def compared(self) -> list[str]:
        """The keys that may matter: the swept ones but the seed."""
        return [k for k in self.keys if k != SEED]


@dataclass(frozen=True)
class Importance:
    """Each key's importance (`rows`, most important first), or why there is none (`reason`).

    A row: key, importance (mean drop in R²), std (over the shuffles), floor (True for the
    seed's row), below_floor (True for a key at or below the floor), role (what the table
    says of those two: "floor (seed)", "≤ floor" or "").
    """

    rows: list[dict[str, Any]]
    points: int
    metric: str
    left_out: dict[str, int]
    reason: str = ""
    fit_r2: float = math.nan  # the forest's R² on the points it explains

    @property
    def floor(self) -> float | None:
        return next((r["importance"] for r in self.rows if r["floor"]), None)


def _overrides(record: dict[str, Any]) -> dict[str, str]:
    """A job's overrides as {key: value} (a `+key` as `key`), without where it was tracked."""
    pairs = (o.partition("=") for o in record["overrides"].split())
    found = {key.lstrip("+"): value for key, eq, value in pairs if eq}
    return {k: v for k, v in found.items() if k not in WHERE_KEYS}


def _left_out_reason(record: dict[str, Any], metric: str) -> str | None:
    """Why a job is not counted (pruned, failed, killed, ...), or None if it counts."""
    shown = status(record)
    if shown == PRUNED:
        return "pruned"
    if shown != "FINISHED":
        return shown.lower()
    value = record["metrics"].get(metric)
    if value is None or not math.isfinite(value):
        return f"no {metric}"
    return None


def points(records: list[dict[str, Any]], metric: str = METRIC) -> Points:
    """The finished points of a sweep's jobs `records`, with the keys swept among them."""
    counted, left_out = [], defaultdict(int)
    for record in records:
        why = _left_out_reason(record, metric)
        if why is None:
            counted.append(record)
        else:
            left_out[why] += 1
    values = [_overrides(r) for r in counted]
    seen: dict[str, set[str]] = defaultdict(set)
    for point in values:
        for key, value in point.items():
            seen[key].add(value)
    keys = [k for k in dict.fromkeys(k for point in values for k in point) if len(seen[k]) > 1]
    keys = [k for k in keys if k != SEED] + ([SEED] if SEED in keys else [])
    return Points(
        keys=keys,
        values=[{k: point.get(k, "(default)") for k in keys} for point in values],
        scores=[float(r["metrics"][metric]) for r in counted],
        metric=metric,
        left_out=dict(left_out),
    )


def _as_numbers(values: list[str]) -> list[float] | None:
    """The values as numbers, if every one is a finite number."""
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return None
    return numbers if all(math.isfinite(n) for n in numbers) else None


def levels(values: list[str]) -> list[str]:
    """A key's distinct values in the order a reader expects: numbers ascending, other values
    as the sweep first ran them (a glob's order)."""
    distinct = list(dict.fromkeys(values))
    numbers = _as_numbers(distinct)
    if numbers is None:
        return distinct
    return [v for _, v in sorted(zip(numbers, distinct, strict=True))]


def _encoded(pts: Points) -> list[list[float]]:
    """The points as the forest's rows: a number as itself, any other value as its code."""
    columns = []
    for key in pts.keys:
        values = [p[key] for p in pts.values]
        numbers = _as_numbers(values)
        if numbers is None:
            code = {v: float(i) for i, v in enumerate(levels(values))}
            numbers = [code[v] for v in values]
        columns.append(numbers)
    return [list(row) for row in zip(*columns, strict=True)]


def why_none(pts: Points) -> str:
    """Why `pts` gives no importance (one line), or '' if it gives one."""
    counted = f"{len(pts.scores)} finished point(s) counted"
    if pts.left_out:
        counted += " (" + ", ".join(f"{n} {why}" for why, n in sorted(pts.left_out.items())) + ")"
    if not pts.keys:
        return f"no importance: no key is swept among the {counted}"
    if not pts.compared:
        return f"no importance: only seed is swept among the {counted}: nothing to rank above it"
    if len(pts.keys) < 2:
        return (
            f"no importance: one swept key ({pts.keys[0]}); its effect is its marginal effect "
            "(seed_summary: its values across seeds)"
        )
    if len(pts.scores) < MIN_POINTS:
        return f"no importance: {counted}; the forest needs at least {MIN_POINTS}"
    if max(pts.scores) - min(pts.scores) == 0:
        return f"no importance: every counted point has {pts.metric}={pts.scores[0]:.4f}"
    return ""


def importance(pts: Points) -> Importance:
    """Each swept key's permutation importance for `pts.metric` (see the module's docstring)."""
    reason = why_none(pts)
    if reason:
        return Importance([], len(pts.scores), pts.metric, pts.left_out, reason)
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    x, y = _encoded(pts), pts.scores
    forest = RandomForestRegressor(n_estimators=TREES, random_state=RANDOM_STATE, n_jobs=1)
    forest.fit(x, y)
    shuffled = permutation_importance(
        forest, x, y, n_repeats=REPEATS, random_state=RANDOM_STATE, n_jobs=1
    )
    means = [float(v) for v in shuffled.importances_mean]
    floor = means[pts.keys.index(SEED)] if SEED in pts.keys else None
    rows = [
        {
            "key": key,
            "importance": mean,
            "std": float(std),
            "floor": key == SEED,
            "below_floor": floor is not None and key != SEED and mean <= floor,
        }
        for key, mean, std in zip(pts.keys, means, shuffled.importances_std, strict=True)
    ]
    for r in rows:
        r["role"] = "floor (seed)" if r["floor"] else "≤ floor" if r["below_floor"] else ""
    rows.sort(key=lambda r: -r["importance"])
    return Importance(rows, len(y), pts.metric, pts.left_out, fit_r2=float(forest.score(x, y)))


def _bins(values: list[str]) -> dict[str, str]:
    """Each value of a many-valued numeric key -> its quantile bin's label (`lo–hi`)."""
    import numpy as np

    numbers = np.array([float(v) for v in values])
    edges = np.unique(np.quantile(numbers, np.linspace(0, 1, BINS + 1)))
    index = np.clip(np.searchsorted(edges, numbers, side="right") - 1, 0, len(edges) - 2)
    return {v: f"{edges[i]:.3g}–{edges[i + 1]:.3g}" for v, i in zip(values, index, strict=True)}


def marginal_effects(pts: Points) -> list[dict[str, Any]]:
    """Per compared key and per value (a bin, for a numeric key of many values): how many
    points, the mean and the sample std (0 for one point) of `pts.metric`. The seed has none:
    its spread is the floor."""
    rows = []
    for key in pts.compared:
        values = [p[key] for p in pts.values]
        label = {v: v for v in values}
        if len(set(values)) > MAX_LEVELS and _as_numbers(values) is not None:
            label = _bins(values)
        by: dict[str, list[float]] = defaultdict(list)
        for value, score in zip(values, pts.scores, strict=True):
            by[label[value]].append(score)
        order = list(dict.fromkeys(label[v] for v in levels(values)))
        for shown in order:
            scores = by[shown]
            rows.append(
                {
                    "key": key,
                    "value": shown,
                    "n": len(scores),
                    f"{pts.metric}_mean": statistics.fmean(scores),
                    f"{pts.metric}_std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                }
            )
    return rows


def table(result: Importance) -> list[dict[str, Any]]:
    """The importance as the rows of its CSV and Markdown artifacts."""
    return [
        {
            "key": r["key"],
            "importance": r["importance"],
            "std": r["std"],
            "role": r["role"],
        }
        for r in result.rows
    ]


def analyse(records: list[dict[str, Any]]) -> tuple[Importance, list[dict[str, Any]]]:
    """A sweep's jobs -> (each key's importance or why none, each key's marginal effects)."""
    pts = points(records)
    effects = marginal_effects(pts) if len(pts.scores) > 1 else []
    return importance(pts), effects
