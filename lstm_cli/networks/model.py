"""The digit classifier: the scratch LSTM cell read over image rows, then a linear head.

    h_T          = LSTM(x_1 .. x_T)                 x: (batch, T=8 rows, 8 pixels)
    outputs      = activation(h_T @ Wv + bv)        (batch, classes)
    probabilities = softmax(outputs)

`outputs` are what the softmax cross-entropy is computed on (the article puts tanh here).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import tensorflow as tf

from lstm_cli.config.choices import Init, OutputActivation, Precision, names
from lstm_cli.networks.cell import Gates, LSTMCell

# One op per `OutputActivation`; a test checks that the keys are exactly its values.
ACTIVATIONS = {
    OutputActivation.tanh.value: tf.tanh,
    OutputActivation.linear.value: tf.identity,
    OutputActivation.sigmoid.value: tf.sigmoid,
    OutputActivation.relu.value: tf.nn.relu,
}


class Trace(NamedTuple):
    """Every step of a sequence, each (steps, batch, hidden)."""

    h: tf.Tensor
    c: tf.Tensor
    i: tf.Tensor
    f: tf.Tensor
    o: tf.Tensor


class DigitsLSTM(tf.Module):
    """An LSTM over the rows of an image and a linear head on its last hidden state.

    Args:
        input_size: pixels per row (read from the data).
        num_classes: classes (read from the data).
        hidden_size: LSTM units.
        cell: "seed" or "standard" (see `LSTMCell`).
        init: "zeros" (the article: LSTM weights 0, head N(0, 0.01) truncated) or "glorot".
        output_activation: an `OutputActivation` value, applied to the head before softmax.
        seed: seed of every initialiser.
        precision: the LSTM matmuls' dtype, "fp32" or "bf16" (see `LSTMCell`); not part of the
            architecture: the weights are float32 either way.
    """

    def __init__(
        self,
        input_size: int,
        num_classes: int,
        hidden_size: int,
        *,
        cell: str,
        init: str,
        output_activation: str,
        seed: int,
        precision: str = Precision.fp32.value,
    ):
        super().__init__(name="digits_lstm")
        allowed = names(OutputActivation)
        if output_activation not in allowed:
            raise ValueError(
                f"output_activation must be one of {allowed}, got {output_activation!r}"
            )
        self.input_size = input_size
        self.num_classes = num_classes
        self.hidden_size = hidden_size
        self.cell = cell
        self.output_activation = output_activation
        self.init = init
        self.seed = seed
        self.precision = precision
        self.layer = LSTMCell(
            input_size, hidden_size, cell=cell, init=init, seed=seed, precision=precision
        )
        self.Wv: tf.Variable | None = None
        self.bv: tf.Variable | None = None

    def build(self) -> DigitsLSTM:
        """Create the cell's and the head's weights."""
        self.layer.build()
        shape = [self.hidden_size, self.num_classes]
        if self.init == Init.zeros:
            normal = tf.keras.initializers.TruncatedNormal(stddev=0.01, seed=self.seed)
            wv, bv = normal(shape), normal([self.num_classes])
        else:
            wv = tf.keras.initializers.GlorotUniform(seed=self.seed + 1)(shape)
            bv = tf.zeros([self.num_classes])
        self.Wv = tf.Variable(wv, name="Wv")  # (hidden, classes)
        self.bv = tf.Variable(bv, name="bv")  # (classes,)
        return self

    def head(self, h: tf.Tensor) -> tf.Tensor:
        """(batch, hidden) -> activated outputs (batch, classes)."""
        return ACTIVATIONS[self.output_activation](tf.matmul(h, self.Wv) + self.bv)

    def _steps(self, x: tf.Tensor) -> Iterator[tuple[tf.Tensor, tf.Tensor, Gates]]:
        """(h_t, c_t, gates) for each row of x (batch, steps, input), unrolled when traced."""
        w_x, w_h = self.layer.split_weights()
        h = c = None  # the zero state
        for xw_t in self.layer.project_inputs(x, w_x):  # steps x (batch, 4*hidden)
            h, c, gates = self.layer.step(xw_t, h, c, w_h)
            yield h, c, gates

    def trace(self, x: tf.Tensor) -> Trace:
        """Run the LSTM over x (batch, steps, input) and keep every step's state and gates."""
        steps = [(h, c, g.i, g.f, g.o) for h, c, g in self._steps(x)]
        return Trace(*(tf.stack(parts) for parts in zip(*steps, strict=True)))

    def __call__(self, x: tf.Tensor, kernel: Any = None) -> tf.Tensor:
        """x (batch, steps, input) -> activated outputs (batch, classes). `kernel`: the fused
        kernel's ops (`fused_kernel.load()`), or None for TensorFlow ops (as the logged model,
        which must load without this package)."""
        if kernel is None:
            *_, (h, _, _) = self._steps(x)  # the state after the last row
            return self.head(h)  # (batch, classes)
        return self.head(self.layer.fused_steps(kernel, x))  # (batch, classes)

    def get_weights(self) -> dict[str, object]:
        """Weights as NumPy arrays, by name."""
        return {
            "W": self.layer.W.numpy(),
            "B": self.layer.B.numpy(),
            "Wv": self.Wv.numpy(),
            "bv": self.bv.numpy(),
        }

    def set_weights(self, weights: dict[str, object]) -> None:
        """Assign weights saved by `get_weights` (the model must be built)."""
        self.layer.W.assign(weights["W"])
        self.layer.B.assign(weights["B"])
        self.Wv.assign(weights["Wv"])
        self.bv.assign(weights["bv"])
