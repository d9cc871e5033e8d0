"""`data.reading=pixels`: 64 steps of one pixel, row by row: the sequential MNIST of Le, Jaitly
& Hinton (2015) on the digits, a long-memory test where a plain RNN fails and gates help."""

from __future__ import annotations

import numpy as np

from lstm_cli.data.readings.base import PIXELS, PixelOrder


def reading(permutation_seed: int) -> PixelOrder:
    return PixelOrder("pixels", np.arange(PIXELS), (PIXELS, 1))
