#!/usr/bin/env bash
# The same training code on an NVIDIA GPU: run this on a machine that has one (none was at hand
# when it was written, so it has only been run on a CPU, with GPU_CHECK_ALLOW_CPU=1).
#
#     bash bench/gpu_check.sh                      # ~5 min: the install is most of it
#     EPOCHS=20 bash bench/gpu_check.sh            # a shorter training
#
# It installs the project (make install) and tensorflow[and-cuda] at the locked TensorFlow
# version into .venv, checks that TensorFlow sees a GPU, then trains hidden 50 and 512 with the
# default experiment's other settings (the validation split carved out as `lstm-digits train`
# does) and prints, for each, the loop's time (first epoch, tracing included, and ms per epoch
# after it) and the accuracy on the test split.
set -euo pipefail
cd "$(dirname "$0")/.."

EPOCHS="${EPOCHS:-100}"
make install
TF_VERSION="$(.venv/bin/python -c 'from importlib.metadata import version; print(version("tensorflow"))')"
if [ -z "${GPU_CHECK_ALLOW_CPU:-}" ]; then
    .venv/bin/python -m pip install --quiet "tensorflow[and-cuda]==${TF_VERSION}"
fi

EPOCHS="$EPOCHS" .venv/bin/python - <<'EOF'
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
import yaml

from lstm_cli.data.digits import load_digits
from lstm_cli.fit.hooks.base import Hook
from lstm_cli.fit.loop import fit
from lstm_cli.fit.trainer import Trainer, configure_threads, default_threads, evaluate, set_seed
from lstm_cli.networks import fused_kernel
from lstm_cli.networks.model import DigitsRNN


class Clock(Hook):
    """Each epoch's end, in perf_counter seconds."""

    def __init__(self):
        self.ends = []

    def on_epoch_end(self, loop, metrics):
        self.ends.append(time.perf_counter())


gpus = tf.config.list_physical_devices("GPU")
print(f"TensorFlow {tf.__version__}, GPUs: {[g.name for g in gpus] or 'none'}")
if not gpus and not os.environ.get("GPU_CHECK_ALLOW_CPU"):
    raise SystemExit("no GPU visible to TensorFlow: check the NVIDIA driver (nvidia-smi)")
cfg = yaml.safe_load(open("conf/config.yaml"))
d, epochs = cfg["data"], int(os.environ["EPOCHS"])
data = load_digits(d["test_size"], d["split_seed"], d["scaling"], d["val_size"])
configure_threads(default_threads(512, len(os.sched_getaffinity(0))))
kernel, note = fused_kernel.for_config(cfg["kernel"])  # auto: TensorFlow ops where a GPU runs
print(f"kernel: {'fused' if kernel else 'ops'}" + (f" ({note})" if note else ""))
for hidden in (50, 512):
    set_seed(cfg["seed"])
    model = DigitsRNN(
        input_size=data.input_size, num_classes=data.num_classes, hidden_size=hidden,
        cell=cfg["cell"], init=cfg["init"], output_activation=cfg["output_activation"],
        seed=cfg["seed"],
    ).build()
    trainer = Trainer(model, cfg["learning_rate"], cfg["batch_size"], seed=cfg["seed"],
                      shuffle=d["shuffle"], kernel=kernel)
    clock = Clock()
    start = time.perf_counter()
    history = fit(trainer, data, epochs, [clock]).history
    ends = clock.ends
    per_epoch = (ends[-1] - ends[0]) / max(len(ends) - 1, 1)
    _, test_accuracy = evaluate(model, data.x_test, data.y_test)
    print(f"hidden {hidden}: {epochs} epochs in {ends[-1] - start:.2f} s (epoch 1 "
          f"{ends[0] - start:.2f} s, then {1000 * per_epoch:.1f} ms/epoch); "
          f"val accuracy {history[-1].val_accuracy:.4f}, test accuracy {test_accuracy:.4f}")
EOF
