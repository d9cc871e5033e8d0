"""`cell=nig`: no input gate (Greff et al.'s NIG): the candidate is written whole.

c_t = f_t * c_tm1 + tanh(W_z [x_t, h_tm1] + b_z)
f_t, o_t, h_t as the vanilla LSTM's (`cells.peephole`)
"""

from __future__ import annotations

from lstm_cli.networks.cells.peephole import Peephole


class NIG(Peephole):
    """The vanilla LSTM with i = 1."""

    blocks = ("z", "f", "o")
    shown = ("f", "o", "c")

    def input_gate(self, a, c_tm1):
        return None


CELL = NIG  # what `cell=nig` builds
