"""What pruning buys a sweep: a 36-point grid with prune=none, median and asha.

    make bench-sweep                                          # 2 joblib workers, 3 runs each
    make cluster-up && make bench-sweep ARGS="--part pruning --launcher slurm --repeats 1"

The grid is hidden_size (25, 50, 100) x learning_rate (3e-5, 1e-3, 1e-2) x output_activation
(tanh, linear, sigmoid, relu), at the default 100 epochs: a third of its points (3e-5) are
hopeless. For each variant, from the store afterwards: the **epochs trained** (summed over the
points), the **wall time** of the whole `lstm-digits train -m` command, the **best val
accuracy** (the point the sweep's summary picks, on the validation split) and **that point's
test accuracy** (the test split, never used to choose). Variants alternate in order from run to
run (none, median, asha, then asha, median, none ...); figures are medians, and the ratios are
of medians against prune=none.

Goal for asha: at most 0.4 of the full grid's epochs and 0.5 of its wall time, and a best
point whose test accuracy is within 0.5 points of the full grid's best point's.
With parallel workers, which points are pruned depends on the order they reach each rung:
asha's figures vary from run to run, the full grid's do not.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

from mlflow.tracking import MlflowClient
from rich.console import Console
from rich.table import Table

GRID = [
    "hidden_size=25,50,100",
    "learning_rate=3e-5,1e-3,1e-2",
    "output_activation=tanh,linear,sigmoid,relu",
]
VARIANTS = ("none", "median", "asha")
EPOCHS_TARGET, WALL_TARGET, TEST_POINTS = 0.4, 0.5, 0.5  # asha against prune=none
LAUNCHERS = {
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    # 2 one-core SLURM jobs at a time on this machine, 6 points per job (6 jobs).
    "slurm": [
        "hydra/launcher=slurm",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.points_per_task=6",
    ],
}


def measure(run_sweep, launcher: str, prune: str, uri: str | None) -> dict[str, float]:
    """One sweep of the grid with `prune` (run by bench_sweep's `run_sweep`), read back."""
    experiment = f"bench-pruning-{time.time_ns()}"
    args = [*GRID, *LAUNCHERS[launcher], f"prune={prune}", f"tracking.experiment={experiment}"]
    _, wall, db = run_sweep(Path(__file__).resolve().parent.parent, args, uri)
    store = uri or f"sqlite:///{db}"
    try:
        client = MlflowClient(store)
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id], max_results=1000)
        (parent,) = [r for r in runs if r.data.tags.get("lstm_digits.sweep") == "parent"]
        children = [r for r in runs if r is not parent]
        epochs = sum(
            max(m.step for m in client.get_metric_history(c.info.run_id, "val_accuracy"))
            for c in children
        )
        best = client.get_run(parent.data.tags["best_run_id"])
    finally:
        subprocess.run(["rm", "-rf", str(db.parent)], check=False)
    return {
        "points": len(children),
        "pruned": sum("pruned_at_epoch" in c.data.tags for c in children),
        "epochs": epochs,
        "wall_s": wall,
        "best_val_accuracy": best.data.metrics["val_accuracy"],
        "best_test_accuracy": best.data.metrics["test_accuracy"],
    }


def pruning_part(args: argparse.Namespace, run_sweep, uri: str | None, console: Console) -> dict:
    """Every variant `args.repeats` times, interleaved; the table and the verdict."""
    samples: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for repeat in range(args.repeats):
        for prune in VARIANTS[:: -1 if repeat % 2 else 1]:
            samples[prune].append(measure(run_sweep, args.launcher, prune, uri))
            console.print(f"run {repeat + 1} prune={prune}: {samples[prune][-1]}")
    medians = {
        v: {k: statistics.median(s[k] for s in runs) for k in runs[0]}
        for v, runs in samples.items()
    }
    full = medians["none"]
    table = Table(
        title=f"36-point grid, {args.launcher} ({' '.join(LAUNCHERS[args.launcher])}), "
        f"medians of {args.repeats}"
    )
    for column in (
        "prune",
        "pruned",
        "epochs",
        "of full",
        "wall s",
        "of full",
        "best val",
        "its test",
    ):
        table.add_column(column, justify="right")
    for prune, m in medians.items():
        table.add_row(
            prune,
            f"{m['pruned']:.0f}",
            f"{m['epochs']:.0f}",
            f"{m['epochs'] / full['epochs']:.2f}",
            f"{m['wall_s']:.1f}",
            f"{m['wall_s'] / full['wall_s']:.2f}",
            f"{m['best_val_accuracy']:.4f}",
            f"{m['best_test_accuracy']:.4f}",
        )
    console.print(table)
    asha = medians["asha"]
    worst_test = min(s["best_test_accuracy"] for s in samples["asha"])
    for label, value, ok in (
        (
            f"asha epochs / full <= {EPOCHS_TARGET}",
            asha["epochs"] / full["epochs"],
            asha["epochs"] / full["epochs"] <= EPOCHS_TARGET,
        ),
        (
            f"asha wall / full <= {WALL_TARGET}",
            asha["wall_s"] / full["wall_s"],
            asha["wall_s"] / full["wall_s"] <= WALL_TARGET,
        ),
        (
            f"full best's test - asha best's test (worst run) <= {TEST_POINTS} points",
            100 * (full["best_test_accuracy"] - worst_test),
            100 * (full["best_test_accuracy"] - worst_test) <= TEST_POINTS,
        ),
    ):
        console.print(f"{label}: {value:.3f}: {'PASS' if ok else 'MISS'}")
    return {"samples": samples, "medians": medians}
