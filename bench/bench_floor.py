"""The training loop as a multiple of its matmuls' own time (the floor), by model width.

    make bench                                   # also runs this: hidden 50, 200, 512
    python bench/bench_floor.py --hidden 200 512 --epochs 8 --repeats 3
    python bench/bench_floor.py --base DIR       # DIR: an earlier tree (git archive REV | tar -x)
    python bench/bench_floor.py --precision bf16 --hidden 200 512   # ours and its floor in bfloat16
    python bench/bench_floor.py --kernel fused ops --loops ours      # the fused kernel vs TF ops
    python bench/bench_floor.py --cells all --reading pixels --hidden 128 --loops ours
    python bench/bench_floor.py --cells article --base DIR --clock cpu --hidden 50  # busy machine

The floor is the matmuls one epoch of our loop issues, forward and backward, at the run's shapes
(batch 100, the reading's steps and pixels a step: 8 rows of 8, or 64 pixels of 1; the training
and validation splits), dtype (float32) and threads, timed alone in TensorFlow: per batch the
input projection (batch*steps, input) @ (input, k*h) and its weight gradient, steps - 1
recurrent (batch, h) @ (h, k*h) and, backward, as many (batch, k*h) @ (k*h, h) for dh and (h,
batch) @ (batch, k*h) for dW_h, and the head's; then the validation pass. k is the cell's
blocks (W's width: 4 for the LSTM, 3 for the GRU and the LSTM variants with a gate less, 1 for
the tanh RNN), so each cell (`--cells`) is set against its own floor. Each matmul waits for the
one before it (as in the loop: step t needs step t-1), nothing else runs. Our loop, Keras's
`LSTM` (model.fit, the same per-epoch work) and the article's TF1 script (`bench/article.py`
with its hidden size replaced, on the same reading, 14 batches and its 3 evaluations an epoch)
are each shown as ms per epoch in the steady state (epochs 2..) and as a multiple of the floor
(Keras's and the article's: of the 4-block floor). Every measurement runs in a fresh process
(thread settings hold from the first op on); the variants alternate within each round, so a
slow spell of the machine hits them all.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
ARTICLE = Path(__file__).with_name("article.py")
TARGET = 1.5  # the goal for wide models: the loop within 1.5x of the floor
PIXELS_TARGET = 2.5  # issue 30: every cell on pixels at hidden 128 within 2.5x of its floor
LOOPS = ("ours", "article", "keras")  # the floor is timed in the processes of ours


def cores() -> int:
    return len(os.sched_getaffinity(0))


def threads_for(hidden: int) -> int | None:
    """The thread count `lstm-digits train threads=null` uses in this process's tree."""
    from bench_train import trainer_module

    return trainer_module().default_threads(hidden, cores())


def set_threads(threads: str | int | None) -> None:
    """`threads`: N (intra- and inter-op, as the loop sets them) or "N/M" (intra N, inter M)."""
    import tensorflow as tf

    if threads is not None:
        intra, _, inter = str(threads).partition("/")
        tf.config.threading.set_intra_op_parallelism_threads(int(intra))
        tf.config.threading.set_inter_op_parallelism_threads(int(inter or intra))


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def data(reading: str = "rows"):
    import yaml
    from bench_train import tree_module

    digits = tree_module("lstm_cli.data.digits", "lstm_cli.data")
    cfg = yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())
    d = cfg["data"]  # as bench_train.py: the article's two-way split (1437 training images)
    read = {} if reading == "rows" else {"reading": reading}
    if read and "reading" not in inspect.signature(digits.load_digits).parameters:
        sys.exit(f"{digits.__file__}: a tree before the readings reads rows only")
    return cfg, digits.load_digits(d["test_size"], d["split_seed"], d["scaling"], **read)


