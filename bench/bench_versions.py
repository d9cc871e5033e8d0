"""This checkout against an earlier commit, end to end, as ratios of medians of interleaved runs.

    make bench-versions BASE=HEAD~3     # the default run, a 4-job sweep, the same on joblib
    python bench/bench_versions.py --base main --what train --repeats 7

The earlier commit is checked out in a temporary worktree and run with this project's
installed dependencies (`PYTHONPATH` points each run at its own tree, so joblib's workers and
submitit's jobs import the same code). The two trees alternate (AB BA AB ...), so a slow spell
of the machine hits both; each command runs in a fresh temporary store and directory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {  # what is timed: `lstm-digits ARGS`
    "train": ["train"],  # the default experiment (the article's run)
    "sweep": ["train", "-m", "hidden_size=25,50,75,100"],  # one job after another
    "sweep-joblib": ["train", "-m", "hidden_size=25,50,75,100", "hydra/launcher=joblib"],
    "sweep16-joblib": ["train", "-m", "seed=range(1,17)", "hydra/launcher=joblib"],  # 16 jobs
}


def command(tree: Path, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """`lstm-digits ARGS` run from `tree`'s code: the command line and its environment (no
    MLflow settings of the user's but their credentials, for a server that asks; `PYTHONPATH`
    at the tree, so every process of it, joblib's workers and submitit's jobs too, imports that
    tree). The tree's own `python -m lstm_cli` (every tree since 2026-11-27) calls its console
    script's function, wherever that lives (`lstm_cli.commands.app`; `lstm_cli.cli` before
    2026-12-07)."""
    credentials = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") or k in credentials}
    env["PYTHONPATH"] = str(tree)
    code = (
        "import runpy, sys; sys.argv[0] = 'lstm-digits'; "
        "runpy.run_module('lstm_cli', run_name='__main__')"
    )
    return [sys.executable, "-c", code, *args], env


@contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """Commit `rev` of this repository in a temporary worktree."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "base"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), rev],
            check=True,
        )
        try:
            yield tree
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False
            )


def time_run(cmd: list[str], env: dict[str, str], cwd: Path | str) -> float:
    """Seconds `cmd` takes, start to exit; the bench stops if it fails."""
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr}")
    return seconds


def time_command(tree: Path, args: list[str]) -> float:
    """Seconds for `lstm-digits ARGS` run from `tree`'s code, in a fresh directory."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd, env = command(tree, [*args, f"tracking.uri=sqlite:///{tmp}/m.db"])
        return time_run(cmd, env, tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the earlier commit (any git revision)")
    parser.add_argument("--what", nargs="+", choices=list(COMMANDS), default=list(COMMANDS))
    parser.add_argument("--repeats", type=int, default=5, help="runs of each tree (default 5)")
    args = parser.parse_args()

    with checkout(args.base) as base:
        trees = {"base": base, "this": ROOT}
        for what in args.what:
            seconds: dict[str, list[float]] = {name: [] for name in trees}
            for repeat in range(args.repeats):
                order = list(trees.items())[:: -1 if repeat % 2 else 1]
                for name, tree in order:
                    seconds[name].append(time_command(tree, COMMANDS[what]))
            medians = {name: statistics.median(s) for name, s in seconds.items()}
            print(f"{what}: lstm-digits {' '.join(COMMANDS[what])}")
            for name, samples in seconds.items():
                runs = " ".join(f"{s:.2f}" for s in samples)
                print(f"  {name:5s} median {medians[name]:.2f} s  ({runs})")
            print(f"  this / base (medians) = {medians['this'] / medians['base']:.3f}")


if __name__ == "__main__":
    main()
