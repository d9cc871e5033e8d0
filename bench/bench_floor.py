"""The training loop as a multiple of its matmuls' own time (the floor), by model width.

    make bench                                   # also runs this: hidden 50, 200, 512
    python bench/bench_floor.py --hidden 200 512 --epochs 8 --repeats 3
    python bench/bench_floor.py --base DIR       # DIR: an earlier tree (git archive REV | tar -x)
    python bench/bench_floor.py --precision bf16 --hidden 200 512   # ours and its floor in bfloat16
    python bench/bench_floor.py --kernel fused ops --loops ours      # the fused kernel vs TF ops

The floor is the matmuls one epoch of our loop issues, forward and backward, at the run's shapes
(batch 100, 8 rows of 8 pixels, the training and validation splits), dtype (float32) and
threads, timed alone in TensorFlow: per batch the input projection (batch*8, 8) @ (8, 4h) and
its weight gradient, 7 recurrent (batch, h) @ (h, 4h) and, backward, 7 (batch, 4h) @ (4h, h)
for dh and 7 (h, batch) @ (batch, 4h) for dW_h, and the head's; then the validation pass.
Each matmul waits for the one before it (as in the loop: step t needs step t-1), nothing else
runs. Our loop, Keras's `LSTM` (model.fit, the same per-epoch work) and the article's TF1
script (`bench/article.py` with its hidden size replaced, 14 batches and its 3 evaluations an
epoch) are each shown as ms per epoch in the steady state (epochs 2..) and as a multiple of
the floor. Every measurement runs in a fresh process (thread settings hold from the first op
on); the variants alternate within each round, so a slow spell of the machine hits them all.
"""

from __future__ import annotations

import argparse
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
ARTICLE = Path(__file__).with_name("article.py")
TARGET = 1.5  # the goal for wide models: the loop within 1.5x of the floor
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


def data():
    import yaml
    from bench_train import tree_module

    digits = tree_module("lstm_cli.data.digits", "lstm_cli.data")
    cfg = yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())
    d = cfg["data"]  # as bench_train.py: the article's two-way split (1437 training images)
    return cfg, digits.load_digits(d["test_size"], d["split_seed"], d["scaling"])


def floor_epoch(
    hidden: int, batch: int, n_train: int, n_val: int, precision: str = "fp32", steps: int = 8
):
    """A tf.function running one epoch's matmuls (see the module's docstring), chained, in
    float32 or (`precision="bf16"`) bfloat16."""
    import tensorflow as tf

    inputs, classes, h4 = 8, 10, 4 * hidden
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
        xw = mm(x, w_x)  # (batch*steps, 4h) the input projection
        w_x = mm(x, xw, transpose_a=True)  # (input, 4h) its weight gradient
        for _ in range(steps - 1):
            a = mm(h, w_h)  # (batch, 4h) forward
            dw = mm(h, a, transpose_a=True)  # (h, 4h) backward: dW_h
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
        a = tf.matmul(x_val, w_x)  # (n_val*steps, 4h)
        for _ in range(steps - 1):
            h_val = tf.matmul(h_val, w_h)[:, :hidden]  # (n_val, h)
        return tf.reduce_sum(tf.matmul(h_val, wv)) + a[0, 0]

    return lambda: epoch(x, h, w_x, w_h, wv, x_val, h_val)


def child(args: argparse.Namespace) -> None:
    """One measurement in this fresh process: JSON lines of ms per epoch (`loop_ms`, and for
    our loop `floor_ms`: the floor's epochs alternate with the loop's, in this process)."""
    hidden = args.hidden[0]
    if args.loop == "article":
        return article(hidden, args.epochs)
    sys.path.insert(0, str(args.tree))  # the tree measured: its lstm_cli, not the installed one
    from bench_train import default_model, new_trainer, time_keras, train_epochs, tree_module

    tree_module("lstm_cli.runtime.process", "lstm_cli.process").import_tensorflow()
    set_threads(threads_for(hidden) if args.threads is None else args.threads[0])
    cfg, digits = data()
    cfg["hidden_size"], cfg["precision"], cfg["kernel"] = hidden, args.precision, args.kernel[0]
    if args.loop == "keras":  # a fit of `epochs`: its steady state over epochs 2..
        t = time_keras(digits, cfg, args.epochs)
        ms = 1000 * t.steady / (args.epochs - 1)
        return emit({"loop_ms": ms, "val_accuracy": t.val_accuracy})
    n_train, n_val = len(digits.y_train), len(digits.y_val)
    floor = floor_epoch(hidden, cfg["batch_size"], n_train, n_val, args.precision)
    trainer = new_trainer(default_model(cfg, digits), cfg)
    # Our loop as `lstm-digits train` runs it, an epoch a call (epoch 1 each: the same shuffle).
    timed = {
        "floor_ms": lambda: floor().numpy(),
        "loop_ms": lambda: train_epochs(trainer, digits, 1),
    }
    history = [f() for f in timed.values()][-1]  # traced: not timed
    for _ in range(args.epochs):
        for name, f in timed.items():
            start = time.perf_counter()
            out = f()
            emit({name: 1000 * (time.perf_counter() - start)})
        history = out
    return emit({"val_accuracy": history[-1].val_accuracy})