def floor_epoch(
    hidden: int,
    batch: int,
    n_train: int,
    n_val: int,
    precision: str = "fp32",
    steps: int = 8,
    inputs: int = 8,
    blocks: int = 4,
):
    """A tf.function running one epoch's matmuls (see the module's docstring) of a cell of
    `blocks` blocks on sequences of `steps` x `inputs`, chained, in float32 or
    (`precision="bf16"`) bfloat16."""
    import tensorflow as tf

    classes, h4 = 10, blocks * hidden  # h4: W's width (4*hidden for the LSTM)
    n_batches = math.ceil(n_train / batch)
    dtype = tf.bfloat16 if precision == "bf16" else tf.float32

    def rnd(shape, seed):
        return tf.cast(tf.random.stateless_normal(shape, seed=seed), dtype)

    x = rnd([batch * steps, inputs], seed=[0, 1])  # (batch*steps, input)
    w_x, w_h = rnd([inputs, h4], seed=[0, 2]), rnd([hidden, h4], seed=[0, 3])
    h, wv = rnd([batch, hidden], seed=[0, 4]), rnd([hidden, classes], seed=[0, 7])
    x_val, h_val = rnd([n_val * steps, inputs], seed=[0, 9]), rnd([n_val, hidden], seed=[1, 0])

    # Every matmul takes the one before it as an operand: grappler prunes (or hoists out of
    # the loop) a matmul whose result nobody reads, or whose operands the loop does not change.
    # The gradients have the shapes of the weights, so each batch feeds the next its gradients
    # as weights and its last dh as h: the values are meaningless, the shapes are the loop's.
    def batch_matmuls(b, h, w_x, w_h, wv):
        mm = tf.matmul
        xw = mm(x, w_x)  # (batch*steps, k*h) the input projection
        w_x = mm(x, xw, transpose_a=True)  # (input, k*h) its weight gradient
        for _ in range(steps - 1):
            a = mm(h, w_h)  # (batch, k*h) forward
            dw = mm(h, a, transpose_a=True)  # (h, k*h) backward: dW_h
            h = mm(a, w_h, transpose_b=True)  # (batch, h) backward: dh
            w_h = dw
        y = mm(h, wv)  # (batch, classes) the head
        wv = mm(h, y, transpose_a=True)  # (h, classes) dWv
        h = mm(y, wv, transpose_b=True)  # (batch, h) dh
        return b + 1, h, w_x, w_h, wv

    # The operands are arguments, not constants: grappler would fold constant matmuls away.
    @tf.function(autograph=False)
    def epoch(x, h, w_x, w_h, wv, x_val, h_val):
        loop = (tf.constant(0), h, w_x, w_h, wv)
        _, h, w_x, w_h, wv = tf.while_loop(lambda b, *_: b < n_batches, batch_matmuls, loop)
        a = tf.matmul(x_val, w_x)  # (n_val*steps, k*h)
        for _ in range(steps - 1):
            h_val = tf.matmul(h_val, w_h)[:, :hidden]  # (n_val, h)
        return tf.reduce_sum(tf.matmul(h_val, wv)) + a[0, 0]

    return lambda: epoch(x, h, w_x, w_h, wv, x_val, h_val)


