"""The LSTM cell of the seed article, written with TensorFlow ops.

One weight matrix holds the four small networks z, i, f, o:

    [z, i, f, o] = [x_t, h_tm1] @ W + B        W: (input + hidden, 4*hidden), B: (4*hidden,)
    i, f, o      = sigmoid(i), sigmoid(f), sigmoid(o)
    c_t          = c_tm1 * f + tanh(z) * i
    h_t          = c_t * o                      cell="seed" (the article drops a tanh here)
    h_t          = tanh(c_t) * o                cell="standard" (as Keras's LSTMCell)

Splitting `[x, h] @ W` into `x @ W_x + h @ W_h` is the same mathematics; it lets the model
project every time step's input in one matmul before the recurrent loop (`project_inputs`).
With precision="bf16" the two matmuls take bfloat16 operands (W cast once per sequence) and
give float32; W, B, the gates and the state stay float32. `fused_steps` computes the same steps
with all but the recurrent matmul in one C++ kernel a step (kernel=fused, `gates_kernel`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import tensorflow as tf

from lstm_cli.config.choices import Cell, Init, Precision, names
from lstm_cli.networks import fused_kernel

DTYPES = {Precision.fp32.value: tf.float32, Precision.bf16.value: tf.bfloat16}


class Gates(NamedTuple):
    """One step's activations, each (batch, hidden)."""

    z: tf.Tensor  # tanh(z): the candidate written to the cell
    i: tf.Tensor
    f: tf.Tensor
    o: tf.Tensor


class LSTMCell(tf.Module):
    """The seed article's LSTM cell.

    Args:
        input_size: features per time step (8 pixels for a digit row).
        hidden_size: units of h and c.
        cell: a `Cell`: "seed" (h = c*o) or "standard" (h = tanh(c)*o).
        init: an `Init`: "zeros" (the article) or "glorot" (Glorot-uniform W, forget-gate bias 1).
        seed: seed of the Glorot initialiser.
        precision: a `Precision`: the matmuls' dtype, "fp32" or "bf16".
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        cell: str,
        init: str,
        seed: int,
        precision: str = Precision.fp32.value,
        name: str | None = None,
    ):
        super().__init__(name=name)
        if cell not in names(Cell):
            raise ValueError(f"cell must be one of {names(Cell)}, got {cell!r}")
        if init not in names(Init):
            raise ValueError(f"init must be one of {names(Init)}, got {init!r}")
        if precision not in names(Precision):
            raise ValueError(f"precision must be one of {names(Precision)}, got {precision!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.variant = cell
        self.init = init
        self.seed = seed
        self.precision = precision
        self.compute_dtype = DTYPES[precision]
        self.W: tf.Variable | None = None
        self.B: tf.Variable | None = None

    def build(self) -> LSTMCell:
        """Create W and B."""
        rows, cols = self.input_size + self.hidden_size, 4 * self.hidden_size
        if self.init == Init.zeros:
            w = tf.zeros([rows, cols])
            b = tf.zeros([cols])
        else:
            w = tf.keras.initializers.GlorotUniform(seed=self.seed)([rows, cols])
            # A forget-gate bias of 1 (gate order z, i, f, o) keeps the cell state early on.
            h = self.hidden_size
            b = tf.concat([tf.zeros([2 * h]), tf.ones([h]), tf.zeros([h])], axis=0)
        self.W = tf.Variable(w, name="W")  # (input + hidden, 4*hidden)
        self.B = tf.Variable(b, name="B")  # (4*hidden,)
        return self

    def initial_state(self, batch: tf.Tensor | int) -> tuple[tf.Tensor, tf.Tensor]:
        """Zero (h, c), each (batch, hidden)."""
        zeros = tf.zeros([batch, self.hidden_size])
        return zeros, zeros

    def split_weights(self) -> tuple[tf.Tensor, tf.Tensor]:
        """W as W_x (input, 4*hidden) and W_h (hidden, 4*hidden): split once per sequence."""
        w = tf.cast(self.W, self.compute_dtype)  # a no-op in fp32
        w_x, w_h = tf.split(w, [self.input_size, self.hidden_size], axis=0)
        return w_x, w_h

    def matmul(self, a: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
        """a (float32) @ w (from `split_weights`), in the compute dtype; -> float32."""
        if self.compute_dtype == tf.float32:
            return tf.matmul(a, w)
        return tf.cast(tf.matmul(tf.cast(a, self.compute_dtype), w), tf.float32)

    def project_inputs(self, x: tf.Tensor, w_x: tf.Tensor) -> list[tf.Tensor]:
        """x @ W_x + B for every step in one matmul: x (batch, steps, input) -> steps x
        (batch, 4*hidden). Time-major, so that each step's rows are contiguous: the split
        (and its gradient, a concat) copies whole blocks, not strided rows."""
        steps = x.shape[1]
        flat = tf.reshape(tf.transpose(x, [1, 0, 2]), [-1, self.input_size])  # (steps*batch, input)
        xw = self.matmul(flat, w_x) + self.B  # (steps*batch, 4*hidden)
        return tf.split(xw, steps, axis=0)  # steps x (batch, 4*hidden)

    def step(
        self,
        xw_t: tf.Tensor,
        h_tm1: tf.Tensor | None,
        c_tm1: tf.Tensor | None,
        w_h: tf.Tensor,
    ) -> tuple[tf.Tensor, tf.Tensor, Gates]:
        """One step from a projected input `xw_t` (batch, 4*hidden) and W_h; -> h_t, c_t, gates.

        `h_tm1 = c_tm1 = None` is the zero state, whose terms are skipped rather than computed.
        """
        zifo = xw_t if h_tm1 is None else xw_t + self.matmul(h_tm1, w_h)  # (batch, 4*hidden)
        z, i, f, o = tf.split(zifo, 4, axis=1)  # each (batch, hidden)
        z, i, f, o = tf.tanh(z), tf.sigmoid(i), tf.sigmoid(f), tf.sigmoid(o)
        c_t = z * i if c_tm1 is None else c_tm1 * f + z * i  # (batch, hidden)
        h_t = c_t * o if self.variant == Cell.seed else tf.tanh(c_t) * o  # (batch, hidden)
        return h_t, c_t, Gates(z, i, f, o)

    def fused_steps(self, kernel: Any, x: tf.Tensor) -> tf.Tensor:
        """The last h (batch, hidden) of x (batch, steps, input), each step's work but the
        recurrent matmul in the fused kernel (`fused_kernel.load()`), input projection
        included: the numbers of `step` to float rounding."""
        w_x, w_h = self.split_weights()
        w_x = tf.cast(w_x, tf.float32)  # the projection (8 terms) runs in float32 in the kernel
        standard = self.variant == Cell.standard
        h = c = None  # the zero state
        for t in range(x.shape[1]):
            hw = None if h is None else self.matmul(h, w_h)  # (batch, 4*hidden)
            h, c = fused_kernel.step(kernel, x, t, w_x, self.B, hw, c, standard)
        return h

    def __call__(
        self, x_t: tf.Tensor, state: tuple[tf.Tensor, tf.Tensor]
    ) -> tuple[tf.Tensor, tuple[tf.Tensor, tf.Tensor]]:
        """The article's form: x_t (batch, input), state (h, c) -> h_t, (h_t, c_t)."""
        w_x, w_h = self.split_weights()
        h_t, c_t, _ = self.step(self.matmul(x_t, w_x) + self.B, *state, w_h)
        return h_t, (h_t, c_t)
