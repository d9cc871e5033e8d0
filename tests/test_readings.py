"""The readings of a digit: each an order of its 64 pixels and a shape, the same on arrays and
in a served model; the article's reading is the images as they are, and digests as before."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_cli.config.choices import Reading, names
from lstm_cli.data.digits import load_digits, split_digest
from lstm_cli.data.readings import READINGS, reading_for

IMAGES = np.arange(3 * 64, dtype=np.float32).reshape(3, 8, 8)  # three images, pixels numbered


def test_every_reading_is_registered_under_its_config_name():
    assert list(READINGS) == names(Reading)


def test_rows_are_the_images_as_they_are():
    rows = reading_for("rows")
    assert rows.is_rows and rows.read(IMAGES) is IMAGES and rows.shape == (8, 8)


def test_columns_are_the_images_turned():
    np.testing.assert_array_equal(reading_for("columns").read(IMAGES), IMAGES.transpose(0, 2, 1))


def test_pixels_are_64_steps_of_one_pixel_row_by_row():
    read = reading_for("pixels").read(IMAGES)
    assert read.shape == (3, 64, 1)
    np.testing.assert_array_equal(read[:, :, 0], IMAGES.reshape(3, 64))


def test_permuted_is_a_fixed_permutation_of_the_pixels_by_its_seed():
    a, b, other = (reading_for("permuted", seed).read(IMAGES) for seed in (0, 0, 1))
    assert a.shape == (3, 64, 1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, other)
    np.testing.assert_array_equal(np.sort(a[:, :, 0], axis=1), IMAGES.reshape(3, 64))
    assert not np.array_equal(a[:, :, 0], IMAGES.reshape(3, 64))


@pytest.mark.parametrize("name", names(Reading))
def test_a_reading_gives_its_images_back(name):
    reading = reading_for(name, permutation_seed=5)
    np.testing.assert_array_equal(reading.images(reading.read(IMAGES)), IMAGES)


def test_the_split_is_read_and_its_digest_tells_the_readings_apart():
    rows = load_digits(0.2, 42, "raw", 0.1)
    assert rows.x_train.shape[1:] == (8, 8) and rows.steps == 8 and rows.input_size == 8
    digests = {}
    for name in names(Reading):
        data = load_digits(0.2, 42, "raw", 0.1, name, permutation_seed=0)
        assert data.reading.name == name
        np.testing.assert_array_equal(data.reading.images(data.x_test), rows.x_test)
        np.testing.assert_array_equal(data.y_train, rows.y_train)  # the same split
        digests[name] = split_digest(data)
    assert len(set(digests.values())) == len(digests)  # pixels' bytes are rows', not its digest
    assert digests["rows"] == split_digest(rows)
    pixels = load_digits(0.2, 42, "raw", 0.1, "pixels")
    assert (pixels.steps, pixels.input_size) == (64, 1)
    assert split_digest(load_digits(0.2, 42, "raw", 0.1, "permuted", 1)) != digests["permuted"]


def test_the_articles_digest_is_the_one_runs_recorded_before_readings():
    """A run of before keeps its checkpoints: its split's digest has not changed."""
    import hashlib

    data = load_digits(0.2, 42, "raw", 0.1)
    digest = hashlib.sha256()
    for array in (data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test):
        digest.update(array.tobytes())
    assert split_digest(data) == digest.hexdigest()[:16]
