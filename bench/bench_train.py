"""Time this project's training loop against `keras.layers.LSTM` on the same data.

Both train on `load_digits()` with the default experiment of `conf/config.yaml` (hidden 50,
100 epochs, batch 100, Adam 1e-3, tanh on the output, shuffled), one after the other in this
process. The time is the training loop as a user waits for it, tracing and compilation
included; the first epoch (which holds them) and the rest (the steady state) are also shown.

    make bench                                  # ours 3 times, Keras once; medians
    make bench ARGS="--epochs 20 --json bench.json"
    make bench ARGS="--ab"                      # A/B: XLA and thread settings, a process a run
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: no C++ info logs

ROOT = Path(__file__).resolve().parent.parent
MAX_RATIO = 0.25  # target: our wall time at most a quarter of Keras's
MIN_VAL_ACCURACY = 0.98  # target: our final validation accuracy
OLD_CELL_NAMES = {"article": "seed", "lstm": "standard"}  # `cell` values before 2026-12-07

# A/B variants: name -> (Trainer's jit_compile, intra-op threads, inter-op threads);
# "auto": the project's `default_threads` (what `lstm-digits train` uses); None: TensorFlow's.
# Under jit_compile the cell runs on TensorFlow's ops (kernel=ops): XLA compiles no custom op.
VARIANTS = {
    "default": (False, "auto", "auto"),
    "jit_compile (ops)": (True, "auto", "auto"),
    "TF's threads": (False, None, None),
    "threads 2/2": (False, 2, 2),
    "threads 2/1": (False, 2, 1),
}

console = Console(width=None if sys.stdout.isatty() else 110)  # piped: no wrapping


@dataclass(frozen=True)
class Timing:
    """One training run: wall seconds (first epoch, the rest), optimizer steps, val accuracy."""

    seconds: float
    first_epoch: float
    steady: float
    steps: int
    val_accuracy: float

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds


def defaults() -> dict:
    """The default experiment, read from `conf/config.yaml` (the one place defaults live)."""
    return yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())


def steps_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / min(batch_size, n))


def timing(start: float, epoch_ends: list[float], steps: int, val_accuracy: float) -> Timing:
    """A Timing from the loop's start and each epoch's end (perf_counter seconds)."""
    return Timing(
        seconds=epoch_ends[-1] - start,
        first_epoch=epoch_ends[0] - start,
        steady=epoch_ends[-1] - epoch_ends[0],
        steps=steps,
        val_accuracy=val_accuracy,
    )


def tree_module(*names: str):
    """The first of the modules `names` (the newest name first) that the tree of the imported
    `lstm_cli` has: `bench_floor.py --base DIR` runs these helpers on an earlier tree, whose
    modules had other names (`lstm_cli.loop` 2026-12-02 to 12-07, `lstm_cli.train` before).
    Looked for as files, not by trying imports: the editable install's finder would give an
    older tree the modules it lacks from this checkout."""
    import lstm_cli

    tree = Path(lstm_cli.__file__).parent.parent
    for name in names:
        path = tree.joinpath(*name.split("."))
        if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
            return importlib.import_module(name)
    raise ModuleNotFoundError(f"none of {', '.join(names)} in {tree}")


def trainer_module():
    """The module of the Trainer, `set_seed` and `default_threads`, in this tree or an older one."""
    return tree_module("lstm_cli.fit.trainer", "lstm_cli.loop", "lstm_cli.train")


def default_model(cfg: dict, data):
    """A new `DigitsRNN` as `lstm-digits train` builds it from `cfg` (seeds set)."""
    model_module = tree_module("lstm_cli.networks.model", "lstm_cli.model")
    trainer_module().set_seed(cfg["seed"])
    # precision=bf16 only where asked: a tree from before it has no such argument
    bf16 = {"precision": "bf16"} if cfg.get("precision") == "bf16" else {}
    model_class, cell = getattr(model_module, "DigitsRNN", None), cfg["cell"]
    if model_class is None:  # a tree before the cells (2026-12-07): one LSTM, its two outputs
        model_class, cell = model_module.DigitsLSTM, OLD_CELL_NAMES.get(cell, cell)
    return model_class(
        input_size=data.input_size,
        num_classes=data.num_classes,
        hidden_size=cfg["hidden_size"],
        cell=cell,
        init=cfg["init"],
        output_activation=cfg["output_activation"],
        seed=cfg["seed"],
        **bf16,
    ).build()


def new_trainer(model, cfg: dict, jit_compile: bool = False):
    """A Trainer for `model` as `lstm-digits train` makes it from `cfg` (its `kernel`, default
    auto), in this tree or an older one; train it with `train_epochs`. An older Trainer takes
    the epochs (`train_epochs` sets them), its kernel as `fused=`, or no kernel at all."""
    trainer_class = trainer_module().Trainer
    params = inspect.signature(trainer_class).parameters
    args = [model, cfg["learning_rate"], cfg["batch_size"]]
    if "epochs" in params:
        args.append(1)
    options = {"seed": cfg["seed"], "shuffle": cfg["data"]["shuffle"]}
    if jit_compile:  # only where asked: the first trees have no such argument
        options["jit_compile"] = True
    kernel = next((name for name in ("kernel", "fused") if name in params), None)
    if kernel is not None:  # the fused kernel's ops, or None: TensorFlow's (kernel=ops)
        fused_kernel = tree_module("lstm_cli.networks.fused_kernel", "lstm_cli.gates_kernel")
        options[kernel] = fused_kernel.for_config(cfg.get("kernel", "auto"))[0]
    return trainer_class(*args, **options)


def train_epochs(trainer, data, epochs: int, on_epoch=None) -> list:
    """Train epochs 1..`epochs` of `data` with `trainer` (`new_trainer`'s), calling
    `on_epoch(metrics)` after each; each epoch's metrics. The loop is `lstm_cli.fit.loop.fit`,
    or an older tree's `Trainer.fit`."""
    if hasattr(trainer, "fit"):  # a Trainer of before 2026-12-07: it runs its own epochs
        trainer.epochs = epochs
        return trainer.fit(data, on_epoch=on_epoch)
    from lstm_cli.fit.hooks.base import Hook
    from lstm_cli.fit.loop import fit

    class OnEpoch(Hook):
        def on_epoch_end(self, loop, metrics) -> None:
            on_epoch(metrics)

    return fit(trainer, data, epochs, hooks=[] if on_epoch is None else [OnEpoch()]).history


def time_ours(data, cfg: dict, epochs: int, jit_compile: bool = False, on_epoch=None) -> Timing:
    """Our loop on `DigitsRNN` with the defaults; `on_epoch(epoch, seconds)` if given."""
    trainer = new_trainer(default_model(cfg, data), cfg, jit_compile)
    ends: list[float] = []

    def clock(metrics) -> None:
        ends.append(time.perf_counter())
        if on_epoch is not None:
            on_epoch(metrics.epoch, ends[-1] - start)

    start = time.perf_counter()
    history = train_epochs(trainer, data, epochs, clock)
    steps = epochs * steps_per_epoch(len(data.y_train), cfg["batch_size"])
    return timing(start, ends, steps, history[-1].val_accuracy)


def time_keras(data, cfg: dict, epochs: int) -> Timing:
    """The same budget and per-epoch metrics with `keras.layers.LSTM` through `model.fit`."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(cfg["seed"])
    model = keras.Sequential(
        [
            keras.Input((data.steps, data.input_size)),  # (batch, rows, pixels)
            keras.layers.LSTM(cfg["hidden_size"]),  # (batch, hidden)
            keras.layers.Dense(data.num_classes, activation=cfg["output_activation"]),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(cfg["learning_rate"]),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],  # as ours: train accuracy over each epoch's batches
    )
    ends: list[float] = []
    clock = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: ends.append(time.perf_counter()))
    start = time.perf_counter()
    model.fit(
        data.x_train,
        data.y_train,
        batch_size=cfg["batch_size"],
        epochs=epochs,
        shuffle=cfg["data"]["shuffle"],
        # The same per-epoch work as ours: val loss and accuracy on the held-out split.
        validation_data=(data.x_val, data.y_val),
        validation_batch_size=len(data.x_val),
        callbacks=[clock],
        verbose=0,
    )
    predicted = model.predict(data.x_val, batch_size=len(data.x_val), verbose=0).argmax(axis=1)
    steps = epochs * steps_per_epoch(len(data.y_train), cfg["batch_size"])
    return timing(start, ends, steps, float(np.mean(predicted == data.y_val)))


def median(runs: list[Timing]) -> Timing:
    """Each figure's median over the runs."""
    return Timing(
        seconds=statistics.median(r.seconds for r in runs),
        first_epoch=statistics.median(r.first_epoch for r in runs),
        steady=statistics.median(r.steady for r in runs),
        steps=runs[0].steps,
        val_accuracy=statistics.median(r.val_accuracy for r in runs),
    )


def spread(runs: list[Timing]) -> str:
    seconds = sorted(r.seconds for r in runs)
    return f"{seconds[0]:.2f}–{seconds[-1]:.2f}" if len(seconds) > 1 else "-"


def verdict(ok: bool) -> str:
    return "[green]PASS[/green]" if ok else "[red]MISS[/red]"


def compare(args: argparse.Namespace) -> None:
    """Ours against Keras in this process; print the table and the targets."""
    from lstm_cli.data.digits import load_digits
    from lstm_cli.fit.trainer import configure_threads, default_threads

    cfg = defaults()
    # As `lstm-digits train` does; the process-wide setting applies to the Keras baseline too.
    configure_threads(default_threads(cfg["hidden_size"]))
    epochs = args.epochs or cfg["epochs"]
    data = load_digits(cfg["data"]["test_size"], cfg["data"]["split_seed"], cfg["data"]["scaling"])
    console.print(f"[bold]Warm-up[/bold] (TensorFlow's runtime, 1 epoch each); {epochs} epochs…")
    time_ours(data, cfg, 1)
    time_keras(data, cfg, 1)
    ours = [time_ours(data, cfg, epochs) for _ in range(args.repeats or 3)]
    keras = [time_keras(data, cfg, epochs) for _ in range(args.keras_repeats)]
    a, b = median(ours), median(keras)
    ratio = a.seconds / b.seconds

    table = Table(
        title=f"Training loop, {epochs} epochs, batch {cfg['batch_size']} (medians)",
        caption="ours: fit.loop.fit on DigitsRNN | keras: keras.layers.LSTM via model.fit",
    )
    columns = ("runs", "wall s", "min–max s", "epoch 1 s", "rest s", "steps/s", "val acc")
    table.add_column("")
    for column in columns:
        table.add_column(column, justify="right")
    for name, runs, t in (("ours", ours, a), ("keras", keras, b)):
        table.add_row(
            name,
            str(len(runs)),
            f"{t.seconds:.2f}",
            spread(runs),
            f"{t.first_epoch:.2f}",
            f"{t.steady:.2f}",
            f"{t.steps_per_second:.0f}",
            f"{t.val_accuracy:.4f}",
        )
    console.print(table)
    console.print(f"ratio ours/keras (wall s): [bold]{ratio:.3f}[/bold]")
    console.print(f"  target ratio <= {MAX_RATIO}: {verdict(ratio <= MAX_RATIO)}")
    console.print(
        f"  target our val accuracy >= {MIN_VAL_ACCURACY}: "
        f"{verdict(a.val_accuracy >= MIN_VAL_ACCURACY)} ({a.val_accuracy:.4f})"
    )
    if args.json:
        write_json(
            args.json,
            {
                "epochs": epochs,
                "ours": {**asdict(a), "steps_per_second": a.steps_per_second},
                "ours_runs": [asdict(r) for r in ours],
                "keras": {**asdict(b), "steps_per_second": b.steps_per_second},
                "keras_runs": [asdict(r) for r in keras],
                "ratio": ratio,
                "targets": {
                    "ratio_max": MAX_RATIO,
                    "ratio_pass": ratio <= MAX_RATIO,
                    "val_accuracy_min": MIN_VAL_ACCURACY,
                    "val_accuracy_pass": a.val_accuracy >= MIN_VAL_ACCURACY,
                },
            },
        )


def run_variant(name: str, epochs: int | None) -> None:
    """Child of `--ab`: one run of a variant, a JSON line per epoch (so a timeout keeps them)."""
    import tensorflow as tf

    from lstm_cli.data.digits import load_digits
    from lstm_cli.fit.trainer import configure_threads, default_threads

    jit, intra, inter = VARIANTS[name]
    cfg = defaults()
    if jit:  # XLA has no kernel for the fused kernel's ops
        cfg["kernel"] = "ops"
    if intra == "auto":  # before any op runs, hence a fresh process per run
        configure_threads(default_threads(cfg["hidden_size"]))
    elif intra is not None:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    data = load_digits(cfg["data"]["test_size"], cfg["data"]["split_seed"], cfg["data"]["scaling"])

    def report(epoch: int, seconds: float) -> None:
        print(json.dumps({"epoch": epoch, "seconds": seconds}), flush=True)

    t = time_ours(data, cfg, epochs or cfg["epochs"], jit_compile=jit, on_epoch=report)
    print(json.dumps({"val_accuracy": t.val_accuracy}), flush=True)


def ab_run(name: str, epochs: int, timeout: float) -> dict:
    """One variant in a fresh process; past `timeout` the total is extrapolated from its epochs."""
    command = [sys.executable, __file__, "--variant", name, "--epochs", str(epochs)]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)
        lines, finished = out.stdout, True
    except subprocess.TimeoutExpired as ex:
        lines, finished = ex.stdout or "", False
        lines = lines.decode() if isinstance(lines, bytes) else lines
    except subprocess.CalledProcessError as ex:  # the run's own error, not only its exit status
        sys.exit(f"failed: {' '.join(command)}\n{ex.stderr[-3000:]}")
    records = [json.loads(line) for line in lines.splitlines() if line.startswith("{")]
    ends = [r["seconds"] for r in records if "epoch" in r]
    if not ends:
        return {"finished": False, "seconds": math.inf, "first_epoch": math.inf, "per_epoch": None}
    per_epoch = (ends[-1] - ends[0]) / (len(ends) - 1) if len(ends) > 1 else None
    seconds = ends[-1] if finished else ends[0] + (epochs - 1) * (per_epoch or math.inf)
    return {
        "finished": finished,
        "epochs_done": len(ends),
        "seconds": seconds,
        "first_epoch": ends[0],
        "per_epoch": per_epoch,
        "val_accuracy": records[-1].get("val_accuracy") if finished else None,
    }


