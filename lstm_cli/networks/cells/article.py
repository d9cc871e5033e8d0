"""`cell=article`: the cell of the article ("Apprentissage profond / code de travail LSTM"),
the default. An LSTM whose output is its cell state, without the tanh: Greff et al.'s "no
output activation" variant, without peepholes.

    z, i, f, o as the standard LSTM's (`cells.lstm`)
    c_t = f_t * c_tm1 + i_t * z_t
    h_t = c_t * o_t
"""

from __future__ import annotations

from lstm_cli.networks.cells.lstm import LSTM


class Article(LSTM):
    """The article's cell: h = c * o."""

    output_tanh = False


CELL = Article  # what `cell=article` builds
