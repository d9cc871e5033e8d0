"""Three splits and early stopping: the test split held out as the article holds it, a
validation split that chooses, and a stop that keeps the best epoch's weights."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_cli.data.digits import load_digits
from lstm_cli.runtime.errors import UserError


def _rows(x: np.ndarray) -> set[bytes]:
    return {image.tobytes() for image in x}


def test_the_three_splits_are_disjoint_and_sized_as_asked():
    data = load_digits(0.2, 42, "raw", val_size=0.1)
    sizes = [len(data.y_train), len(data.y_val), len(data.y_test)]
    assert sizes == [1257, 180, 360]  # of 1797: 20 % test, 10 % validation
    assert data.has_validation
    train, val, test = _rows(data.x_train), _rows(data.x_val), _rows(data.x_test)
    # Digits repeat in the dataset: compare the splits' indices' counts instead of sets alone.
    assert len(train & test) < 5 and len(val & test) < 5 and len(train & val) < 5
    counts = np.bincount(data.y_val, minlength=10)
    assert counts.min() >= 17 and counts.max() <= 19  # stratified: 18 of each digit, give or take


def test_the_test_split_is_the_articles_whatever_the_validation_split():
    two_way = load_digits(0.2, 42, "raw", val_size=0.0)
    three_way = load_digits(0.2, 42, "raw", val_size=0.1)
    np.testing.assert_array_equal(two_way.x_test, three_way.x_test)
    np.testing.assert_array_equal(two_way.y_test, three_way.y_test)
    assert not two_way.has_validation  # the article's set-up: epochs report on the test split
    assert two_way.x_val is two_way.x_test and len(two_way.y_train) == 1437
    train = _rows(three_way.x_train) | _rows(three_way.x_val)
    assert train == _rows(two_way.x_train)  # validation is carved from the article's training


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["data.val_size=0.8"], "data.val_size=0.8 is invalid"),
        (["data.val_size=-0.1"], "data.val_size=-0.1 is invalid"),
        (["early_stopping.patience=3", "data.val_size=0"], "needs a validation split"),
        (["early_stopping.patience=-1"], "early_stopping.patience=-1 is invalid"),
        (["early_stopping.min_delta=-1"], "early_stopping.min_delta=-1.0 is invalid"),
    ],
)
def test_bad_split_and_stopping_values_are_refused_in_one_line(overrides, fragment):
    from lstm_cli.config import compose, schema

    with pytest.raises(UserError) as refused:
        schema.check(compose.compose(overrides))
    assert fragment in str(refused.value) and "\n" not in str(refused.value)


def test_an_unknown_watched_metric_is_refused(defaults):
    from lstm_cli.config import compose

    with pytest.raises(UserError, match="val_loss, val_accuracy"):
        compose.preflight(["early_stopping.metric=train_loss"])
    assert defaults.early_stopping.patience == 0  # off unless asked for


class _Model:
    """A stand-in with the one method EarlyStopping reads: get_weights."""

    def __init__(self) -> None:
        self.w = np.zeros(2)

    def get_weights(self) -> dict[str, np.ndarray]:
        return {"W": self.w}


def _epochs(values, metric="val_loss"):
    from lstm_cli.fit.trainer import EpochMetrics

    for epoch, value in enumerate(values, 1):
        other = 0.0
        yield EpochMetrics(
            epoch,
            0.0,
            0.0,
            value if metric == "val_loss" else other,
            value if metric == "val_accuracy" else other,
        )


def test_early_stopping_stops_after_patience_and_keeps_the_best_weights():
    from lstm_cli.fit.hooks.early_stopping import EarlyStopping

    stopping, model = EarlyStopping(patience=2, metric="val_loss", min_delta=0.0), _Model()
    stops = []
    for m in _epochs([1.0, 0.8, 0.7, 0.75, 0.71, 0.6]):
        model.w = np.full(2, m.epoch)  # the weights after this epoch
        stops.append(stopping.update(m, model))
        if stops[-1]:
            break
    assert stops == [False, False, False, False, True]  # epoch 6 is never trained
    assert (stopping.stopped_epoch, stopping.best_epoch) == (5, 3)
    np.testing.assert_array_equal(stopping.best_weights["W"], [3, 3])  # a copy, not a view


def test_min_delta_and_accuracy_direction():
    from lstm_cli.fit.hooks.early_stopping import EarlyStopping

    stopping, model = EarlyStopping(patience=1, metric="val_accuracy", min_delta=0.01), _Model()
    results = [stopping.update(m, model) for m in _epochs([0.5, 0.6, 0.605], "val_accuracy")]
    assert results == [False, False, True]  # +0.005 is no improvement past min_delta
    assert stopping.best_epoch == 2


def test_early_stopping_goes_on_from_its_saved_state():
    from lstm_cli.fit.hooks.early_stopping import EarlyStopping

    values = [1.0, 0.8, 0.9, 0.85, 0.95, 0.7]
    whole, model = EarlyStopping(3, "val_loss", 0.0), _Model()
    for m in _epochs(values):
        if whole.update(m, model):
            break
    part = EarlyStopping(3, "val_loss", 0.0)
    epochs = list(_epochs(values))
    for m in epochs[:3]:
        part.update(m, model)
    numbers, arrays = part.state()
    again = EarlyStopping(3, "val_loss", 0.0)
    again.restore(numbers, arrays)  # as a resumed run does, from its checkpoint
    for m in epochs[3:]:
        if again.update(m, model):
            break
    assert (again.stopped_epoch, again.best_epoch) == (whole.stopped_epoch, whole.best_epoch)
