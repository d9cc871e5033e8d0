"""What the LSTM learned, read from one pass over the held-out split with every step kept.

- how early it knows the digit: accuracy when the head reads h after only k rows, k = 1..steps;
- how it reads a few digits: its gates i, f, o and its cell state c at every row;
- what it gets wrong: the held-out digits it misclassifies.

Plain functions on a `DigitsLSTM` and arrays: no MLflow, no Hydra.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from lstm_cli.networks.model import DigitsLSTM

EXAMPLES = 4  # held-out digits (of different classes) whose gates and cell state are kept
STATES = ("i", "f", "o", "c")  # input, forget and output gates, then the cell state


@dataclass(frozen=True)
class Insight:
    """What one pass over the held-out split shows; indices refer to that split."""

    accuracy_by_rows: np.ndarray  # (steps,) accuracy after reading rows 1..k
    predicted: np.ndarray  # (n,) class after all rows (the model's prediction)
    examples: np.ndarray  # (examples,) indices of the digits whose states are kept
    states: dict[str, np.ndarray]  # STATES -> (examples, steps, hidden)
    misclassified: np.ndarray  # (m,) indices predicted wrongly

    def as_dict(self) -> dict[str, list]:
        """The numbers, JSON-ready (the states stay in the figure)."""
        return {
            "rows_read": list(range(1, len(self.accuracy_by_rows) + 1)),
            "accuracy_by_rows": [float(a) for a in self.accuracy_by_rows],
            "examples": [int(i) for i in self.examples],
            "misclassified": [int(i) for i in self.misclassified],
            "misclassified_as": [int(self.predicted[i]) for i in self.misclassified],
        }


def first_of_each_class(y: np.ndarray, count: int) -> np.ndarray:
    """Indices of the first `count` digits whose classes differ, in the order of `y`."""
    _, first = np.unique(y, return_index=True)  # (classes,) first index of each class
    return np.sort(first)[:count]


def analyse(model: DigitsLSTM, x: np.ndarray, y: np.ndarray, examples: int = EXAMPLES) -> Insight:
    """Read `x` (n, steps, input) as the model sees it (scaled) once, keeping every step.

    Args:
        model: a trained model.
        x: held-out images, scaled as in training.
        y: their labels (n,).
        examples: how many digits' gates and cell state to keep.
    """
    trace = model.trace(tf.constant(x, tf.float32))  # each (steps, n, hidden)
    outputs = model.head(trace.h).numpy()  # (steps, n, classes): the head after k rows
    by_rows = outputs.argmax(axis=-1)  # (steps, n)
    picks = first_of_each_class(y, examples)
    states = {
        name: np.transpose(getattr(trace, name).numpy()[:, picks], (1, 0, 2))  # (ex, steps, hid)
        for name in STATES
    }
    predicted = by_rows[-1]  # (n,)
    return Insight(
        accuracy_by_rows=(by_rows == y[None, :]).mean(axis=1),
        predicted=predicted,
        examples=picks,
        states=states,
        misclassified=np.flatnonzero(predicted != y),
    )
