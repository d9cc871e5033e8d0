"""`cell=rnn`: the plain recurrent network (Elman, 1990), as Keras's `SimpleRNNCell`: no gate,
so its gradient through many steps vanishes or explodes (Bengio et al., 1994), the failure the
LSTM was made for.

    h_t = tanh(W_h x_t + R_h h_tm1 + b_h)
"""

from __future__ import annotations

import tensorflow as tf

from lstm_cli.networks.cells.base import RecurrentCell, State


class RNN(RecurrentCell):
    """The tanh RNN (see the module)."""

    blocks = ("h",)

    def step(
        self, xw_t: tf.Tensor, state: State, w_h: tf.Tensor
    ) -> tuple[tf.Tensor, State, dict[str, tf.Tensor]]:
        (h_tm1,) = state if state is not None else (None,)
        h_t = tf.tanh(self.recurrent(xw_t, h_tm1, w_h))  # (batch, hidden)
        return h_t, (h_t,), {}


CELL = RNN  # what `cell=rnn` builds
