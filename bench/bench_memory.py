"""A sweep worker's memory over many jobs: does what a process keeps between jobs stay flat?

    make bench-sweep ARGS="--part memory"                  # 120 jobs, epochs=5 hidden_size=8
    python bench/bench_sweep.py --part memory --jobs 200

Two sweeps of `--jobs` small points (`seed=range(...)`), their plain output read line by
line; at each job's end ("[job N] done"), resident memory (VmRSS in /proc):
- in one process (the basic launcher: every job in the command's own process, as a packed
  SLURM job runs its points): that process's;
- on 2 joblib workers: each worker's (the command's descendants that run jobs), each taken as
  doing every other job.
Reported: the RSS after job 10 and after the last, and the growth per job after the first 10
(a least-squares slope; a worker's over its own jobs). Goal: under 0.1 MB a job (a
1000-point sweep would then add under 100 MB).
"""

from __future__ import annotations

import argparse
import contextlib
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


def descendants(pid: int) -> list[int]:
    """Every process under `pid` (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _sweep(args, command, root: Path, launcher: list[str]) -> tuple[list[float], dict]:
    """One sweep: the command's RSS at each job's end, and each descendant's."""
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        sweep = [
            f"seed=range(1,{args.jobs + 1})",
            "epochs=5",
            "hidden_size=8",
            f"tracking.uri=sqlite:///{tmp}/m.db",
            *launcher,
        ]
        cmd, env = command(root, ["train", "-m", *sweep])
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, text=True)
        own: list[float] = []
        others: dict[int, list[float]] = {}
        for line in proc.stdout:
            if DONE.match(line):
                own.append(rss_mb(proc.pid))
                for pid in descendants(proc.pid):
                    with contextlib.suppress(OSError, RuntimeError):
                        others.setdefault(pid, []).append(rss_mb(pid))
        if proc.wait() != 0 or len(own) != args.jobs:
            raise SystemExit(f"the sweep failed ({len(own)} of {args.jobs} jobs done)")
    return own, others


def memory_part(args: argparse.Namespace, command, root: Path, console: Console) -> dict:
    """The in-process sweep, then the joblib one; RSS and growth per job of each."""
    own, _ = _sweep(args, command, root, ["hydra/launcher=basic"])
    growth = slope(own[WARM:])
    console.print(
        f"{args.jobs} jobs in one process (epochs=5 hidden_size=8): RSS after job "
        f"{WARM} {own[WARM - 1]:.1f} MB, after job {args.jobs} {own[-1]:.1f} MB; "
        f"growth after the first {WARM}: {growth:.3f} MB a job (goal < {GOAL_MB}): "
        f"{'PASS' if growth < GOAL_MB else 'MISS'}"
    )
    _, others = _sweep(args, command, root, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    # The workers: the descendants seen at every job's end and using memory (not the fork
    # server, which runs no job: its RSS does not move).
    workers = {p: v for p, v in others.items() if len(v) > 2 * WARM and max(v) - min(v) > 1}
    growths = {p: slope(v[2 * WARM :]) * 2 for p, v in workers.items()}  # every other job
    for pid, g in growths.items():
        v = workers[pid]
        console.print(
            f"joblib worker {pid}: RSS {v[2 * WARM - 1]:.1f} MB after ~{WARM} of its "
            f"jobs, {v[-1]:.1f} MB at the end; growth {g:.3f} MB a job: "
            f"{'PASS' if g < GOAL_MB else 'MISS'}"
        )
    return {"rss_mb": own, "growth_mb_per_job": growth, "worker_growth_mb_per_job": growths}
