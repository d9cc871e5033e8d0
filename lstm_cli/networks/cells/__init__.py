"""The recurrent cells, one file each, written with TensorFlow ops; `CELLS` registers them by
the name `cell=` takes. A new cell is a module with a `RecurrentCell` subclass (its equations
in its docstring) and one line here."""

from __future__ import annotations

from lstm_cli.networks.cells.article import Article
from lstm_cli.networks.cells.base import RecurrentCell
from lstm_cli.networks.cells.cifg import CIFG
from lstm_cli.networks.cells.gru import GRU
from lstm_cli.networks.cells.lstm import LSTM
from lstm_cli.networks.cells.nfg import NFG
from lstm_cli.networks.cells.niaf import NIAF
from lstm_cli.networks.cells.nig import NIG
from lstm_cli.networks.cells.nog import NOG
from lstm_cli.networks.cells.peephole import Peephole
from lstm_cli.networks.cells.rnn import RNN

CELLS: dict[str, type[RecurrentCell]] = {
    "article": Article,
    "lstm": LSTM,
    "peephole": Peephole,
    "cifg": CIFG,
    "nig": NIG,
    "nfg": NFG,
    "nog": NOG,
    "niaf": NIAF,
    "gru": GRU,
    "rnn": RNN,
}
