"""`cell=lstm`: the standard LSTM, as Keras's `LSTMCell` (Hochreiter & Schmidhuber, 1997, with
Gers et al.'s forget gate, 2000), without peepholes. The LSTM variants are subclasses that
change one piece of `step` each (Greff et al., "LSTM: A Search Space Odyssey", 2015).

    z_t = tanh(W_z [x_t, h_tm1] + b_z)          the candidate
    i_t = sigmoid(W_i [x_t, h_tm1] + b_i)       the input gate
    f_t = sigmoid(W_f [x_t, h_tm1] + b_f)       the forget gate (b_f starts at forget_bias)
    c_t = f_t * c_tm1 + i_t * z_t
    o_t = sigmoid(W_o [x_t, h_tm1] + b_o)       the output gate
    h_t = tanh(c_t) * o_t
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from lstm_cli.networks import fused_kernel
from lstm_cli.networks.cells.base import RecurrentCell, State


class LSTM(RecurrentCell):
    """The standard LSTM (see the module); W's blocks z, i, f, o, as the article's."""

    blocks = ("z", "i", "f", "o")
    carries_c = True
    shown = ("i", "f", "o", "c")
    kernel_variant = "lstm"
    # The step's form, as the fused kernel takes it (`kernel_form`) with the gates present in
    # `blocks`: `candidate` and `output` read theirs; a variant that changes another hook sets
    # its attr beside it (tests/test_fused_kernel.py checks that both paths agree).
    peepholes = False  # the gates see the cell state (`cells.peephole`)
    coupled = False  # f = 1 - i (`cells.cifg`)
    input_tanh = True  # z = tanh(a_z) (`cells.niaf`: a_z)
    output_tanh = True  # h = tanh(c) * o (`cells.article`: c * o)

    # The pieces a variant changes; a gate that is not there is None (a constant 1).
    def candidate(self, z: tf.Tensor) -> tf.Tensor:
        return tf.tanh(z) if self.input_tanh else z

    def input_gate(self, a: dict[str, tf.Tensor], c_tm1: tf.Tensor | None) -> tf.Tensor | None:
        return tf.sigmoid(a["i"])

    def forget_gate(
        self, a: dict[str, tf.Tensor], c_tm1: tf.Tensor | None, i: tf.Tensor | None
    ) -> tf.Tensor | None:
        return tf.sigmoid(a["f"])

    def output_gate(self, a: dict[str, tf.Tensor], c_t: tf.Tensor) -> tf.Tensor | None:
        return tf.sigmoid(a["o"])

    def output(self, c_t: tf.Tensor) -> tf.Tensor:
        return tf.tanh(c_t) if self.output_tanh else c_t

    def step(
        self, xw_t: tf.Tensor, state: State, w_h: tf.Tensor
    ) -> tuple[tf.Tensor, State, dict[str, tf.Tensor]]:
        h_tm1, c_tm1 = state if state is not None else (None, None)
        a = self.split_blocks(self.recurrent(xw_t, h_tm1, w_h))  # each (batch, hidden)
        z = self.candidate(a["z"])
        i = self.input_gate(a, c_tm1)
        f = self.forget_gate(a, c_tm1, i)
        written = z if i is None else z * i  # (batch, hidden)
        kept = None if c_tm1 is None else (c_tm1 if f is None else c_tm1 * f)  # none from zero
        c_t = written if kept is None else kept + written
        o = self.output_gate(a, c_t)
        h_t = self.output(c_t) if o is None else self.output(c_t) * o  # (batch, hidden)
        acts = {"i": i, "f": f, "o": o, "c": c_t}
        return h_t, (h_t, c_t), {k: acts[k] for k in self.shown}

    @property
    def kernel_form(self) -> dict[str, Any]:
        """The fused kernel's attrs for this step (`fused_kernel.lstm_step`)."""
        return {
            "blocks": "".join(self.blocks),
            "coupled": self.coupled,
            "peepholes": self.peepholes,
            "input_tanh": self.input_tanh,
            "output_tanh": self.output_tanh,
        }

    def fused_step(
        self, kernel: Any, x: tf.Tensor, t: int, w_x: tf.Tensor, hw: tf.Tensor | None, state: State
    ) -> tuple[tf.Tensor, tf.Tensor]:
        c_tm1 = None if state is None else state[1]
        p = self.P if self.peepholes else tf.zeros([0])  # no peepholes: not read
        return fused_kernel.lstm_step(kernel, x, t, w_x, self.B, p, hw, c_tm1, self.kernel_form)


CELL = LSTM  # what `cell=lstm` builds
