"""How this package's processes start: quiet, with the big imports out of the garbage
collector's way. Everything that reaches into a library's internals is in `internals`.

| trick                               | buys                                          |
| ----------------------------------- | --------------------------------------------- |
| `quiet`                             | no TensorFlow/MLflow start-up chatter         |
| `importing` (gc.freeze)             | 1.3 s in a 4-job sweep (0.22 s per collection)|
| `import_tensorflow` (stderr muted)  | no native start-up lines before log levels    |
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import os
import sys
from collections.abc import Iterator

from lstm_cli.runtime.errors import debugging

# ---------------------------------------------------------------- imports


def quiet() -> None:
    """Keep TensorFlow's and MLflow's start-up chatter out of the user's terminal."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    # MLflow prints "View run ... at: <tracking URI>" at each run's end: the URI may hold a
    # password, and the run's URL is printed by `train` itself (masked).
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # "Retrying ..." while a server is away
    if not debugging():
        # MLflow logs every database error it raises again, traceback and SQL included
        # (hundreds of lines when a store is full or locked): the error is told once, in one
        # line; --debug shows them.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


@contextlib.contextmanager
def importing() -> Iterator[None]:
    """Around big imports: pause the garbage collector, then leave out of later collections
    (`gc.freeze`) every object made so far. Imported modules live as long as the process, and
    each full collection would walk all of them: about 0.2 s once TensorFlow and MLflow are in,
    1.5 s over a 4-job sweep (loky also collects after every job in a worker).

    Only if the block imported a module: a frozen object is never collected, and freezing in
    every job of a sweep froze what the jobs before it had left for the collector (0.4 MB a
    job, for the life of the worker)."""
    collecting = gc.isenabled()
    modules = len(sys.modules)
    gc.disable()
    try:
        yield
    finally:
        if len(sys.modules) != modules:
            gc.freeze()
        if collecting:
            gc.enable()


def import_tensorflow() -> None:
    """Import TensorFlow (and Keras) with stderr muted: their native code logs there before any
    log level applies, and on a machine without a GPU, the CUDA-capable build logs an error
    when it looks for one ("failed call to cuInit"): the devices are listed here, muted too.
    Runs no op, so thread settings can still be made. Later calls are free."""
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
            tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in this process's environment for the block (what a child started meanwhile
    inherits), then each variable as it was (unset if it was)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def import_tracking() -> None:
    """Import MLflow (through `lstm_cli.tracking`'s modules) out of the collector's way."""
    with importing():
        for module in ("store", "run_handle", "parent_run", "read"):
            importlib.import_module(f"lstm_cli.tracking.{module}")


# What every job imports (a joblib worker, a SLURM job): MLflow's SQL store, which its first
# use loads, too.
JOB_MODULES = (
    "lstm_cli.jobs.task",
    "lstm_cli.fit.trainer",
    "lstm_cli.networks.insight",
    "lstm_cli.views.figures",
    "lstm_cli.data.digits",
    "lstm_cli.tracking.run_handle",
    "lstm_cli.tracking.logged_model",
    "sklearn.datasets",
    "sklearn.model_selection",
    "sklearn.metrics",
)


def import_job_modules() -> int:
    """Import what every job needs (TensorFlow, MLflow and its SQL store and model flavour,
    scikit-learn, matplotlib: about 5 s), out of the collector's way: in the fork server that
    starts the joblib workers (a no-op in each worker then), or in a worker started otherwise."""
    quiet()
    import_tensorflow()
    with importing():
        from lstm_cli.runtime.internals import MLFLOW_SQL_STORE

        for module in (*JOB_MODULES, MLFLOW_SQL_STORE):
            importlib.import_module(module)
    return os.getpid()
