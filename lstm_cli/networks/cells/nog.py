"""`cell=nog`: no output gate (Greff et al.'s NOG): the cell shows all of its state.

h_t = tanh(c_t)
i_t, f_t, c_t as the vanilla LSTM's (`cells.peephole`)
"""

from __future__ import annotations

from lstm_cli.networks.cells.peephole import Peephole


class NOG(Peephole):
    """The vanilla LSTM with o = 1."""

    blocks = ("z", "i", "f")
    shown = ("i", "f", "c")

    def output_gate(self, a, c_t):
        return None


CELL = NOG  # what `cell=nog` builds