def child(args: argparse.Namespace) -> None:
    """One measurement in this fresh process: JSON lines of ms per epoch (`loop_ms`, and for
    our loop `floor_ms`: the floor's epochs alternate with the loop's, in this process)."""
    hidden = args.hidden[0]
    if args.loop == "article":
        return article(hidden, args.epochs, args.reading[0])
    sys.path.insert(0, str(args.tree))  # the tree measured: its lstm_cli, not the installed one
    from bench_train import default_model, new_trainer, time_keras, train_epochs, tree_module

    tree_module("lstm_cli.runtime.process", "lstm_cli.process").import_tensorflow()
    set_threads(threads_for(hidden) if args.threads is None else args.threads[0])
    cfg, digits = data(args.reading[0])
    cfg["hidden_size"], cfg["precision"], cfg["kernel"] = hidden, args.precision, args.kernel[0]
    cfg["cell"] = args.cells[0] if args.cells else cfg["cell"]
    if args.loop == "keras":  # a fit of `epochs`: its steady state over epochs 2..
        t = time_keras(digits, cfg, args.epochs)
        ms = 1000 * t.steady / (args.epochs - 1)
        return emit({"loop_ms": ms, "val_accuracy": t.val_accuracy})
    model = default_model(cfg, digits)
    blocks = model.get_weights()["W"].shape[1] // hidden  # W's width: the cell's floor
    n_train, n_val = len(digits.y_train), len(digits.y_val)
    floor = floor_epoch(
        hidden,
        cfg["batch_size"],
        n_train,
        n_val,
        args.precision,
        digits.steps,
        digits.input_size,
        blocks,
    )
    trainer = new_trainer(model, cfg)
    # Which path runs the cell: a tree before `fused` (one cell, one kernel) fuses it if it can.
    fused = getattr(trainer, "kernel", None) is not None and getattr(model, "fused", True)
    emit({"blocks": blocks, "path": "fused" if fused else "ops"})
    # Our loop as `lstm-digits train` runs it, an epoch a call (epoch 1 each: the same shuffle).
    timed = {
        "floor_ms": lambda: floor().numpy(),
        "loop_ms": lambda: train_epochs(trainer, digits, 1),
    }
    history = [f() for f in timed.values()][-1]  # traced: not timed
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    for _ in range(args.epochs):
        for name, f in timed.items():
            start = clock()
            out = f()
            emit({name: 1000 * (clock() - start)})
        history = out
    return emit({"val_accuracy": history[-1].val_accuracy})


def article(hidden: int, epochs: int, reading: str) -> None:
    """The article's script with `hidden_size`, the epoch count and (other than rows) its
    sequences replaced, its epoch lines timestamped here."""
    source = ARTICLE.read_text()
    source = re.sub(r"^hidden_size = 50$", f"hidden_size = {hidden}", source, flags=re.M)
    source = source.replace("for epoch in range(100):", f"for epoch in range({epochs}):")
    with tempfile.TemporaryDirectory() as tmp:
        if reading != "rows":  # the images as this tree's reading reads them, (n, steps, input)
            import numpy as np
            from sklearn import datasets

            sys.path.insert(0, str(ROOT))
            from lstm_cli.data.readings import reading_for

            read = reading_for(reading).read(datasets.load_digits().images)
            np.save(Path(tmp) / "x.npy", read)
            source = source.replace("X = digits.images\n", "X = np.load('x.npy')\n")
            source = re.sub(
                r"^input_size = 8$", f"input_size = {read.shape[2]}", source, flags=re.M
            )
        script = Path(tmp) / "article.py"
        script.write_text(source)
        proc = subprocess.Popen(
            [sys.executable, "-u", str(script)], cwd=tmp, stdout=subprocess.PIPE, text=True
        )
        last, epoch = time.perf_counter(), 0
        for line in proc.stdout:
            if line.startswith("["):
                epoch, now = epoch + 1, time.perf_counter()
                if epoch > 1:  # the first holds the graph's start-up
                    emit({"loop_ms": 1000 * (now - last)})
                last, accuracy = now, float(line.rsplit("val acc:", 1)[1])
        proc.wait()
        emit({"val_accuracy": accuracy})  # the test split: the article validates on it


class Variant(NamedTuple):
    """One loop measured: its name in the report, which loop, the tree, threads ("N" or
    "N/M", None: `threads=null`'s), `kernel=` and `cell=` (None: the config's)."""

    name: str
    loop: str
    tree: Path
    threads: str | None
    kernel: str
    cell: str | None


