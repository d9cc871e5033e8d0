"""`cell=niaf`: no input activation function (Greff et al.'s NIAF): the candidate is written
without its tanh.

    c_t = f_t * c_tm1 + i_t * (W_z [x_t, h_tm1] + b_z)
    i_t, f_t, o_t, h_t as the vanilla LSTM's (`cells.peephole`)
"""

from __future__ import annotations

from lstm_cli.networks.cells.peephole import Peephole


class NIAF(Peephole):
    """The vanilla LSTM with z's tanh left out."""

    input_tanh = False


CELL = NIAF  # what `cell=niaf` builds
