"""The logged model: a TensorFlow SavedModel that takes images as the dataset stores them.

The trained `DigitsRNN` is saved as one TensorFlow function, raw 0..16 images (n, rows,
pixels) float64 -> class probabilities (n, classes) float32, with the run's pixel scaling and
the softmax inside the graph, through MLflow's tensorflow flavour. Loading it needs TensorFlow
and MLflow only: no code of this package (a pickled pyfunc would name our classes), so
`mlflow models serve` and any Python with the listed requirements run it as is.
"""

from __future__ import annotations

import importlib.metadata
import json
import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.models import ModelSignature
from mlflow.types.schema import Schema, TensorSpec

from lstm_cli.networks.serving import INPUT_DTYPE, OUTPUT_DTYPE, serving_function
from lstm_cli.runtime import internals

MODEL_NAME = "model"  # the model's name in its run: runs:/<id>/model


def signature(steps: int, pixels: int, classes: int) -> ModelSignature:
    """Images (n, steps, pixels) float64 in, class probabilities (n, classes) float32 out."""
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(INPUT_DTYPE), (-1, steps, pixels))]),
        outputs=Schema([TensorSpec(np.dtype(OUTPUT_DTYPE), (-1, classes))]),
    )


def _pinned(*distributions: str) -> str:
    """The first of `distributions` installed here, pinned to its version."""
    for name in distributions:
        try:
            return f"{name}=={importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    raise importlib.metadata.PackageNotFoundError(distributions[0])


def requirements() -> list[str]:
    """What the model needs, pinned as installed: TensorFlow (whichever distribution provides
    it here) and NumPy; MLflow adds itself."""
    return [_pinned("tensorflow", "tensorflow-cpu"), _pinned("numpy")]


def log_model(
    model: Any,
    scaling: str,
    reading: Any,
    example: np.ndarray,
    run_id: str,
    experiment_id: str,
) -> None:
    """Log `model` as run `run_id`'s `model`: a SavedModel that takes raw 8x8 images and reads
    them as `reading` (a `data.readings.PixelOrder`), with its signature, `example` (a few raw
    images) as the input example, and real requirements."""
    import mlflow.tensorflow

    from lstm_cli.data.digits import pixel_scale

    # MLflow puts a logged model in the active run's experiment, else the active experiment:
    # our runs are never MLflow's active run (their handle owns their status).
    mlflow.set_experiment(experiment_id=experiment_id)

    steps, pixels = example.shape[1:]
    with warnings.catch_warnings(), internals.without_model_checks():
        warnings.simplefilter("ignore")  # MLflow's advice on signatures and environments
        mlflow.tensorflow.log_model(
            serving_function(model, pixel_scale(scaling), reading),
            name=MODEL_NAME,
            run_id=run_id,
            signature=signature(steps, pixels, model.num_classes),
            input_example=np.asarray(example, dtype=INPUT_DTYPE),
            pip_requirements=requirements(),  # given, not inferred: inference reloads the model
            metadata={
                "input": f"images (n, {steps}, {pixels}) float64, pixels 0..16 as in sklearn's "
                "digits.images",
                "output": f"class probabilities (n, {model.num_classes}) float32",
                "scaling": scaling,
                "reading": reading.name,
                "reading_order": [int(k) for k in reading.order],
            },
        )


# MLflow warns, as the class is made, that its `predict` has no type hints (its inputs are
# arrays, and hints would be read as an input schema). Its own filter shows that warning once
# whatever ours say: it is recorded here, and dropped.
with warnings.catch_warnings(record=True):

    class DigitsModel(mlflow.pyfunc.PythonModel):
        """Models logged before the SavedModel (pickled pyfuncs naming this class) still load.

        It rebuilds `DigitsRNN` from `spec.json` and `weights.npz` and applies the run's
        pixel scaling itself; `lstm_cli.tracking.DigitsModel` finds it for the oldest of them.
        """

        def load_context(self, context: Any) -> None:
            from lstm_cli.networks.model import DigitsRNN

            spec = json.loads(Path(context.artifacts["spec"]).read_text())
            weights = dict(np.load(context.artifacts["weights"]))
            self.scaling, self.steps = spec["scaling"], spec["steps"]
            self.model = DigitsRNN(**spec["model"]).build()
            self.model.set_weights(weights)

        def predict(self, context, model_input, params=None):
            # No type hints: MLflow would read them as an input schema for list-like inputs.
            from lstm_cli.data.digits import scale_pixels
            from lstm_cli.networks.serving import predict_proba

            shape = (-1, self.steps, self.model.input_size)
            images = np.asarray(model_input, dtype=np.float32).reshape(shape)
            return predict_proba(self.model, scale_pixels(images, self.scaling))
