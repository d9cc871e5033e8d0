"""`cell=peephole`: the LSTM with peephole connections (Gers & Schmidhuber, 2000): the gates
see the cell state. Greff et al.'s "vanilla" LSTM, the one their variants change.

    i_t = sigmoid(W_i [x_t, h_tm1] + p_i * c_tm1 + b_i)
    f_t = sigmoid(W_f [x_t, h_tm1] + p_f * c_tm1 + b_f)
    c_t = f_t * c_tm1 + i_t * tanh(W_z [x_t, h_tm1] + b_z)
    o_t = sigmoid(W_o [x_t, h_tm1] + p_o * c_t + b_o)    (the new cell state)
    h_t = tanh(c_t) * o_t

The peepholes p_i, p_f, p_o are vectors (hidden,), starting at 0 (the P weight, (3, hidden)).
"""

from __future__ import annotations

import tensorflow as tf

from lstm_cli.networks.cells.lstm import LSTM


class Peephole(LSTM):
    """The vanilla LSTM: the standard one, its gates peeping at the cell state."""

    peepholes = True

    def build(self) -> Peephole:
        super().build()
        self.P = tf.Variable(tf.zeros([3, self.hidden_size]), name="P")  # p_i, p_f, p_o
        return self

    def weights(self) -> dict[str, tf.Variable]:
        return {**super().weights(), "P": self.P}

    def peep(self, pre: tf.Tensor, which: int, c: tf.Tensor | None) -> tf.Tensor:
        """A gate's pre-activation with its peephole on `c` (none from the zero state)."""
        return pre if c is None else pre + self.P[which] * c

    def input_gate(self, a, c_tm1):
        return tf.sigmoid(self.peep(a["i"], 0, c_tm1))

    def forget_gate(self, a, c_tm1, i):
        return tf.sigmoid(self.peep(a["f"], 1, c_tm1))

    def output_gate(self, a, c_t):
        return tf.sigmoid(self.peep(a["o"], 2, c_t))


CELL = Peephole  # what `cell=peephole` builds
