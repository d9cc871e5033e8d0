"""`data.reading=rows`: the article's reading, the default: 8 steps of 8 pixels, the digit's
rows from top to bottom."""

from __future__ import annotations

import numpy as np

from lstm_cli.data.readings.base import PIXELS, SIDE, PixelOrder


def reading(permutation_seed: int) -> PixelOrder:
    return PixelOrder("rows", np.arange(PIXELS), (SIDE, SIDE))
