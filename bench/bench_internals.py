"""What each use of a library's internals buys (see `lstm_cli/runtime/internals.py`), end to end.

Each variant switches one of them off in the command's own process (a patch made before the
CLI starts), and is timed against the command with all of them on, interleaved (A B C ... A B
C ...), each run in a fresh temporary directory and store. Reported: medians, and each
variant's median minus the baseline's (what the use buys, in seconds of the command).

    python bench/bench_internals.py                   # a single run and a 4-job joblib sweep
    python bench/bench_internals.py --what train --repeats 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

# What is timed: `lstm-digits ARGS` (a short run, so that fixed costs show).
COMMANDS = {
    "train": ["train", "experiment=debug", "tracking.log_model=true"],
    "sweep": ["train", "-m", "experiment=debug", "seed=1,2,3,4", "hydra/launcher=joblib"],
}
# Per command: variant -> Python run before the CLI starts (one use switched off).
VARIANTS = {
    "train": {
        "all on": "",
        "model checks run": "import contextlib; internals.without_model_checks = "
        "contextlib.nullcontext",
        "interpreter teardown": "internals.finish = lambda code: sys.exit(code)",
        "store from migrations": "internals.copy_store_template = lambda template, path: False",
    },
    "sweep": {
        "all on": "",
        "no warm-up, loky's own workers": "internals.warm_up_workers = lambda launcher: None",
        "warm-up without fork server": "internals._start_fork_server = lambda workers: None",
    },
}


def command(patch: str, args: list[str]) -> list[str]:
    code = (
        f"import sys; from lstm_cli.runtime import internals\n{patch}\n"
        "from lstm_cli.commands.app import main; sys.argv[0] = 'lstm-digits'; main()"
    )
    return [sys.executable, "-c", code, *args]


def time_run(cmd: list[str]) -> float:
    """Seconds `cmd` takes, start to exit, in a fresh directory and store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"tracking.uri=sqlite:///{tmp}/mlflow.db"
        start = time.perf_counter()
        done = subprocess.run([*cmd, uri], cwd=tmp, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"bench_internals: {' '.join(cmd[3:])} failed:\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", nargs="+", choices=list(COMMANDS), default=list(COMMANDS))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for what in args.what:
        variants = VARIANTS[what]
        times: dict[str, list[float]] = {name: [] for name in variants}
        time_run(command("", COMMANDS[what]))  # warm the caches (the store template included)
        for _ in range(args.repeats):
            for name, patch in variants.items():
                times[name].append(time_run(command(patch, COMMANDS[what])))
        base = statistics.median(times["all on"])
        print(
            f"\n{what}: lstm-digits {' '.join(COMMANDS[what])}  ({args.repeats} interleaved "
            "runs each; medians)"
        )
        for name, values in times.items():
            median = statistics.median(values)
            buys = "" if name == "all on" else f"  buys {median - base:+.2f} s"
            runs = " ".join(f"{v:.2f}" for v in values)
            print(f"  {name:32s} {median:6.2f} s{buys}   ({runs})")


if __name__ == "__main__":
    main()
