"""A reading: how a digit's 64 pixels become a sequence. Every reading is an order of the
pixels and a shape (steps, features per step): the same index map applies to NumPy arrays here
and to tensors in a served model (`networks.serving`), and inverts for the figures."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIDE = 8  # the digits are 8x8 images
PIXELS = SIDE * SIDE


@dataclass(frozen=True)
class PixelOrder:
    """A reading of 8x8 images: which pixel comes when, and how many at a time.

    Attributes:
        name: its `data.reading` value.
        order: (64,) which pixel (row-major) is read at each position of the sequence.
        shape: (steps, features): the sequence the model reads, features per step.
    """

    name: str
    order: np.ndarray
    shape: tuple[int, int]

    @property
    def is_rows(self) -> bool:
        """The article's reading: the images as they are."""
        return self.shape == (SIDE, SIDE) and bool((self.order == np.arange(PIXELS)).all())

    def read(self, images: np.ndarray) -> np.ndarray:
        """(n, 8, 8) images -> (n, steps, features) sequences."""
        if self.is_rows:
            return images
        flat = images.reshape(len(images), PIXELS)  # (n, 64) row-major
        return flat[:, self.order].reshape(len(images), *self.shape)

    def images(self, sequences: np.ndarray) -> np.ndarray:
        """(n, steps, features) sequences -> the (n, 8, 8) images they were read from."""
        if self.is_rows:
            return sequences
        flat = np.empty((len(sequences), PIXELS), dtype=sequences.dtype)
        flat[:, self.order] = sequences.reshape(len(sequences), PIXELS)
        return flat.reshape(len(sequences), SIDE, SIDE)

    def digest(self) -> bytes:
        """What tells this reading apart from the others, for a split's digest."""
        return f"{self.name}:{self.shape}:".encode() + self.order.astype(np.int64).tobytes()
