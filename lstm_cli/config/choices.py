"""The allowed values of the config's choice keys: one list each, read by the schema, the cells
and the model. No TensorFlow or Hydra here: the CLI checks values before importing either."""

from __future__ import annotations

from enum import Enum


class Cell(str, Enum):
    """`cell`: the recurrent cell (lstm_cli/networks/cells/, a file each)."""

    article = "article"  # the article's LSTM: h = c*o (no output tanh, no peepholes)
    lstm = "lstm"  # the standard LSTM, as Keras's LSTMCell: h = tanh(c)*o
    peephole = "peephole"  # Gers & Schmidhuber's peepholes: Greff et al.'s vanilla LSTM
    cifg = "cifg"  # vanilla, its forget gate coupled to the input gate: f = 1 - i
    nig = "nig"  # vanilla without an input gate
    nfg = "nfg"  # vanilla without a forget gate
    nog = "nog"  # vanilla without an output gate
    niaf = "niaf"  # vanilla without the candidate's tanh
    gru = "gru"  # the GRU, as Keras's GRUCell (reset_after)
    rnn = "rnn"  # the tanh RNN, as Keras's SimpleRNNCell


RENAMED_CELLS = {"seed": "article", "standard": "lstm"}  # `cell` values before 2026-12-07


class Reading(str, Enum):
    """`data.reading`: how a digit's 64 pixels become a sequence (lstm_cli/data/readings/)."""

    rows = "rows"  # 8 steps of 8 pixels, top to bottom (the article's)
    columns = "columns"  # 8 steps of 8 pixels, left to right
    pixels = "pixels"  # 64 steps of 1 pixel, row by row
    permuted = "permuted"  # 64 steps of 1 pixel, in a fixed random order (data.permutation_seed)


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
