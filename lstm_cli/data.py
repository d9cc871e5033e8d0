"""scikit-learn's 8x8 digits as sequences: each image is read row by row (8 steps of 8 pixels)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PIXEL_MAX = 16.0  # the dataset's pixels are integers 0..16


@dataclass(frozen=True)
class Digits:
    """A train/validation split; x is (n, rows, pixels) float32, y is (n,) int32 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray

    @property
    def input_size(self) -> int:
        return self.x_train.shape[2]

    @property
    def steps(self) -> int:
        return self.x_train.shape[1]

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_val.max())) + 1


def scale_pixels(images: np.ndarray, scaling: str) -> np.ndarray:
    """0..16 pixels -> float32 model inputs: "raw" keeps 0..16 (the article), "unit" gives 0..1."""
    images = np.asarray(images, dtype=np.float32)
    return images / PIXEL_MAX if scaling == "unit" else images


def load_digits(test_size: float = 0.2, split_seed: int = 42, scaling: str = "raw") -> Digits:
    """Load and split the digits as the article does (train_test_split, random_state=42)."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    digits = datasets.load_digits()
    x_train, x_val, y_train, y_val = train_test_split(
        digits.images, digits.target, test_size=test_size, random_state=split_seed
    )
    return Digits(
        x_train=scale_pixels(x_train, scaling),
        y_train=y_train.astype(np.int32),
        x_val=scale_pixels(x_val, scaling),
        y_val=y_val.astype(np.int32),
    )
