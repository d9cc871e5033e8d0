"""The test split read by both kernels: the fused kernel and TensorFlow's ops, same weights.

    python bench/bench_gates_paths.py                                  # the default run, seeds 0-4
    python bench/bench_gates_paths.py --seeds 0 1 --overrides hidden_size=200 precision=bf16

A run's epochs (`train_*`, `val_*`) come from the fused kernel where `kernel=auto` finds it,
its test numbers and its logged model from TensorFlow's ops (docs/model.md says why). For each
seed this trains as `lstm-digits train OVERRIDES seed=S` does, with the kernel, then reads the
test split both ways: the largest difference of the outputs, how many digits change class, and
each path's test accuracy and loss. Nothing is tracked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def compare(overrides: list[str], kernel) -> dict[str, float]:
    """Train the run `overrides` describe with the fused kernel; the test split by both paths."""
    import numpy as np
    import tensorflow as tf

    from lstm_cli.config import compose
    from lstm_cli.data.digits import split_for
    from lstm_cli.fit.loop import fit
    from lstm_cli.fit.trainer import Trainer, loss_and_correct, set_seed
    from lstm_cli.jobs.resume_rules import model_spec
    from lstm_cli.networks.model import DigitsRNN

    cfg = compose.compose(overrides)
    set_seed(cfg.seed)
    data = split_for(cfg.data)
    model = DigitsRNN(**model_spec(cfg, data)["model"], precision=cfg.precision.value).build()
    trainer = Trainer(
        model,
        cfg.learning_rate,
        cfg.batch_size,
        seed=cfg.seed,
        shuffle=cfg.data.shuffle,
        kernel=kernel,
    )
    fit(trainer, data, cfg.epochs)
    x, y = tf.constant(data.x_test), tf.constant(data.y_test)
    ours, theirs = model(x, kernel), model(x)  # (n, classes) each: fused, TensorFlow ops
    (loss_f, correct_f), (loss_o, correct_o) = (loss_and_correct(o, y) for o in (ours, theirs))
    ours, theirs = ours.numpy(), theirs.numpy()
    return {
        "max_diff": float(np.abs(ours - theirs).max()),
        "flips": int((ours.argmax(1) != theirs.argmax(1)).sum()),
        "digits": len(data.y_test),
        "acc_fused": float(correct_f) / len(data.y_test),
        "acc_ops": float(correct_o) / len(data.y_test),
        "loss_diff": abs(float(loss_f) - float(loss_o)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--overrides", nargs="*", default=[], help="`train` overrides")
    args = parser.parse_args()

    from lstm_cli.runtime.process import import_tensorflow, quiet

    quiet()
    import_tensorflow()  # muted, before the modules below import it
    from lstm_cli.config import compose
    from lstm_cli.fit.trainer import configure_threads, default_threads
    from lstm_cli.networks import fused_kernel

    configure_threads(default_threads(compose.compose(args.overrides).hidden_size))
    kernel, _ = fused_kernel.for_config("fused")
    print(f"overrides: {' '.join(args.overrides) or '(none: the default run)'}")
    print("seed  max |outputs diff|  digits changing class  test acc fused / ops  |loss diff|")
    for seed in args.seeds:
        r = compare([*args.overrides, f"seed={seed}"], kernel)
        print(
            f"{seed:4d}  {r['max_diff']:18.2e}  {r['flips']:14d} of {r['digits']}  "
            f"{r['acc_fused']:9.4f} / {r['acc_ops']:.4f}  {r['loss_diff']:11.2e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
