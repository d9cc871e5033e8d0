"""`cell=cifg`: the coupled input-forget gate (Greff et al.'s CIFG, as in the GRU): the cell
forgets what it writes, one gate for both.

    i_t = sigmoid(W_i [x_t, h_tm1] + p_i * c_tm1 + b_i)
    f_t = 1 - i_t
    c_t = f_t * c_tm1 + i_t * tanh(W_z [x_t, h_tm1] + b_z)
    o_t, h_t as the vanilla LSTM's (`cells.peephole`)

Its input gate's bias starts at -forget_bias: the forget gate it makes then starts near the
forget bias asked for.
"""

from __future__ import annotations

import tensorflow as tf

from lstm_cli.networks.cells.peephole import Peephole


class CIFG(Peephole):
    """The vanilla LSTM with f = 1 - i."""

    blocks = ("z", "i", "o")
    coupled = True

    def initial_bias(self) -> tf.Tensor:
        h = self.hidden_size
        return tf.concat([tf.zeros([h]), tf.fill([h], -float(self.forget_bias)), tf.zeros([h])], 0)

    def forget_gate(self, a, c_tm1, i):
        return 1.0 - i


CELL = CIFG  # what `cell=cifg` builds
