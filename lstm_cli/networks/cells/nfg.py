"""`cell=nfg`: no forget gate (Greff et al.'s NFG): the cell state only adds, as in the first
LSTMs (Hochreiter & Schmidhuber, 1997).

    c_t = c_tm1 + i_t * tanh(W_z [x_t, h_tm1] + b_z)
    i_t, o_t, h_t as the vanilla LSTM's (`cells.peephole`)
"""

from __future__ import annotations

from lstm_cli.networks.cells.peephole import Peephole


class NFG(Peephole):
    """The vanilla LSTM with f = 1."""

    blocks = ("z", "i", "o")
    shown = ("i", "o", "c")

    def forget_gate(self, a, c_tm1, i):
        return None


CELL = NFG  # what `cell=nfg` builds