def measure(
    variant: Variant, hidden: int, epochs: int, precision: str, reading: str, clock: str
) -> dict:
    """One fresh process: the medians of its ms per epoch (the loop's, and the floor's where
    they alternate), the loop's last val accuracy, and (ours) its cell's blocks and path."""
    cmd = [sys.executable, __file__, "--child", variant.loop, "--hidden", str(hidden)]
    cmd += ["--epochs", str(epochs), "--tree", str(variant.tree), "--precision", precision]
    cmd += ["--kernel", variant.kernel, "--reading", reading]
    cmd += [] if variant.threads is None else ["--threads", variant.threads]
    cmd += [] if variant.cell is None else ["--cells", variant.cell]
    cmd += ["--clock", clock]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:  # the child's own error, not only its exit status
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    figures = {}
    for key in ("loop_ms", "floor_ms"):
        values = [r[key] for r in records if key in r]
        if values:
            figures[key] = statistics.median(values)
    for r in records:
        figures |= {k: r[k] for k in ("blocks", "path") if k in r}
    figures["val_accuracy"] = [r["val_accuracy"] for r in records if "val_accuracy" in r]
    return figures


def report(
    title: str, hidden: int, reading: str, runs: dict[str, list[dict]], variants: list[Variant]
) -> dict:
    """The floors (one a width of W), then every loop as ms per epoch and a multiple of the
    floor: ours (and base) against the floor timed in the same processes (the median of their
    ratios), Keras's and the article's against the median 4-block floor (the LSTM's)."""
    floors: dict[int, list[float]] = {}
    for rs in runs.values():
        for r in rs:
            if "floor_ms" in r:
                floors.setdefault(r["blocks"], []).append(r["floor_ms"])
    floor = {k: statistics.median(v) for k, v in sorted(floors.items())}
    each_floor = ", ".join(f"{k} blocks {ms:.1f}" for k, ms in floor.items())
    print(f"{title}: floor ms/epoch (the matmuls alone): {each_floor or '-'}", flush=True)
    figures: dict = {"floor_ms": floor}
    for name, rs in runs.items():
        ms = statistics.median(r["loop_ms"] for r in rs)
        if "floor_ms" in rs[0]:
            ratio = statistics.median(r["loop_ms"] / r["floor_ms"] for r in rs)
        else:
            ratio = ms / floor.get(4, math.nan)
        each = " ".join(f"{r['loop_ms']:.1f}" for r in rs)
        acc = sorted({f"{a:.4f}" for r in rs for a in r["val_accuracy"]})
        path = f" {rs[0]['path']:5s}" if "path" in rs[0] else " " * 6
        print(
            f"  {name:16s}{path} {ms:8.1f} ms/epoch  {ratio:5.2f}x floor  ({each})  val acc {acc}",
            flush=True,
        )
        figures[name] = {"loop_ms": ms, "x_floor": ratio, "path": rs[0].get("path")}
    for variant in (v for v in variants if v.name.startswith("ours")):
        name, x_floor = variant.name, figures[variant.name]["x_floor"]
        if hidden >= 200 and reading == "rows":
            verdict = "PASS" if x_floor <= TARGET else "MISS"
            print(f"  target {name} <= {TARGET}x floor at hidden >= 200: {verdict}")
        if hidden == 128 and reading == "pixels":
            verdict = "PASS" if x_floor <= PIXELS_TARGET else "MISS"
            print(f"  target {name} <= {PIXELS_TARGET}x its floor on pixels at 128: {verdict}")
        same = [v for v in variants if (v.threads, v.cell) == (variant.threads, variant.cell)]
        bases = [v.name for v in same if v.tree != ROOT]  # the base tree's loop on this cell
        for other in (*bases[:1], "keras"):
            if other in runs:
                ratio = figures[name]["loop_ms"] / figures[other]["loop_ms"]
                print(f"  {name} / {other} (medians of ms/epoch) = {ratio:.3f}")
    return figures


