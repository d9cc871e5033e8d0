"""A trained model as it is served: raw images in, class probabilities out, the pixel scaling
and the softmax inside the graph (`serving_function`, which `tracking.logged_model` saves as a
TensorFlow SavedModel that needs no code of this package). TensorFlow is imported inside the
functions: `tracking` reads the dtypes at its import, which `lstm-digits runs` pays."""

from __future__ import annotations

from typing import Any

import numpy as np

from lstm_cli.runtime import worker_cache

INPUT_DTYPE = np.float64  # as sklearn's digits.images; MLflow enforces a tensor's dtype exactly
OUTPUT_DTYPE = np.float32


def predict_proba(model: Any, x: np.ndarray) -> np.ndarray:
    """Class probabilities (n, classes) of `model` for images x (n, steps, input)."""
    import tensorflow as tf

    return tf.nn.softmax(model(tf.constant(x, tf.float32))).numpy()


def serving_function(model: Any, scale: float, steps: int) -> Any:
    """`model` (a built `DigitsLSTM`) as a tf.Module whose `__call__` maps raw images
    (n, steps, pixels) float64, multiplied by `scale` (the run's pixel scaling), to
    probabilities (n, classes) float32.

    The same module again for the same `model` object, scale and steps (a sweep worker's next
    job trains the same model, reset: see `fit.trainer.trainer_for`): saving it then traces
    nothing new, 0.07 s of every later logged model (see `worker_cache`). It reads the
    variables' values when saved.
    """
    kept = worker_cache.get("served", (scale, steps))
    if kept is not None and kept[0] is model:
        return kept[1]
    import tensorflow as tf  # here: the store's modules import this one's dtypes, not TensorFlow

    spec = tf.TensorSpec([None, steps, model.input_size], tf.dtypes.as_dtype(INPUT_DTYPE))

    @tf.function(input_signature=[spec], autograph=False)  # no Python control flow: 0.2 s less
    def probabilities(images):  # (n, steps, pixels) raw
        return tf.nn.softmax(model(tf.cast(images, tf.float32) * scale))  # (n, classes)

    served = tf.Module(name="digits_lstm")
    served.model = model  # tracked: its weights are saved with the function
    served.__call__ = probabilities
    worker_cache.put("served", (model, served), (scale, steps))
    return served
