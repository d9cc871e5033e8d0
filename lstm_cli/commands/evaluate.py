"""`lstm-digits evaluate`: reload a run's model, recompute its accuracy on the test split,
show the confusion matrix; exit 1 if it differs from the test_accuracy the run logged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer

from lstm_cli.commands.options import (
    EXIT_FAILED,
    Experiment,
    ModelRef,
    TrackingUri,
    docs,
    reading,
    where,
)
from lstm_cli.views import console

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Evaluation:
    """The logged model's accuracy on its run's test split, against what the run logged."""

    run_id: str
    correct: int
    total: int
    logged: float | None  # the run's test_accuracy metric
    logged_name: str  # test_accuracy; val_accuracy for runs from before the test split
    matrix: np.ndarray  # (classes, classes) counts, true classes down

    @property
    def accuracy(self) -> float:
        return self.correct / self.total

    @property
    def agrees(self) -> bool:
        """Same number of correct digits as the logged accuracy (which is float32)."""
        return self.logged is not None and round(self.logged * self.total) == self.correct


def evaluation(uri: str, experiment: str, ref: str) -> Evaluation:
    """Reload `ref`'s model, recompute its held-out accuracy, show it with a confusion matrix."""
    from sklearn.metrics import confusion_matrix

    from lstm_cli.runtime import process
    from lstm_cli.tracking import read
    from lstm_cli.views import tables

    run, model_uri = read.find_model(uri, experiment, ref)
    process.import_tensorflow()  # before the model loads it: mutes TensorFlow's start-up
    model = read.load_model(uri, model_uri)
    data = read.held_out(run)
    predicted = read.probabilities(model, data.x_test).argmax(axis=1)  # (n,)
    # Runs from before the test split measured val_accuracy on this same held-out split.
    name = "test_accuracy" if "test_accuracy" in run.metrics else "val_accuracy"
    result = Evaluation(
        run_id=run.run_id,
        correct=int((predicted == data.y_test).sum()),
        total=len(data.y_test),
        logged=run.metrics.get(name),
        logged_name=name,
        matrix=confusion_matrix(data.y_test, predicted, labels=range(data.num_classes)),
    )
    tables.evaluation(result, run.name)
    return result


def evaluate(
    run_id: ModelRef, tracking_uri: TrackingUri = None, experiment: Experiment = None
) -> None:
    """Reload a run's model; recompute its accuracy on the test split; show the confusion matrix.

    Exits 1 if the accuracy differs from the test_accuracy the run logged.

    \b
    Examples:
      lstm-digits evaluate best
      lstm-digits evaluate models:/digits@champion
    """
    with reading():
        result = evaluation(*where(tracking_uri, experiment), run_id)
        if not result.agrees:
            console.error("the reloaded model's accuracy differs from the test_accuracy logged")
            raise typer.Exit(EXIT_FAILED)


def add_to(app: typer.Typer) -> None:
    """Register the command."""
    app.command(epilog=docs("runs", "Runs, models and the registry"))(evaluate)