def ab(args: argparse.Namespace) -> None:
    """Each variant `--repeats` times round-robin (so a busy spell hits all), a process a run."""
    epochs = args.epochs or defaults()["epochs"]
    repeats = args.repeats or 2
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for repeat in range(1, repeats + 1):
        for name in VARIANTS:
            console.print(f"A/B round {repeat}/{repeats}: {name}…")
            runs[name].append(ab_run(name, epochs, args.timeout))

    base = statistics.median(r["seconds"] for r in runs["default"])
    table = Table(title=f"A/B of our training loop, {epochs} epochs, a fresh process per run")
    table.add_column("variant")
    for column in ("s, each run", "median s", "vs default", "epoch 1 s", "ms/epoch", "val acc"):
        table.add_column(column, justify="right")
    for name, rs in runs.items():
        mid = statistics.median(r["seconds"] for r in rs)
        each = ", ".join(f"{r['seconds']:.2f}" + ("" if r["finished"] else "*") for r in rs)
        per_epoch = [r["per_epoch"] for r in rs if r["per_epoch"] is not None]
        accs = {f"{r['val_accuracy']:.4f}" for r in rs if r["val_accuracy"] is not None}
        table.add_row(
            name,
            each,
            f"{mid:.2f}",
            f"{mid / base:.2f}x",
            f"{statistics.median(r['first_epoch'] for r in rs):.2f}",
            f"{1000 * statistics.median(per_epoch):.0f}" if per_epoch else "-",
            ", ".join(sorted(accs)) or "-",
        )
    console.print(table)
    console.print(
        f"ms/epoch: epochs 2.. (steady state). * stopped at the {args.timeout:.0f} s timeout: "
        "the total is extrapolated from the epochs it finished."
    )
    if args.json:
        write_json(args.json, {"epochs": epochs, "timeout": args.timeout, "ab": runs})


def write_json(path: str, figures: dict) -> None:
    Path(path).write_text(json.dumps(figures, indent=2, default=str) + "\n")
    console.print(f"figures written to {path}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="epochs per run (default: conf's epochs)")
    parser.add_argument(
        "--repeats", type=int, help="runs of ours (default 3) or of each A/B variant (default 2)"
    )
    parser.add_argument("--keras-repeats", type=int, default=1, help="runs of Keras (~10 s each)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument(
        "--ab", action="store_true", help="A/B our loop: jit_compile and thread settings"
    )
    parser.add_argument(
        "--timeout", type=float, default=90, help="--ab: seconds before a run is stopped"
    )
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # an --ab child
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing
    from lstm_cli.runtime.process import import_tensorflow

    import_tensorflow()  # muted: TensorFlow's native start-up lines are not results
    if args.variant:
        run_variant(args.variant, args.epochs)
    elif args.ab:
        ab(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
