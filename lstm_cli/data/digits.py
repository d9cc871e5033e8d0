"""scikit-learn's 8x8 digits as sequences, read as `data.reading` says (`data.readings`: by
rows, the article's 8 steps of 8 pixels; by columns; pixel by pixel; in a permuted order)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lstm_cli.data.readings import PixelOrder, reading_for
from lstm_cli.runtime import worker_cache

PIXEL_MAX = 16.0  # the dataset's pixels are integers 0..16
SOURCE = "sklearn.datasets.load_digits"  # where the images come from (shipped with scikit-learn)
BLANK_BELOW = 16.0  # an image whose ink differs less than this (of 255) from its paper is blank


@dataclass(frozen=True)
class Digits:
    """Train, validation and test splits; x is (n, steps, features) float32 (the images as
    `reading` reads them), y is (n,) int32.

        The validation split serves every per-epoch number (and so every choice: early stopping,
        pruning, `best`); the test split is held out and evaluated once, on the weights a run
        keeps. Without a validation split (`val_size=0`, the article's two-way set-up) both are the
        held-out split.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    reading: PixelOrder = field(default_factory=lambda: reading_for("rows"))

    @property
    def input_size(self) -> int:
        return self.x_train.shape[2]

    @property
    def steps(self) -> int:
        return self.x_train.shape[1]

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_val.max(), self.y_test.max())) + 1

    @property
    def has_validation(self) -> bool:
        """Whether the validation split is its own (not the held-out test split)."""
        return self.x_val is not self.x_test


def pixel_scale(scaling: str) -> float:
    """The factor from 0..16 pixels to model inputs: "raw" keeps 0..16 (the article), "unit"
    gives 0..1. A power of two, so scaling is exact in float32 (the logged model's graph scales
    by the same factor)."""
    return 1.0 / PIXEL_MAX if scaling == "unit" else 1.0


def scale_pixels(images: np.ndarray, scaling: str) -> np.ndarray:
    """0..16 pixels -> float32 model inputs (see `pixel_scale`)."""
    return np.asarray(images, dtype=np.float32) * np.float32(pixel_scale(scaling))


def _dataset() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's images (1797, 8, 8) 0..16 and labels (1797,), read once per process (a
    sweep worker's later jobs save 0.03 s each: see `worker_cache`). Read-only: a split
    copies what it takes."""
    from sklearn import datasets

    kept = worker_cache.get("digits")
    if kept is not None:
        return kept
    digits = datasets.load_digits()
    digits.images.flags.writeable = False
    digits.target.flags.writeable = False
    return worker_cache.put("digits", (digits.images, digits.target))


def load_digits(
    test_size: float,
    split_seed: int,
    scaling: str,
    val_size: float = 0.0,
    reading: str = "rows",
    permutation_seed: int = 0,
) -> Digits:
    """Load and split the digits: the test split as the article holds it out (train_test_split,
    random_state=42), then a validation split of `val_size` of the whole, carved from the rest
    with the same seed, stratified by label (0: none, the article's two-way set-up); each
    image read as `reading` says (`permutation_seed`: the permuted reading's order)."""
    from sklearn.model_selection import train_test_split

    images, target = _dataset()
    x_rest, x_test, y_rest, y_test = train_test_split(
        images, target, test_size=test_size, random_state=split_seed
    )
    x_test, y_test = scale_pixels(x_test, scaling), y_test.astype(np.int32)
    if val_size <= 0:
        x_train, y_train, x_val, y_val = x_rest, y_rest, x_test, y_test
    else:
        x_train, x_val, y_train, y_val = train_test_split(
            x_rest,
            y_rest,
            test_size=val_size / (1 - test_size),
            random_state=split_seed,
            stratify=y_rest,
        )
        x_val, y_val = scale_pixels(x_val, scaling), y_val.astype(np.int32)
    order = reading_for(reading, permutation_seed)
    x_test_read = order.read(x_test)
    return Digits(
        x_train=order.read(scale_pixels(x_train, scaling)),
        y_train=y_train.astype(np.int32),
        x_val=x_test_read if x_val is x_test else order.read(x_val),
        y_val=y_val,
        x_test=x_test_read,
        y_test=y_test,
        reading=order,
    )


def split_for(d) -> Digits:
    """The split the config's `data` keys describe (test_size, split_seed, scaling, val_size,
    reading, permutation_seed), scaled and read."""
    return load_digits(
        d.test_size, d.split_seed, d.scaling.value, d.val_size, d.reading.value, d.permutation_seed
    )


def read_digit_image(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Any image file as a digit of the dataset: `shape` (rows, pixels) float32, 0..16.

    Grayscale; ink is what differs from the border's colour, so dark ink on light paper is
    inverted (the dataset has light ink on dark, high values = ink); cropped to the ink,
    padded to a square, shrunk by area averaging (as the dataset's 4x4-block counts), then
    scaled so the strongest ink is 16.

    Raises:
        UserError: the file cannot be read as an image, or it shows no ink.
    """
    from PIL import Image, UnidentifiedImageError

    from lstm_cli.runtime.errors import UserError

    try:
        with Image.open(path) as opened:
            opened.load()
            image = opened.convert("RGBA")
    except (OSError, UnidentifiedImageError, ValueError) as ex:
        reason = getattr(ex, "strerror", None) or "not an image Pillow can read"
        raise UserError(f"cannot read image {path}: {reason}") from None
    canvas = Image.new("RGBA", image.size, "white")  # transparency reads as white paper
    gray = np.asarray(Image.alpha_composite(canvas, image).convert("L"), dtype=np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    ink = np.abs(gray - np.median(border))  # (h, w) ink: what differs from the paper, light or dark
    if ink.max() < BLANK_BELOW:
        raise UserError(f"cannot read image {path}: it shows no ink (a blank image)")
    rows, cols = np.nonzero(ink > 0.25 * ink.max())
    ink = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]  # (ink h, ink w)
    side = max(ink.shape)
    square = np.zeros((side, side), dtype=np.float32)
    top, left = (side - ink.shape[0]) // 2, (side - ink.shape[1]) // 2
    square[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    small = Image.fromarray(square).resize(shape[::-1], Image.Resampling.BOX)
    digit = np.asarray(small, dtype=np.float32)  # (rows, pixels)
    return np.round(digit / digit.max() * PIXEL_MAX).astype(np.float32)


def split_digest(data: Digits) -> str:
    """A digest of a data split's arrays and its reading: a resume refuses a split that is no
    longer the same (another scikit-learn, another scaling, another reading). The article's
    reading digests as it did before there were readings."""
    import hashlib

    digest = hashlib.sha256()
    if not data.reading.is_rows:
        digest.update(data.reading.digest())
    arrays = [data.x_train, data.y_train, data.x_val, data.y_val]
    if data.has_validation:  # a two-way split digests as it did before the test split
        arrays += [data.x_test, data.y_test]
    for array in arrays:
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]
