"""A trained model as it is served: raw images in, class probabilities out, the pixel scaling,
the reading and the softmax inside the graph (`serving_function`, which
`tracking.logged_model` saves as a TensorFlow SavedModel that needs no code of this package).
TensorFlow is imported inside the functions: `tracking` reads the dtypes at its import, which
`lstm-digits runs` pays."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lstm_cli.runtime import worker_cache

INPUT_DTYPE = np.float64  # as sklearn's digits.images; MLflow enforces a tensor's dtype exactly
OUTPUT_DTYPE = np.float32


def predict_proba(model: Any, x: np.ndarray) -> np.ndarray:
    """Class probabilities (n, classes) of `model` for images x (n, steps, input)."""
    import tensorflow as tf

    return tf.nn.softmax(model(tf.constant(x, tf.float32))).numpy()


def serving_function(model: Any, scale: float, reading: Any) -> Any:
    """`model` (a built `DigitsRNN`) as a tf.Module whose `__call__` maps raw 8x8 images
    (n, 8, 8) float64, multiplied by `scale` (the run's pixel scaling) and read as `reading`
    reads them (a `data.readings.PixelOrder`: its pixel order and shape), to probabilities
    (n, classes) float32: a served model takes the image whatever its reading.

    The same module again for the same `model` object, scale and reading (a sweep worker's
    next job trains the same model, reset: see `fit.trainer.trainer_for`): saving it then
    traces nothing new, 0.07 s of every later logged model (see `worker_cache`). It reads the
    variables' values when saved.
    """
    key = (scale, reading.name, reading.shape, reading.order.tobytes())
    kept = worker_cache.get("served", key)
    if kept is not None and kept[0] is model:
        return kept[1]
    import tensorflow as tf  # here: the store's modules import this one's dtypes, not TensorFlow

    side = math.isqrt(len(reading.order))  # 8
    spec = tf.TensorSpec([None, side, side], tf.dtypes.as_dtype(INPUT_DTYPE))
    order = tf.constant(reading.order, tf.int32)

    @tf.function(input_signature=[spec], autograph=False)  # no Python control flow: 0.2 s less
    def probabilities(images):  # (n, 8, 8) raw
        x = tf.cast(images, tf.float32) * scale  # (n, 8, 8)
        if not reading.is_rows:  # (n, steps, features), as the model was trained to read
            x = tf.reshape(
                tf.gather(tf.reshape(x, [-1, side * side]), order, axis=1), [-1, *reading.shape]
            )
        return tf.nn.softmax(model(x))  # (n, classes)

    served = tf.Module(name="digits_rnn")
    served.model = model  # tracked: its weights are saved with the function
    served.__call__ = probabilities
    worker_cache.put("served", (model, served), key)
    return served
