"""A sweep's jobs compared: the results table, the per-seed summary, as CSV and Markdown.

Plain functions on the jobs as `tracking.sweep.Parent.children` reads them (dicts).
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from typing import Any

from lstm_cli.views.console import PRUNED

IGNORED_FOR_GROUPING = ("seed", "tracking.uri")  # what may differ between repeats of a config
# Ranked by val_accuracy (the validation split chooses); test_accuracy is reported beside it.
COLUMNS = (
    "job",
    "overrides",
    "status",
    "val_accuracy",
    "test_accuracy",
    "val_loss",
    "train_accuracy",
    "best_val_accuracy",
    "train_seconds",
    "pruned_at_epoch",
    "run_id",
    "error",
)


def swept_keys(records: list[dict[str, Any]]) -> set[str]:
    """The override keys whose values differ between the jobs."""
    values: dict[str, set[str]] = defaultdict(set)
    for r in records:
        for override in r["overrides"].split():
            key, _, value = override.partition("=")
            values[key].add(value)
    return {k for k, v in values.items() if len(v) > 1 or len(records) == 1}


def label(overrides: str, keep: set[str], drop: tuple[str, ...] = ()) -> str:
    """A job's overrides limited to the keys in `keep` and not in `drop`."""
    kept = [
        o
        for o in overrides.split()
        if o.partition("=")[0] in keep and o.partition("=")[0] not in drop
    ]
    return " ".join(kept) or "(defaults)"


def status(record: dict[str, Any]) -> str:
    """A job's status in a sweep: its run's, or PRUNED for a point pruning stopped (its run is
    FINISHED, with the tag `pruned_at_epoch`)."""
    if record["status"] == "FINISHED" and record.get("pruned_at_epoch"):
        return PRUNED
    return record["status"]


def results_table(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per job: the finished by val accuracy (best first), then the pruned (by their
    val accuracy where they stopped), then the failed."""
    keys = swept_keys(records)
    rows = []
    for r in records:
        m = r["metrics"]
        rows.append(
            {
                "job": r["job"],
                "overrides": label(r["overrides"], keys),
                "status": status(r),
                **{k: m.get(k, math.nan) for k in COLUMNS[3:9]},
                "pruned_at_epoch": r.get("pruned_at_epoch", ""),
                "run_id": r["run_id"],
                "error": r["error"],
            }
        )
    ranked = []
    for kind in ("FINISHED", PRUNED):
        ranked += sorted((r for r in rows if r["status"] == kind), key=lambda r: -r["val_accuracy"])
    return ranked + [r for r in rows if r["status"] not in ("FINISHED", PRUNED)]


def seed_groups(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration repeated over seeds: n, mean and sample std of the final val accuracy.

    Empty unless some configuration ran with more than one seed. Only finished jobs count.
    """
    keys = swept_keys(records)
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if status(r) == "FINISHED":  # a pruned point's numbers are not its config's
            key = tuple(
                sorted((k, v) for k, v in r["params"].items() if k not in IGNORED_FOR_GROUPING)
            )
            groups[key].append(r)
    if not any(len({r["params"].get("seed") for r in g}) > 1 for g in groups.values()):
        return []
    rows = []
    for members in groups.values():
        values = [r["metrics"]["val_accuracy"] for r in members]
        rows.append(
            {
                "config": label(members[0]["overrides"], keys, drop=IGNORED_FOR_GROUPING),
                "seeds": " ".join(sorted(r["params"].get("seed", "?") for r in members)),
                "n": len(values),
                "val_accuracy_mean": statistics.fmean(values),
                "val_accuracy_std": statistics.stdev(values) if len(values) > 1 else 0.0,
            }
        )
    return sorted(rows, key=lambda r: -r["val_accuracy_mean"])


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else list(COLUMNS))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def to_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no jobs)\n"

    def cell(v: Any) -> str:
        text = f"{v:.4f}" if isinstance(v, float) else str(v)
        return text.replace("|", "\\|")

    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(r[k]) for k in head) + " |" for r in rows]
    return "\n".join(lines) + "\n"
