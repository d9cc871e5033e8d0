"""What a trained network learned, read from one pass over the held-out split with every step
kept.

- how early it knows the digit: accuracy when the head reads h after only k steps,
  k = 1..steps (a row, a column or a pixel each, by the reading);
- how it reads a few digits: the gates its cell has (an LSTM's i, f, o and its cell state c, a
  GRU's u and r; a plain RNN has none) at every step;
- what it gets wrong: the held-out digits it misclassifies.

Plain functions on a `DigitsRNN` and arrays: no MLflow, no Hydra.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from lstm_cli.networks.model import DigitsRNN

EXAMPLES = 4  # held-out digits (of different classes) whose gates and cell state are kept


@dataclass(frozen=True)
class Insight:
    """What one pass over the held-out split shows; indices refer to that split."""

    accuracy_by_step: np.ndarray  # (steps,) accuracy after reading steps 1..k
    predicted: np.ndarray  # (n,) class after all steps (the model's prediction)
    examples: np.ndarray  # (examples,) indices of the digits whose states are kept
    states: dict[str, np.ndarray]  # the cell's shown activations -> (examples, steps, hidden)
    misclassified: np.ndarray  # (m,) indices predicted wrongly

    def as_dict(self) -> dict[str, list]:
        """The numbers, JSON-ready (the states stay in the figure)."""
        return {
            "steps_read": list(range(1, len(self.accuracy_by_step) + 1)),
            "accuracy_by_step": [float(a) for a in self.accuracy_by_step],
            "examples": [int(i) for i in self.examples],
            "misclassified": [int(i) for i in self.misclassified],
            "misclassified_as": [int(self.predicted[i]) for i in self.misclassified],
        }


def first_of_each_class(y: np.ndarray, count: int) -> np.ndarray:
    """Indices of the first `count` digits whose classes differ, in the order of `y`."""
    _, first = np.unique(y, return_index=True)  # (classes,) first index of each class
    return np.sort(first)[:count]


def analyse(model: DigitsRNN, x: np.ndarray, y: np.ndarray, examples: int = EXAMPLES) -> Insight:
    """Read `x` (n, steps, input) as the model sees it (scaled) once, keeping every step.

    Args:
        model: a trained model.
        x: held-out images, scaled as in training.
        y: their labels (n,).
        examples: how many digits' gates and cell state to keep.
    """
    trace = model.trace(tf.constant(x, tf.float32))  # each (steps, n, hidden)
    outputs = model.head(trace.pop("h")).numpy()  # (steps, n, classes): the head after k steps
    by_step = outputs.argmax(axis=-1)  # (steps, n)
    picks = first_of_each_class(y, examples)
    states = {
        name: np.transpose(values.numpy()[:, picks], (1, 0, 2))  # (examples, steps, hidden)
        for name, values in trace.items()
    }
    predicted = by_step[-1]  # (n,)
    return Insight(
        accuracy_by_step=(by_step == y[None, :]).mean(axis=1),
        predicted=predicted,
        examples=picks,
        states=states,
        misclassified=np.flatnonzero(predicted != y),
    )
