"""`lstm-digits predict`: one digit (held out, or an image file) through a run's model: drawn,
its class and the ten probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lstm_cli.commands.options import Experiment, ModelRef, TrackingUri, docs, reading, where
from lstm_cli.runtime.errors import UserError

if TYPE_CHECKING:
    import numpy as np


def prediction(
    uri: str, experiment: str, ref: str, index: int | None, image: Path | None
) -> np.ndarray:
    """Predict a held-out digit (`index`) or an image file; show it; return the probabilities."""
    from lstm_cli.runtime import process
    from lstm_cli.tracking import read
    from lstm_cli.views import tables

    if (index is None) == (image is None):
        raise UserError("give exactly one of --index (a held-out digit) or --image (a file)")
    run, model_uri = read.find_model(uri, experiment, ref)
    data = read.held_out(run)
    if index is not None and not 0 <= index < len(data.y_test):
        raise UserError(
            f"--index {index} is out of range: the test split of run {run.run_id[:8]} "
            f"has {len(data.y_test)} digits (0..{len(data.y_test) - 1})"
        )
    if image is not None:
        from lstm_cli.data.digits import read_digit_image

        digit, label, source = read_digit_image(image, data.x_test.shape[1:]), None, str(image)
    else:
        digit, label, source = data.x_test[index], int(data.y_test[index]), f"test #{index}"
    process.import_tensorflow()  # before the model loads it: mutes TensorFlow's start-up
    model = read.load_model(uri, model_uri)
    found = read.probabilities(model, digit[None])[0]  # (classes,)
    tables.prediction(digit, found, label, source, run.run_id)
    return found


def predict(
    run_id: ModelRef,
    index: Annotated[
        int | None, typer.Option(help="A digit of the run's test split (held out), by position.")
    ] = None,
    image: Annotated[
        Path | None,
        typer.Option(help="An image file (any size; dark-on-light or light-on-dark)."),
    ] = None,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = None,
) -> None:
    """Predict one digit with a run's model: draw it, print the class and the probabilities.

    \b
    Examples:
      lstm-digits predict best --index 17
      lstm-digits predict 3f2a --image my_digit.png
      lstm-digits predict models:/digits/2 --index 17
    """
    with reading():
        prediction(*where(tracking_uri, experiment), run_id, index, image)


def add_to(app: typer.Typer) -> None:
    """Register the command."""
    app.command(epilog=docs("runs", "Runs, models and the registry"))(predict)
