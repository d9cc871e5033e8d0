"""A sweep worker's memory over many jobs: does what a process keeps between jobs stay flat?

    make bench-sweep ARGS="--part memory"                  # 120 jobs, epochs=5 hidden_size=8
    python bench/bench_sweep.py --part memory --jobs 200

One in-process sweep (the basic launcher: every job in the command's own process, as a
joblib worker or a packed SLURM job runs its jobs) of `--jobs` small points
(`seed=range(...)`), its plain output read line by line: at each job's end ("[job N] done"),
the process's resident memory (VmRSS in /proc). Reported: the RSS after job 10 and after the
last, and the growth per job after the first 10 (a least-squares slope). Goal: under 0.1 MB a
job (a 1000-point sweep would then add under 100 MB).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import tempfile
from pathlib import Path

from rich.console import Console

GOAL_MB = 0.1  # growth per job after the first 10
WARM = 10
DONE = re.compile(r"^\[job (\d+)\] done")


def rss_mb(pid: int) -> float:
    """A process's resident memory in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def slope(values: list[float]) -> float:
    """The least-squares growth per step of `values`."""
    xs = range(len(values))
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(values)
    num = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, values, strict=True))
    return num / sum((x - mean_x) ** 2 for x in xs)


def memory_part(args: argparse.Namespace, command, root: Path, console: Console) -> dict:
    """One sweep of `args.jobs` jobs in one process; its RSS at every job's end."""
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        sweep = [f"seed=range(1,{args.jobs + 1})", "epochs=5", "hidden_size=8",
                 f"tracking.uri=sqlite:///{tmp}/m.db", "hydra/launcher=basic"]  # fmt: skip
        cmd, env = command(root, ["train", "-m", *sweep])
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, text=True)
        samples: list[float] = []
        for line in proc.stdout:
            if DONE.match(line):
                samples.append(rss_mb(proc.pid))
        if proc.wait() != 0 or len(samples) != args.jobs:
            raise SystemExit(f"the sweep failed ({len(samples)} of {args.jobs} jobs done)")
    growth = slope(samples[WARM:])
    console.print(f"{args.jobs} jobs in one process (epochs=5 hidden_size=8): RSS after job "
                  f"{WARM} {samples[WARM - 1]:.1f} MB, after job {args.jobs} "
                  f"{samples[-1]:.1f} MB; growth after the first {WARM}: "
                  f"{growth:.3f} MB a job (goal < {GOAL_MB}): "
                  f"{'PASS' if growth < GOAL_MB else 'MISS'}")  # fmt: skip
    return {"rss_mb": samples, "growth_mb_per_job": growth}
