"""What every recurrent cell shares: one weight matrix over [x_t, h_tm1] for all its blocks (a
block per gate or candidate), a bias, the input projection of every step in one matmul, and
bfloat16 matmuls on request. A cell is a subclass with its blocks and its `step`.

    [a_1, ..., a_k] = [x_t, h_tm1] @ W + B     W: (input + hidden, k*hidden), B: (k*hidden,)

Splitting `[x, h] @ W` into `x @ W_x + h @ W_h` is the same mathematics; it lets a model
project every time step's input in one matmul before the recurrent loop (`project_inputs`).
With precision="bf16" the two matmuls take bfloat16 operands (W cast once per sequence) and
give float32; the weights, the gates and the state stay float32.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from lstm_cli.config.choices import Init, Precision, names

DTYPES = {Precision.fp32.value: tf.float32, Precision.bf16.value: tf.bfloat16}
State = tuple[tf.Tensor, ...] | None  # (h,) or (h, c); None: the zero state, its terms skipped


class RecurrentCell(tf.Module):
    """A recurrent cell with TensorFlow ops (see the module).

    Args:
        input_size: features per step (8 pixels of a row, 1 of a pixel).
        hidden_size: units of h (and c).
        init: an `Init`: "zeros" (the article: every weight 0) or "glorot" (Glorot-uniform W).
        seed: seed of the Glorot initialiser.
        forget_bias: the forget gate's initial bias (a cell without one ignores it).
        precision: a `Precision`: the matmuls' dtype, "fp32" or "bf16".

    Class attributes a cell sets:
        blocks: W's column blocks, in order (gates and candidates, by their letters).
        carries_c: its state holds a cell state c besides h.
        shown: the activations the gate heatmaps show, in order ("c" for the cell state).
        kernel_variant: the fused kernel's op family for its step ("lstm", "gru"), or None:
            TensorFlow ops only. A cell with one gives its `fused_step`.
    """

    blocks: tuple[str, ...] = ()
    carries_c = False
    shown: tuple[str, ...] = ()
    kernel_variant: str | None = None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        init: str,
        seed: int,
        forget_bias: float = 0.0,
        precision: str = Precision.fp32.value,
        name: str | None = None,
    ):
        super().__init__(name=name)
        if init not in names(Init):
            raise ValueError(f"init must be one of {names(Init)}, got {init!r}")
        if precision not in names(Precision):
            raise ValueError(f"precision must be one of {names(Precision)}, got {precision!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.init = init
        self.seed = seed
        self.forget_bias = forget_bias
        self.precision = precision
        self.compute_dtype = DTYPES[precision]
        self.W: tf.Variable | None = None
        self.B: tf.Variable | None = None

    def build(self) -> RecurrentCell:
        """Create the weights."""
        rows, cols = self.input_size + self.hidden_size, len(self.blocks) * self.hidden_size
        if self.init == Init.zeros:
            w = tf.zeros([rows, cols])
        else:
            w = tf.keras.initializers.GlorotUniform(seed=self.seed)([rows, cols])
        self.W = tf.Variable(w, name="W")  # (input + hidden, blocks*hidden)
        self.B = tf.Variable(self.initial_bias(), name="B")  # (blocks*hidden,)
        return self

    def initial_bias(self) -> tf.Tensor:
        """Zeros, but `forget_bias` on a forget gate's block ("f")."""
        h = self.hidden_size
        return tf.concat(
            [tf.fill([h], float(self.forget_bias) if b == "f" else 0.0) for b in self.blocks], 0
        )

    def weights(self) -> dict[str, tf.Variable]:
        """Every weight, by name (`DigitsRNN.get_weights` prefixes a stacked layer's)."""
        return {"W": self.W, "B": self.B}

    def split_weights(self) -> tuple[tf.Tensor, tf.Tensor]:
        """W as W_x (input, blocks*hidden) and W_h (hidden, blocks*hidden): once a sequence."""
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
        (batch, blocks*hidden). Time-major, so that each step's rows are contiguous: the split
        (and its gradient, a concat) copies whole blocks, not strided rows."""
        steps = x.shape[1]
        flat = tf.reshape(tf.transpose(x, [1, 0, 2]), [-1, self.input_size])  # (steps*batch, in)
        xw = self.matmul(flat, w_x) + self.B  # (steps*batch, blocks*hidden)
        return tf.split(xw, steps, axis=0)  # steps x (batch, blocks*hidden)

    def recurrent(self, xw_t: tf.Tensor, h_tm1: tf.Tensor | None, w_h: tf.Tensor) -> tf.Tensor:
        """The step's pre-activations: xw_t + h_tm1 @ W_h (xw_t alone from the zero state)."""
        return xw_t if h_tm1 is None else xw_t + self.matmul(h_tm1, w_h)

    def split_blocks(self, a: tf.Tensor) -> dict[str, tf.Tensor]:
        """(batch, blocks*hidden) -> each block's (batch, hidden), by its letter."""
        return dict(zip(self.blocks, tf.split(a, len(self.blocks), axis=1), strict=True))

    def step(
        self, xw_t: tf.Tensor, state: State, w_h: tf.Tensor
    ) -> tuple[tf.Tensor, State, dict[str, tf.Tensor]]:
        """One step from a projected input `xw_t` (batch, blocks*hidden) and the state ->
        h_t (batch, hidden), the new state, and the activations `shown` names."""
        raise NotImplementedError

    def __call__(self, x_t: tf.Tensor, state: State) -> tuple[tf.Tensor, State]:
        """One step in the article's form: x_t (batch, input), state -> h_t, state_t."""
        w_x, w_h = self.split_weights()
        h_t, state_t, _ = self.step(self.matmul(x_t, w_x) + self.B, state, w_h)
        return h_t, state_t

    def fused_steps(self, kernel: Any, x: tf.Tensor) -> tf.Tensor:
        """The last h (batch, hidden) of x (batch, steps, input), each step's work but the
        recurrent matmul in the fused kernel (`fused_kernel.load()`), input projection
        included: the numbers of `step` to float rounding. For the cells it serves
        (`kernel_variant`)."""
        w_x, w_h = self.split_weights()
        w_x = tf.cast(w_x, tf.float32)  # the projection runs in float32 in the kernel
        state = None  # the zero state
        for t in range(x.shape[1]):
            hw = None if state is None else self.matmul(state[0], w_h)  # (batch, blocks*hidden)
            state = self.fused_step(kernel, x, t, w_x, hw, state)
        return state[0]

    def fused_step(
        self, kernel: Any, x: tf.Tensor, t: int, w_x: tf.Tensor, hw: tf.Tensor | None, state: State
    ) -> tuple[tf.Tensor, ...]:
        """Step `t` of x in the fused kernel, given hw = h_tm1 @ W_h (batch, blocks*hidden)
        (hw and state None from the zero state) -> the new state, h first."""
        raise NotImplementedError(f"the fused kernel does not serve {type(self).__name__}")
