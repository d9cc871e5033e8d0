"""Wall time of a 4-job sweep: one job after another (basic launcher) vs 2 joblib workers.

    make bench-sweep                      # the default 100-epoch jobs
    python bench/bench_sweep.py --epochs 30 --json sweep.json

Each variant is a real `lstm-digits train -m ...` in a fresh temporary store and working
directory, timed from the outside, so process start-up and MLflow logging count too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

CLI = str(Path(sys.executable).with_name("lstm-digits"))
GRID = "hidden_size=25,50,75,100"
TARGET = 0.75  # parallel wall time at most this fraction of the sequential one


def time_sweep(extra: list[str], epochs: int) -> float:
    """Seconds for `lstm-digits train -m GRID epochs=E EXTRA` in a fresh directory."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        cmd = [CLI, "train", "-m", GRID, f"epochs={epochs}", f"tracking.uri=sqlite:///{tmp}/m.db"]
        start = time.perf_counter()
        done = subprocess.run([*cmd, *extra], cwd=tmp, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"sweep failed: {' '.join(cmd + extra)}\n{done.stderr}")
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100, help="epochs per job (default 100)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()

    sequential = time_sweep([], args.epochs)
    parallel = time_sweep(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], args.epochs)
    ratio = parallel / sequential

    table = Table(title=f"4-job sweep ({GRID}, {args.epochs} epochs), {os.cpu_count()} cores")
    for column in ("launcher", "wall seconds"):
        table.add_column(column)
    table.add_row("basic (one job after another)", f"{sequential:.1f}")
    table.add_row("joblib, n_jobs=2", f"{parallel:.1f}")
    console = Console()
    console.print(table)
    verdict = "PASS" if ratio <= TARGET else "MISS"
    console.print(f"parallel / sequential = {ratio:.2f} (target <= {TARGET}): {verdict}")
    if args.json:
        figures = {"epochs": args.epochs, "sequential_s": sequential, "parallel_s": parallel}
        args.json.write_text(json.dumps({**figures, "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
