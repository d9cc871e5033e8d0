"""The recurrent cells, one file each, written with TensorFlow ops. A new cell is a module here
named as `cell=` names it, with a `RecurrentCell` subclass (its equations in its docstring)
given as the module's `CELL`, and one line in `config.choices.Cell` (its name and a comment):
`CELLS` finds it by that name."""

from __future__ import annotations

import importlib

from lstm_cli.config.choices import Cell, names
from lstm_cli.networks.cells.base import RecurrentCell


def _cells() -> dict[str, type[RecurrentCell]]:
    return {
        name: importlib.import_module(f"lstm_cli.networks.cells.{name}").CELL
        for name in names(Cell)
    }


CELLS: dict[str, type[RecurrentCell]] = _cells()  # by `cell=` name, in the choices' order

__all__ = ["CELLS", "RecurrentCell"]
