"""The logged model: a pyfunc that takes images as the dataset stores them."""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

MODEL_NAME = "model"  # the model's name in its run: runs:/<id>/model


class DigitsModel(mlflow.pyfunc.PythonModel):
    """Images (n, 8, 8) with 0..16 pixels -> class probabilities (n, classes).

    It rebuilds `DigitsLSTM` from `spec.json` and `weights.npz`, and applies the run's pixel
    scaling itself, so callers always pass images as the dataset stores them.
    """

    _skip_type_hint_validation = True  # inputs are arrays; MLflow's type-hint checks don't apply

    def load_context(self, context: Any) -> None:
        from lstm_cli.model import DigitsLSTM

        spec = json.loads(Path(context.artifacts["spec"]).read_text())
        weights = dict(np.load(context.artifacts["weights"]))
        self.scaling, self.steps = spec["scaling"], spec["steps"]
        self.model = DigitsLSTM(**spec["model"]).build()
        self.model.set_weights(weights)

    def predict(self, context, model_input, params=None):
        # No type hints: MLflow would read them as an input schema for list-like inputs.
        from lstm_cli.data import scale_pixels
        from lstm_cli.train import predict_proba

        shape = (-1, self.steps, self.model.input_size)
        images = np.asarray(model_input, dtype=np.float32).reshape(shape)
        return predict_proba(self.model, scale_pixels(images, self.scaling))


def log_model(spec: dict, weights: dict[str, np.ndarray]) -> None:
    """Log the trained weights as a pyfunc model named `model` in the active run.

    No signature: MLflow enforces a tensor signature's dtype exactly, and users pass the
    dataset's float64 images as readily as float32 or integer pixels; `predict` converts them.
    """
    import lstm_cli

    with tempfile.TemporaryDirectory() as tmp:
        spec_path, weights_path = Path(tmp, "spec.json"), Path(tmp, "weights.npz")
        spec_path.write_text(json.dumps(spec, indent=2))
        np.savez(weights_path, **weights)
        with warnings.catch_warnings():  # MLflow's advice on pickling and signatures
            warnings.simplefilter("ignore")
            mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=DigitsModel(),
                artifacts={"spec": str(spec_path), "weights": str(weights_path)},
                metadata={
                    "input": f"images (n, {spec['steps']}, {spec['model']['input_size']}), "
                    "pixels 0..16 as in sklearn's digits, any numeric dtype",
                    "output": f"class probabilities (n, {spec['model']['num_classes']})",
                },
                # Given, not inferred: inference would load the model again in a subprocess.
                pip_requirements=[f"lstm-digits=={lstm_cli.__version__}"],
            )
