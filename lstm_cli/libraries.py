"""Loading the heavy libraries (TensorFlow, MLflow): quietly, and out of the collector's way."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from collections.abc import Iterator


def quiet() -> None:
    """Keep TensorFlow's and MLflow's start-up chatter out of the user's terminal."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)


@contextlib.contextmanager
def importing() -> Iterator[None]:
    """Around big imports: pause the garbage collector, then leave out of later collections
    (`gc.freeze`) every object made so far. Imported modules live as long as the process, and
    each full collection would walk all of them: about 0.2 s once TensorFlow and MLflow are in,
    1.5 s over a 4-job sweep."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


def import_tensorflow() -> None:
    """Import TensorFlow (and Keras) with stderr muted: their native code logs there before any
    log level applies. Runs no op, so thread settings can still be made. Later calls are free."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        with importing():
            import tensorflow as tf

            tf.keras.utils  # noqa: B018 - Keras loads lazily, with start-up messages of its own
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
