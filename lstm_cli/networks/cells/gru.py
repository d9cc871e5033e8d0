"""`cell=gru`: the gated recurrent unit (Cho et al., 2014), as Keras's `GRUCell` with its
default `reset_after=True` (the reset gate applied after the recurrent matmul, cuDNN's form).

    u_t = sigmoid(W_u x_t + R_u h_tm1 + b_u + r_u)        the update gate
    r_t = sigmoid(W_r x_t + R_r h_tm1 + b_r + r_r)        the reset gate
    n_t = tanh(W_n x_t + b_n + r_t * (R_n h_tm1 + r_n))   the candidate
    h_t = u_t * h_tm1 + (1 - u_t) * n_t

W = [W; R]: (input + hidden, 3*hidden), blocks u, r, n (Keras's z, r, h); B the input biases
b, BR the recurrent ones r (Keras's bias of shape (2, 3*hidden)). Chung et al. (2014) found it
on par with the LSTM, both above a tanh RNN.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from lstm_cli.networks import fused_kernel
from lstm_cli.networks.cells.base import RecurrentCell, State


class GRU(RecurrentCell):
    """The GRU (see the module)."""

    blocks = ("u", "r", "n")
    shown = ("u", "r")
    kernel_variant = "gru"

    def build(self) -> GRU:
        super().build()
        self.BR = tf.Variable(tf.zeros([3 * self.hidden_size]), name="BR")  # recurrent biases
        return self

    def weights(self) -> dict[str, tf.Variable]:
        return {**super().weights(), "BR": self.BR}

    def step(
        self, xw_t: tf.Tensor, state: State, w_h: tf.Tensor
    ) -> tuple[tf.Tensor, State, dict[str, tf.Tensor]]:
        (h_tm1,) = state if state is not None else (None,)
        x = self.split_blocks(xw_t)  # W x + b, each (batch, hidden)
        if h_tm1 is None:  # the zero state: R h is 0, its bias stays
            h = self.split_blocks(tf.broadcast_to(self.BR, tf.shape(xw_t)))
        else:
            h = self.split_blocks(self.matmul(h_tm1, w_h) + self.BR)  # R h + r
        u = tf.sigmoid(x["u"] + h["u"])
        r = tf.sigmoid(x["r"] + h["r"])
        n = tf.tanh(x["n"] + r * h["n"])
        h_t = (1.0 - u) * n if h_tm1 is None else u * h_tm1 + (1.0 - u) * n  # (batch, hidden)
        return h_t, (h_t,), {"u": u, "r": r}

    def fused_step(
        self, kernel: Any, x: tf.Tensor, t: int, w_x: tf.Tensor, hw: tf.Tensor | None, state: State
    ) -> tuple[tf.Tensor]:
        h_tm1 = None if state is None else state[0]
        return (fused_kernel.gru_step(kernel, x, t, w_x, self.B, self.BR, hw, h_tm1),)


CELL = GRU  # what `cell=gru` builds
