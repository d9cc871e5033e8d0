"""Every cell on rows and on pixels: its loop against its own floor, and its test accuracy.

    make bench                                      # also runs this, after bench_floor.py
    python bench/bench_cells.py                     # hidden 50; pixels also at hidden 128
    python bench/bench_cells.py --no-accuracy --repeats 2 --epochs 4

For each reading, `bench_floor.py --cells all` times every cell's loop (ms an epoch in the
steady state, and the paired ratio to its own floor: the same matmuls alone, W as wide as the
cell's blocks), interleaved with Keras's `LSTM` layer and the article's TF1 loop on the same
sequences; pixels again at a wider hidden size (`--wide`), where the issue asks every cell to
stay within 2.5x of its floor. Then `lstm-digits train cell=C data.reading=R` trains each cell
as a user would (the config's epochs and settings, a temporary store, no logged model), and
its test accuracy, on the test split held out and evaluated once, is read from what it prints.
The result is a Markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOOR = Path(__file__).with_name("bench_floor.py")
READINGS = ("rows", "pixels")
KERAS_TARGET = 0.5  # issue 30: `lstm` on pixels in at most half the time of Keras's LSTM layer


def cells() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from lstm_cli.config.choices import Cell, names

    return names(Cell)


def timings(reading: str, hidden: int, args: argparse.Namespace) -> dict:
    """bench_floor.py's figures for every cell (and Keras's and the article's loops) on
    `reading` at `hidden`: {name: {"loop_ms", "x_floor", "path"}}."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "floor.json"
        cmd = [sys.executable, str(FLOOR), "--cells", "all", "--reading", reading]
        cmd += ["--hidden", str(hidden), "--epochs", str(args.epochs)]
        cmd += ["--repeats", str(args.repeats), "--json", str(out)]
        subprocess.run(cmd, check=True)  # its report shows as it goes
        return json.loads(out.read_text())[f"{reading} {hidden}"]["figures"]


def test_accuracy(cell: str, reading: str, hidden: int, overrides: list[str]) -> float:
    """`lstm-digits train cell=CELL data.reading=READING` on a temporary store: the test
    accuracy it prints."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HYDRA_"))}
        env.update(PYTHONPATH=str(ROOT), COLUMNS="200", TF_CPP_MIN_LOG_LEVEL="3")
        cmd = [sys.executable, "-m", "lstm_cli", "train", f"cell={cell}"]
        cmd += [f"data.reading={reading}", f"hidden_size={hidden}", "tracking.log_model=false"]
        cmd += [f"tracking.uri=sqlite:///{tmp}/mlflow.db", *overrides]
        done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        found = re.search(r"test_accuracy\s*\S\s*([0-9.]+)", done.stdout)
        if done.returncode != 0 or found is None:
            sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
        return float(found.group(1))


def table(args: argparse.Namespace, figures: dict, accuracy: dict) -> str:
    """The Markdown table: a row per cell, then Keras's and the article's loops."""
    wide = f" | pixels {args.wide}: x floor" if args.wide else ""
    head = [
        f"| cell | path | rows ms/epoch | rows x floor | rows test acc | pixels ms/epoch "
        f"| pixels x floor | pixels test acc{wide} |",
        "| --- " * (8 + bool(args.wide)) + "|",
    ]
    rows = []
    loops = {f"ours {c}": c for c in cells()}
    loops |= {"keras": "Keras's LSTM layer", "article": "the article's TF1 loop"}
    for name, shown in loops.items():
        cols = [shown, figures["rows"][name].get("path") or "-"]
        for reading in READINGS:
            f = figures[reading][name]
            acc = accuracy.get((shown, reading))  # trained: our cells only
            cols += [f"{f['loop_ms']:.1f}", f"{f['x_floor']:.2f}x"]
            cols.append("-" if acc is None else f"{acc:.4f}")
        if args.wide:
            cols.append(f"{figures['wide'][name]['x_floor']:.2f}x")
        rows.append("| " + " | ".join(cols) + " |")
    return "\n".join([*head, *rows])


def verdicts(args: argparse.Namespace, figures: dict) -> list[str]:
    """The issue's figures: `lstm` against Keras's LSTM on pixels, every cell within 2.5x of
    its floor on pixels at the wide size."""
    lines = []
    for key in ("pixels", "wide"):
        if key not in figures:
            continue
        hidden = args.hidden if key == "pixels" else args.wide
        ratio = figures[key]["ours lstm"]["loop_ms"] / figures[key]["keras"]["loop_ms"]
        verdict = "PASS" if ratio <= KERAS_TARGET else "MISS"
        lines.append(f"lstm / Keras's LSTM on pixels at hidden {hidden}: {ratio:.3f} ({verdict})")
    if "wide" in figures:
        over = {c: figures["wide"][f"ours {c}"]["x_floor"] for c in cells()}
        over = {c: x for c, x in over.items() if x > 2.5}
        said = ", ".join(f"{c} {x:.2f}x" for c, x in over.items()) or "none"
        lines.append(f"cells above 2.5x their floor on pixels at hidden {args.wide}: {said}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=50, help="the table's hidden size")
    parser.add_argument(
        "--wide", type=int, default=128, help="also time pixels at this hidden size (0: not)"
    )
    parser.add_argument("--epochs", type=int, default=6, help="timed epochs a measurement")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (medians over them)")
    parser.add_argument(
        "--no-accuracy", dest="accuracy", action="store_false", help="time only; train nothing"
    )
    parser.add_argument(
        "--train",
        nargs="*",
        default=[],
        metavar="OVERRIDE",
        help="more overrides for the trainings (e.g. epochs=30); default: the config's",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    figures = {reading: timings(reading, args.hidden, args) for reading in READINGS}
    if args.wide:
        figures["wide"] = timings("pixels", args.wide, args)
    accuracy = {}
    if args.accuracy:
        for reading in READINGS:
            for cell in cells():
                accuracy[cell, reading] = test_accuracy(cell, reading, args.hidden, args.train)
                print(f"{cell} on {reading}: test accuracy {accuracy[cell, reading]:.4f}")
    print(f"\nhidden {args.hidden}; overrides of the trainings: {' '.join(args.train) or 'none'}")
    print(table(args, figures, accuracy))
    print("\n".join(verdicts(args, figures)))
    if args.json:
        saved = {"figures": figures, "accuracy": {f"{c} {r}": a for (c, r), a in accuracy.items()}}
        Path(args.json).write_text(json.dumps(saved, indent=2) + "\n")


if __name__ == "__main__":
    main()
