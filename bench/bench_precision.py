"""precision=bf16 against fp32: a real `lstm-digits train` run of each, its time and accuracy.

    python bench/bench_precision.py                         # the default experiment, seeds 1-3
    python bench/bench_precision.py --seeds 1 2 --overrides hidden_size=200 epochs=30

Each round runs `lstm-digits train precision=P seed=S OVERRIDES` for fp32 and bf16 in turn, each
in a fresh process and a temporary store, and reads back what the run logged: `train_seconds`,
`best_val_accuracy` (the split runs are chosen on) and `test_accuracy` (the split reported).
Where the CPU lacks bfloat16 instructions the CLI refuses precision=bf16; this bench then lets
the run through (its process patches `hardware.has_bf16`) and TensorFlow emulates the bfloat16
matmuls: the accuracy is bf16's (rounding is the same whoever computes it), the time is not
the opt-in's and is marked "emulated".
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lstm_cli.runtime import hardware  # noqa: E402 (reads /proc/cpuinfo; imports no TensorFlow)

# The CLI in this process, with bfloat16 let through where the CPU would emulate it.
EMULATED_CLI = (
    "import sys; from lstm_cli.runtime import hardware; hardware.has_bf16 = lambda *a: True; "
    "sys.argv[0] = 'lstm-digits'; from lstm_cli.commands.app import main; main()"
)


def run(store: Path, precision: str, seed: int, overrides: list[str]) -> None:
    args = ["train", f"precision={precision}", f"seed={seed}", *overrides]
    if precision == "bf16" and not hardware.has_bf16():
        cmd = [sys.executable, "-c", EMULATED_CLI, *args]
    else:
        cmd = [sys.executable, "-m", "lstm_cli", *args]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"}
    subprocess.run(cmd, cwd=store, env=env, check=True, stdout=subprocess.DEVNULL)


def results(store: Path) -> dict[str, list[dict[str, float]]]:
    """Each precision's runs: their seed and what they logged."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    by_precision: dict[str, list[dict[str, float]]] = {}
    for experiment in client.search_experiments():
        for r in client.search_runs([experiment.experiment_id]):
            figures = {"seed": float(r.data.params["seed"]), **r.data.metrics}
            by_precision.setdefault(r.data.params["precision"], []).append(figures)
    return by_precision


def report(by_precision: dict[str, list[dict[str, float]]]) -> None:
    native = hardware.has_bf16()
    print(f"bfloat16 instructions on this CPU: {'yes' if native else 'no (bf16 emulated)'}")
    print(
        f"{'precision':10s} {'train s (median)':>17s} {'best val acc':>13s} {'test acc':>9s}"
        "  test acc by seed"
    )
    for precision, runs in sorted(by_precision.items(), reverse=True):  # fp32 first
        runs.sort(key=lambda r: r["seed"])
        seconds = statistics.median(r["train_seconds"] for r in runs)
        val = statistics.mean(r["best_val_accuracy"] for r in runs)
        test = statistics.mean(r["test_accuracy"] for r in runs)
        each = " ".join(f"{int(r['seed'])}:{r['test_accuracy']:.4f}" for r in runs)
        note = " (emulated)" if precision == "bf16" and not native else ""
        print(
            f"{precision:10s} {seconds:16.1f}{'*' if note else ' '} {val:13.4f} {test:9.4f}"
            f"  {each}{note}"
        )
    if not native:
        print("* not the speed of bf16 on a CPU with avx512_bf16 or amx_bf16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--overrides", nargs="*", default=[], help="more `train` overrides")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        store = Path(tmp)
        for seed in args.seeds:  # rounds: the precisions alternate
            for precision in args.precisions:
                print(f"seed {seed}: {precision} ...", flush=True)
                run(store, precision, seed, args.overrides)
        report(results(store))


if __name__ == "__main__":
    main()
