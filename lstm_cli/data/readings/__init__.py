"""The readings of a digit, one file each; `READINGS` registers them by the name
`data.reading=` takes. A new reading is a module with a `reading(permutation_seed)` that gives
its pixel order and shape (`base.Reading`), and one line here."""

from __future__ import annotations

from collections.abc import Callable

from lstm_cli.data.readings import columns, permuted, pixels, rows
from lstm_cli.data.readings.base import Reading

READINGS: dict[str, Callable[[int], Reading]] = {
    "rows": rows.reading,
    "columns": columns.reading,
    "pixels": pixels.reading,
    "permuted": permuted.reading,
}


def reading_for(name: str, permutation_seed: int = 0) -> Reading:
    """The reading `name` (a `data.reading` value)."""
    return READINGS[name](permutation_seed)
