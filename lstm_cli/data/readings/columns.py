"""`data.reading=columns`: 8 steps of 8 pixels, the digit's columns from left to right (each
top to bottom): the same digit, turned a quarter."""

from __future__ import annotations

import numpy as np

from lstm_cli.data.readings.base import PIXELS, SIDE, PixelOrder


def reading(permutation_seed: int) -> PixelOrder:
    order = np.arange(PIXELS).reshape(SIDE, SIDE).T.ravel()  # column 0 top to bottom, ...
    return PixelOrder("columns", order, (SIDE, SIDE))
