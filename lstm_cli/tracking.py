"""Everything that talks to MLflow: the store, runs, metrics, artifacts and the logged model.

This is the only module that imports mlflow. Functions take plain values (dicts, arrays,
figures), so the rest of the package never sees an MLflow object.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.entities import Metric, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lstm_cli.errors import UserError

STORE_DIR = "outputs"  # beside the user's working directory, as Hydra's outputs
PARENT_TAG = "mlflow.parentRunId"
MODEL_NAME = "model"
HEALTH_TIMEOUT_S = 3.0


def default_uri() -> str:
    """The store used when nothing else is said: outputs/mlflow.db in the working directory."""
    return f"sqlite:///{Path.cwd() / STORE_DIR / 'mlflow.db'}"


def resolve_uri(uri: str | None) -> str:
    """The tracking URI to use: the given one, else $MLFLOW_TRACKING_URI, else `default_uri()`."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def artifact_root(uri: str) -> str | None:
    """A new experiment's artifact root: beside a SQLite store; else the server decides."""
    db = _sqlite_path(uri)
    return (db.resolve().parent / "mlartifacts").as_uri() if db else None


def check_store(uri: str) -> None:
    """Fail within seconds, with a UserError, when the store cannot be reached or written."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=HEALTH_TIMEOUT_S):
                pass
        except (urllib.error.URLError, OSError, ValueError) as ex:
            reason = getattr(ex, "reason", ex)
            raise UserError(f"cannot reach the MLflow tracking server at {uri}: {reason}") from None
        return
    db = _sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=db.parent, prefix=".write-test"):
                pass
        except OSError as ex:
            raise UserError(f"cannot write the tracking store {db}: {ex.strerror or ex}") from None


def open_experiment(uri: str, name: str) -> str:
    """Point MLflow at `uri`, create the experiment if needed (once, race-safe); return its id."""
    check_store(uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(name, artifact_location=artifact_root(uri))
        except MlflowException:  # another process created it first
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id
    except MlflowException as ex:
        raise UserError(f"cannot use the tracking store {uri}: {_first_line(ex)}") from None


def _first_line(ex: BaseException) -> str:
    text = str(getattr(ex, "message", None) or ex).strip()
    return text.splitlines()[0] if text else type(ex).__name__


# ---------------------------------------------------------------- writing runs


@contextmanager
def tracked_run(
    experiment_id: str,
    run_name: str,
    params: dict[str, Any],
    tags: dict[str, str],
    parent_run_id: str | None = None,
) -> Iterator[str]:
    """Start a run, yield its id, and end it with a true status.

    FINISHED when the block completes, KILLED on Ctrl-C, FAILED on any other exception (the
    error is kept as the `error` tag and an `error.txt` artifact). Metrics logged so far are kept.
    """
    if parent_run_id:
        tags = {**tags, PARENT_TAG: parent_run_id}
    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)
    run_id = run.info.run_id
    try:
        mlflow.log_params(params)
        yield run_id
    except KeyboardInterrupt:
        _end(RunStatus.KILLED, "interrupted (Ctrl-C)")
        raise
    except BaseException as ex:
        _end(RunStatus.FAILED, _first_line(ex))
        raise
    else:
        _end(RunStatus.FINISHED)


def _end(status: int, error: str | None = None) -> None:
    try:
        _epoch_buffer.flush()
        if error:
            mlflow.set_tag("error", error[:5000])
            mlflow.log_text(error + "\n", "error.txt")
    finally:
        mlflow.end_run(RunStatus.to_string(status))


class _EpochBuffer:
    """Per-epoch metrics written in batches, at most every FLUSH_EVERY_S seconds.

    A store round trip per epoch would cost more than a fast epoch; MLflow's own async queue
    costs about a second to shut down. The UI still sees progress every second.
    """

    FLUSH_EVERY_S = 1.0

    def __init__(self) -> None:
        self.pending: list[Metric] = []
        self.last_flush = time.monotonic()

    def add(self, metrics: dict[str, float], step: int) -> None:
        now_ms = int(time.time() * 1000)
        self.pending += [Metric(k, float(v), now_ms, step) for k, v in metrics.items()]
        if time.monotonic() - self.last_flush >= self.FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        run = mlflow.active_run()
        if self.pending and run is not None:
            MlflowClient().log_batch(run.info.run_id, metrics=self.pending, synchronous=True)
        self.pending = []
        self.last_flush = time.monotonic()


_epoch_buffer = _EpochBuffer()


def log_epoch(metrics: dict[str, float], epoch: int) -> None:
    """Per-epoch metrics with step=epoch (batched: see _EpochBuffer)."""
    _epoch_buffer.add(metrics, epoch)


def log_summary(metrics: dict[str, float]) -> None:
    """Metrics without a step (final figures, timings)."""
    mlflow.log_metrics(metrics)


def set_tags(tags: dict[str, str]) -> None:
    mlflow.set_tags(tags)


def log_figure(figure: Any, name: str) -> None:
    mlflow.log_figure(figure, name)


def log_text(text: str, name: str) -> None:
    mlflow.log_text(text, name)


def log_dict(data: dict, name: str) -> None:
    mlflow.log_dict(data, name)


class DigitsModel(mlflow.pyfunc.PythonModel):
    """The logged model: images (n, 8, 8) with 0..16 pixels -> class probabilities (n, classes).

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


def log_model(spec: dict, weights: dict[str, np.ndarray], example: np.ndarray) -> None:
    """Log the trained weights as a pyfunc model named `model` in the active run."""
    from mlflow.models import infer_signature

    import lstm_cli

    with tempfile.TemporaryDirectory() as tmp:
        spec_path, weights_path = Path(tmp, "spec.json"), Path(tmp, "weights.npz")
        spec_path.write_text(json.dumps(spec, indent=2))
        np.savez(weights_path, **weights)
        signature = infer_signature(example, np.zeros((len(example), spec["model"]["num_classes"])))
        with warnings.catch_warnings():  # MLflow's advice on pickling: not actionable here
            warnings.simplefilter("ignore")
            mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=DigitsModel(),
                artifacts={"spec": str(spec_path), "weights": str(weights_path)},
                signature=signature,
                # Given, not inferred: inference would load the model again in a subprocess.
                pip_requirements=[f"lstm-digits=={lstm_cli.__version__}"],
            )


# ---------------------------------------------------------------- reading runs


def load_model(run_id: str) -> Any:
    """The pyfunc model logged by run `run_id`."""
    return mlflow.pyfunc.load_model(f"runs:/{run_id}/{MODEL_NAME}")
