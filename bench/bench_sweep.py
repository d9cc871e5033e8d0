"""Wall time of a sweep (4 jobs by default): one job after another (basic launcher) vs 2 joblib
workers.

    make bench-sweep                      # the default 100-epoch jobs, 3 runs of each
    python bench/bench_sweep.py --epochs 30 --repeats 5 --json sweep.json
    python bench/bench_sweep.py --grid hidden_size=75 seed=1,2,3,4     # 4 equal jobs

Each variant is a real `lstm-digits train -m ...` in a fresh temporary store and working
directory, timed from the outside, so process start-up and MLflow logging count too. The two
variants alternate (AB BA AB ...), so that a slow spell of the machine hits both; the ratio is
of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

CLI = str(Path(sys.executable).with_name("lstm-digits"))
GRID = ["hidden_size=25,50,75,100"]  # the sweep's overrides
TARGET = 0.75  # parallel wall time at most this fraction of the sequential one


def time_sweep(grid: list[str], extra: list[str], epochs: int) -> float:
    """Seconds for `lstm-digits train -m GRID epochs=E EXTRA` in a fresh directory."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        cmd = [CLI, "train", "-m", *grid, f"epochs={epochs}", f"tracking.uri=sqlite:///{tmp}/m.db"]
        start = time.perf_counter()
        done = subprocess.run([*cmd, *extra], cwd=tmp, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"sweep failed: {' '.join(cmd + extra)}\n{done.stderr}")
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100, help="epochs per job (default 100)")
    parser.add_argument("--grid", nargs="+", default=GRID, help=f"the sweep (default {GRID[0]})")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()

    variants = {
        "basic (one job after another)": [],
        "joblib, n_jobs=2": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        order = list(variants.items())
        for name, extra in order[:: -1 if repeat % 2 else 1]:
            seconds[name].append(time_sweep(args.grid, extra, args.epochs))
    sequential, parallel = (statistics.median(s) for s in seconds.values())
    ratio = parallel / sequential

    title = f"Sweep {' '.join(args.grid)}, {args.epochs} epochs, {os.cpu_count()} cores"
    table = Table(title=title)
    for column in ("launcher", "median s", "min–max s", "runs"):
        table.add_column(column)
    for name, samples in seconds.items():
        spread = f"{min(samples):.1f}–{max(samples):.1f}"
        table.add_row(name, f"{statistics.median(samples):.1f}", spread, str(len(samples)))
    console = Console()
    console.print(table)
    ratios = sorted(p / s for s, p in zip(*seconds.values(), strict=True))
    verdict = "PASS" if ratio <= TARGET else "MISS"
    console.print(f"parallel / sequential (medians) = {ratio:.2f} (target <= {TARGET}): {verdict}")
    console.print(f"per pair of runs: {' '.join(f'{r:.2f}' for r in ratios)}")
    if args.json:
        figures = {"grid": args.grid, "epochs": args.epochs, "seconds": seconds}
        figures["ratio_of_medians"] = ratio
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
