"""`data.reading=permuted`: 64 steps of one pixel, in one fixed random order (seeded by
`data.permutation_seed`): Le, Jaitly & Hinton's permuted MNIST on the digits. Neighbouring
pixels end up far apart in the sequence: the model must remember, not follow strokes."""

from __future__ import annotations

import numpy as np

from lstm_cli.data.readings.base import PIXELS, PixelOrder


def reading(permutation_seed: int) -> PixelOrder:
    order = np.random.default_rng(permutation_seed).permutation(PIXELS)
    return PixelOrder("permuted", order, (PIXELS, 1))