def base_has(tree: Path, cell: str | None) -> bool:
    """Whether the tree at `tree` has `cell` (None: the config's): a tree before the cells
    (2026-12-07) has the article's and the standard LSTM only, under their old names."""
    cells = tree / "lstm_cli" / "networks" / "cells"
    if cell is None:
        return True
    return (cells / f"{cell}.py").is_file() if cells.is_dir() else cell in ("article", "lstm")


def variants_for(args: argparse.Namespace) -> list[Variant]:
    """What each round measures, in order: for every cell= asked, our loop at every kernel=
    asked and the base tree's (where it has the cell); then the other loops; each at each
    thread count."""
    cells = args.cells or [None]
    base = Path(args.base).resolve() if args.base else None
    variants = []
    for loop in args.loops:
        if loop != "ours":
            variants.append(Variant(loop, loop, ROOT, None, "auto", None))
            continue
        for cell in cells:
            for kernel in args.kernel:
                name = " ".join(["ours", *([kernel] if len(args.kernel) > 1 else []), cell or ""])
                variants.append(Variant(name.strip(), "ours", ROOT, None, kernel, cell))
            if base is not None and base_has(base, cell):  # its kernel setting, if any: auto
                variants.append(
                    Variant(f"base {cell or ''}".strip(), "ours", base, None, "auto", cell)
                )
    if args.threads:
        variants = [
            v._replace(name=f"{v.name} t{t}", threads=t) for v in variants for t in args.threads
        ]
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[50, 200, 512])
    parser.add_argument("--epochs", type=int, default=6, help="epochs a measurement (>= 3)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (medians over them)")
    parser.add_argument("--loops", nargs="+", default=list(LOOPS), choices=LOOPS)
    parser.add_argument(
        "--threads",
        nargs="+",
        help="run each loop at each of these thread counts, N or intra/inter as 2/1 "
        "(default: the one `threads=null` picks; the article's script keeps TensorFlow's)",
    )
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="the matmuls' dtype, of our loop and the floor (bf16: on a CPU with avx512_bf16)",
    )
    parser.add_argument(
        "--kernel",
        nargs="+",
        default=["auto"],
        choices=["auto", "fused", "ops"],
        help="our loop at each of these kernel= settings (default: auto, as `lstm-digits train`)",
    )
    parser.add_argument(
        "--cells",
        nargs="+",
        help="our loop with each of these cells, each against its own floor; `all`: every cell "
        "(default: the config's cell)",
    )
    parser.add_argument(
        "--reading",
        nargs="+",
        default=["rows"],
        help="data.reading, each in turn: rows, columns, pixels or permuted (default: rows)",
    )
    parser.add_argument("--base", metavar="DIR", help="also time the loop of the tree at DIR")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: our loop and its floor in the process's CPU time, which other processes "
        "on a shared machine do not inflate (a measure of work where the loop runs on one "
        "thread, as up to hidden 128; --loops ours only)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--child", choices=LOOPS, dest="loop", help=argparse.SUPPRESS)
    parser.add_argument("--tree", default=str(ROOT), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop:
        return child(args)
    if args.cells == ["all"]:
        sys.path.insert(0, str(ROOT))
        from lstm_cli.config.choices import Cell, names

        args.cells = names(Cell)
    if args.precision == "bf16" or args.clock == "cpu":  # Keras's, the article's: fp32, wall
        args.loops = ["ours"]
    variants = variants_for(args)
    figures: dict = {}
    print(f"{cores()} cores; {args.epochs} epochs a run, {args.repeats} rounds", flush=True)
    for reading in args.reading:
        for hidden in args.hidden:
            runs: dict[str, list[dict]] = {v.name: [] for v in variants}
            for _ in range(args.repeats):
                for v in variants:
                    run = measure(v, hidden, args.epochs, args.precision, reading, args.clock)
                    runs[v.name].append(run)
            title = f"hidden {hidden}, {reading}"
            figures[f"{reading} {hidden}"] = {
                "figures": report(title, hidden, reading, runs, variants),
                "runs": runs,
            }
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return None


if __name__ == "__main__":
    main()
