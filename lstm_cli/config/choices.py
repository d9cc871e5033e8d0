"""The allowed values of the config's choice keys: one list each, read by the schema, the cell
and the model. No TensorFlow or Hydra here: the CLI checks values before importing either."""

from __future__ import annotations

from enum import Enum


class Cell(str, Enum):
    """`cell`: how h is read out of the cell state."""

    seed = "seed"  # h = c*o, as the article
    standard = "standard"  # h = tanh(c)*o, as Keras's LSTMCell


class Init(str, Enum):
    """`init`: how the weights start."""

    zeros = "zeros"  # the article: LSTM weights 0, head truncated N(0, 0.01)
    glorot = "glorot"  # Glorot-uniform kernels, forget-gate bias 1


class OutputActivation(str, Enum):
    """`output_activation`: applied to the linear head before the softmax."""

    tanh = "tanh"
    linear = "linear"
    sigmoid = "sigmoid"
    relu = "relu"


class Scaling(str, Enum):
    """`data.scaling`: pixels as the model sees them."""

    raw = "raw"  # 0..16, as the dataset (the article)
    unit = "unit"  # divided by 16


class Monitored(str, Enum):
    """`early_stopping.metric`, `prune.metric`: the validation number watched."""

    val_loss = "val_loss"  # lower is better
    val_accuracy = "val_accuracy"  # higher is better


class Pruning(str, Enum):
    """`prune.kind` (the `prune` config group): which sweep points stop early."""

    none = "none"  # every point trains all its epochs
    median = "median"  # worse than the median of the others at a rung: stop
    asha = "asha"  # not in the top 1/reduction_factor at a rung: stop (successive halving)


class Precision(str, Enum):
    """`precision`: the dtype of the LSTM's matmuls (weights, gates and Adam stay float32)."""

    fp32 = "fp32"  # float32 throughout
    bf16 = "bf16"  # bfloat16 matmuls: opt in, on CPUs with bfloat16 instructions only


class Kernel(str, Enum):
    """`kernel`: how the cell's elementwise steps (activations, state update) are computed."""

    auto = "auto"  # fused where the kernel builds and the CPU runs the model, else ops
    fused = "fused"  # one C++ kernel a step, forward and backward (built on first use)
    ops = "ops"  # TensorFlow ops: the reference


def names(choice: type[Enum]) -> list[str]:
    """The allowed values as typed on the command line."""
    return [member.value for member in choice]
