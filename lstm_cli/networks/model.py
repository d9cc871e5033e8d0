"""The digit classifier: recurrent layers read over a digit's steps, then a linear head.

    h^1_t         = cell^1(x_t, state^1_tm1)            x: (batch, steps, input) (the reading's)
    h^k_t         = cell^k(h^(k-1)_t, state^k_tm1)      k = 2..layers, stacked
    outputs       = activation(h^layers_T @ Wv + bv)    (batch, classes)
    probabilities = softmax(outputs)

`outputs` are what the softmax cross-entropy is computed on (the article puts tanh here). The
cells are `networks.cells`' (`cell=`); what the data determines (input size, classes) is read
from the data.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import tensorflow as tf

from lstm_cli.config.choices import Init, OutputActivation, Precision, names
from lstm_cli.networks.cells import CELLS, RecurrentCell

# One op per `OutputActivation`; a test checks that the keys are exactly its values.
ACTIVATIONS = {
    OutputActivation.tanh.value: tf.tanh,
    OutputActivation.linear.value: tf.identity,
    OutputActivation.sigmoid.value: tf.sigmoid,
    OutputActivation.relu.value: tf.nn.relu,
}
LAYER_SEED = 1000  # layer k > 1 seeds its initialiser with seed + LAYER_SEED * k


def forget_bias_for(init: str, forget_bias: float | None) -> float:
    """The forget gate's initial bias: the one given, else 1 with Glorot weights (Keras's
    `unit_forget_bias`), 0 with the article's zeros."""
    if forget_bias is not None:
        return float(forget_bias)
    return 1.0 if init == Init.glorot else 0.0


class DigitsRNN(tf.Module):
    """Recurrent layers over a digit's steps and a linear head on the last one's last h.

    Args:
        input_size: features per step (read from the data: 8 pixels a row, 1 a pixel).
        num_classes: classes (read from the data).
        hidden_size: units of each layer.
        cell: a `Cell` (see `networks.cells.CELLS`).
        init: "zeros" (the article: recurrent weights 0, head N(0, 0.01) truncated) or "glorot".
        output_activation: an `OutputActivation` value, applied to the head before softmax.
        seed: seed of every initialiser.
        layers: recurrent layers, stacked.
        forget_bias: the forget gate's initial bias (None: by `init`, see `forget_bias_for`).
        precision: the matmuls' dtype, "fp32" or "bf16" (see `cells.base`); not part of the
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
        layers: int = 1,
        forget_bias: float | None = None,
        precision: str = Precision.fp32.value,
    ):
        super().__init__(name="digits_rnn")
        allowed = names(OutputActivation)
        if output_activation not in allowed:
            raise ValueError(
                f"output_activation must be one of {allowed}, got {output_activation!r}"
            )
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {list(CELLS)}, got {cell!r}")
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        self.input_size = input_size
        self.num_classes = num_classes
        self.hidden_size = hidden_size
        self.cell = cell
        self.output_activation = output_activation
        self.init = init
        self.seed = seed
        self.precision = precision
        self.forget_bias = forget_bias_for(init, forget_bias)
        self.layers: list[RecurrentCell] = [
            CELLS[cell](
                input_size if k == 0 else hidden_size,
                hidden_size,
                init=init,
                seed=seed + LAYER_SEED * k,
                forget_bias=self.forget_bias,
                precision=precision,
                name=f"layer_{k + 1}",
            )
            for k in range(layers)
        ]
        self.Wv: tf.Variable | None = None
        self.bv: tf.Variable | None = None

    @property
    def fused(self) -> bool:
        """Whether the fused kernel can compute its steps: one layer of a cell it serves."""
        return len(self.layers) == 1 and self.layers[0].kernel_variant is not None

    def build(self) -> DigitsRNN:
        """Create the layers' and the head's weights."""
        for layer in self.layers:
            layer.build()
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

    def _steps(self, x: tf.Tensor) -> Iterator[tuple[tf.Tensor, dict[str, tf.Tensor]]]:
        """(h_t of the last layer, the first layer's shown activations) for each step of x
        (batch, steps, input), unrolled when traced; the layers one after another."""
        shown: list[dict[str, tf.Tensor]] = []
        for k, layer in enumerate(self.layers):
            w_x, w_h = layer.split_weights()
            state, hs = None, []  # the zero state
            for xw_t in layer.project_inputs(x, w_x):  # steps x (batch, blocks*hidden)
                h, state, acts = layer.step(xw_t, state, w_h)
                hs.append(h)
                if k == 0:
                    shown.append(acts)
            if k + 1 < len(self.layers):
                x = tf.stack(hs, axis=1)  # (batch, steps, hidden): the next layer's input
        yield from zip(hs, shown, strict=True)

    def trace(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        """Run over x (batch, steps, input) keeping every step: "h" (the last layer's) and the
        first layer's shown activations, each (steps, batch, hidden)."""
        steps = list(self._steps(x))
        kept = {"h": tf.stack([h for h, _ in steps])}
        for name in self.layers[0].shown:
            kept[name] = tf.stack([acts[name] for _, acts in steps])
        return kept

    def __call__(self, x: tf.Tensor, kernel: Any = None) -> tf.Tensor:
        """x (batch, steps, input) -> activated outputs (batch, classes). `kernel`: the fused
        kernel's ops (`fused_kernel.load()`), used where it serves the cell (see `fused`), or
        None for TensorFlow ops (as the logged model, which must load without this package)."""
        if kernel is not None and self.fused:
            return self.head(self.layers[0].fused_steps(kernel, x))  # (batch, classes)
        *_, (h, _) = self._steps(x)  # the state after the last step
        return self.head(h)  # (batch, classes)

    def get_weights(self) -> dict[str, object]:
        """Weights as NumPy arrays, by name: the first layer's as they are (W, B, ...), a
        stacked layer's with its number (W.2, B.2, ...), the head's Wv and bv."""
        found = {}
        for k, layer in enumerate(self.layers):
            suffix = "" if k == 0 else f".{k + 1}"
            found |= {f"{name}{suffix}": v.numpy() for name, v in layer.weights().items()}
        return {**found, "Wv": self.Wv.numpy(), "bv": self.bv.numpy()}

    def set_weights(self, weights: dict[str, object]) -> None:
        """Assign weights saved by `get_weights` (the model must be built)."""
        for k, layer in enumerate(self.layers):
            suffix = "" if k == 0 else f".{k + 1}"
            for name, variable in layer.weights().items():
                variable.assign(weights[f"{name}{suffix}"])
        self.Wv.assign(weights["Wv"])
        self.bv.assign(weights["bv"])
