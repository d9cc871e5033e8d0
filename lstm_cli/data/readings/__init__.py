"""The readings of a digit, one file each. A new reading is a module here named as
`data.reading=` names it, with a `reading(permutation_seed)` that gives its pixel order and
shape (`base.PixelOrder`), and one line in `config.choices.Reading` (its name and a comment):
`READINGS` finds it by that name."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from lstm_cli.config.choices import Reading, names
from lstm_cli.data.readings.base import PixelOrder

READINGS: dict[str, Callable[[int], PixelOrder]] = {
    name: importlib.import_module(f"lstm_cli.data.readings.{name}").reading
    for name in names(Reading)
}


def reading_for(name: str, permutation_seed: int = 0) -> PixelOrder:
    """The reading `name` (a `data.reading` value)."""
    return READINGS[name](permutation_seed)


__all__ = ["READINGS", "PixelOrder", "reading_for"]