def article(hidden: int, epochs: int) -> None:
    """The article's script with `hidden_size` and the epoch count replaced, its epoch lines
    timestamped here."""
    source = ARTICLE.read_text()
    source = re.sub(r"^hidden_size = 50$", f"hidden_size = {hidden}", source, flags=re.M)
    source = source.replace("for epoch in range(100):", f"for epoch in range({epochs}):")
    with tempfile.TemporaryDirectory() as tmp:
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


def measure(
    loop: str,
    hidden: int,
    epochs: int,
    tree: Path,
    threads: str | None,
    precision: str,
    kernel: str,
) -> dict:
    """One fresh process: the medians of its ms per epoch (the loop's, and the floor's where
    they alternate), and the loop's last val accuracy."""
    cmd = [sys.executable, __file__, "--child", loop, "--hidden", str(hidden)]
    cmd += ["--epochs", str(epochs), "--tree", str(tree), "--precision", precision]
    cmd += ["--kernel", kernel]
    cmd += [] if threads is None else ["--threads", threads]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:  # the child's own error, not only its exit status
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    figures = {}
    for key in ("loop_ms", "floor_ms"):
        values = [r[key] for r in records if key in r]
        if values:
            figures[key] = statistics.median(values)
    figures["val_accuracy"] = [r["val_accuracy"] for r in records if "val_accuracy" in r]
    return figures


def report(hidden: int, runs: dict[str, list[dict]]) -> dict:
    """The floor line, then every loop as ms per epoch and a multiple of the floor: ours (and
    base) against the floor timed in the same processes (the median of their ratios), Keras's
    and the article's against the median floor."""
    floors = [r["floor_ms"] for rs in runs.values() for r in rs if "floor_ms" in r]
    floor = statistics.median(floors) if floors else math.nan  # timed with ours only
    print(f"hidden {hidden}: floor {floor:.1f} ms/epoch (the matmuls alone)", flush=True)
    figures = {"floor_ms": floor}
    for name, rs in runs.items():
        ms = statistics.median(r["loop_ms"] for r in rs)
        if "floor_ms" in rs[0]:
            ratio = statistics.median(r["loop_ms"] / r["floor_ms"] for r in rs)
        else:
            ratio = ms / floor
        each = " ".join(f"{r['loop_ms']:.1f}" for r in rs)
        acc = sorted({f"{a:.4f}" for r in rs for a in r["val_accuracy"]})
        print(
            f"  {name:10s} {ms:8.1f} ms/epoch  {ratio:5.2f}x floor  ({each})  val acc {acc}",
            flush=True,
        )
        figures[name] = {"loop_ms": ms, "x_floor": ratio}
    for name in (n for n in figures if n.startswith("ours") and hidden >= 200):
        ok = figures[name]["x_floor"] <= TARGET
        print(f"  target {name} <= {TARGET}x floor at hidden >= 200: {'PASS' if ok else 'MISS'}")
    for name in (n for n in figures if n.startswith("ours") and "base" in runs):
        ratio = figures[name]["loop_ms"] / figures["base"]["loop_ms"]
        print(f"  {name} / base (medians of ms/epoch) = {ratio:.3f}")
    return figures


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
    parser.add_argument("--base", metavar="DIR", help="also time the loop of the tree at DIR")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--child", choices=LOOPS, dest="loop", help=argparse.SUPPRESS)
    parser.add_argument("--tree", default=str(ROOT), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop:
        return child(args)
    if args.precision == "bf16":  # Keras's and the article's loops are float32 only
        args.loops = ["ours"]
    many = len(args.kernel) > 1  # (name, tree, threads, kernel) of each variant
    variants = []
    for loop in args.loops:
        if loop == "ours":
            variants += [(f"ours {g}" if many else "ours", ROOT, None, g) for g in args.kernel]
        else:
            variants.append((loop, ROOT, None, "auto"))
    if args.base:  # an earlier tree: its own loop (the kernel setting, if it has one, auto)
        variants.insert(1, ("base", Path(args.base).resolve(), None, "auto"))
    if args.threads:
        variants = [(f"{n} t{t}", tree, t, g) for n, tree, _, g in variants for t in args.threads]
    figures = {}
    print(f"{cores()} cores; {args.epochs} epochs a run, {args.repeats} rounds", flush=True)
    for hidden in args.hidden:
        runs: dict[str, list[dict]] = {name: [] for name, *_ in variants}
        for _ in range(args.repeats):
            for name, tree, threads, kernel in variants:
                loop = "ours" if name.startswith("base") else name.split()[0]
                runs[name].append(
                    measure(loop, hidden, args.epochs, tree, threads, args.precision, kernel)
                )
        figures[hidden] = {"figures": report(hidden, runs), "runs": runs}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return None


if __name__ == "__main__":
    main()
