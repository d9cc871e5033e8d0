"""Everything that talks to MLflow: the store, runs, metrics, artifacts and the logged model.

This is the only module that imports mlflow. Functions take plain values (dicts, arrays,
figures), so the rest of the package never sees an MLflow object.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

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
P = ParamSpec("P")
R = TypeVar("R")


def default_uri() -> str:
    """The store used when nothing else is said: outputs/mlflow.db in the working directory."""
    return f"sqlite:///{Path.cwd() / STORE_DIR / 'mlflow.db'}"


def resolve_uri(uri: str | None) -> str:
    """The tracking URI to use: the given one, else $MLFLOW_TRACKING_URI, else `default_uri()`."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()


def is_server(uri: str) -> bool:
    """Whether `uri` is a tracking server (which serves its own UI)."""
    return uri.startswith(("http://", "https://"))


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def artifact_root(uri: str) -> str | None:
    """A new experiment's artifact root: beside a SQLite store; else the server decides."""
    db = _sqlite_path(uri)
    return (db.resolve().parent / "mlartifacts").as_uri() if db else None


DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")  # MLflow's SQL stores


def check_store(uri: str) -> None:
    """Fail within seconds, with a UserError, when the store cannot be reached or written."""
    if is_server(uri):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=HEALTH_TIMEOUT_S):
                pass
        except (urllib.error.URLError, OSError, ValueError) as ex:
            reason = getattr(ex, "reason", ex)
            raise UserError(f"cannot reach the MLflow tracking server at {uri}: {reason}") from None
        return
    scheme = uri.split(":", 1)[0].split("+", 1)[0] if "://" in uri else ""
    if scheme not in DATABASE_SCHEMES:
        raise UserError(
            f"tracking.uri={uri} is not a store MLflow {mlflow.__version__} can use: give "
            "sqlite:///path/to/mlflow.db, a database URL (postgresql://...) or http(s)://server"
        )
    db = _sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=db.parent, prefix=".write-test"):
                pass
        except OSError as ex:
            raise UserError(f"cannot write the tracking store {db}: {ex.strerror or ex}") from None


def _create_sqlite_store(db: Path) -> None:
    """Build a new SQLite store beside `db`, then move it into place complete.

    MLflow builds its schema in about 60 migrations (1 s), and a store interrupted half-way
    (Ctrl-C in a first run) cannot be opened again. Linking the finished file is atomic and
    never replaces a store another process made meanwhile: that one is kept.
    """
    partial = db.with_name(f".{db.name}.{uuid.uuid4().hex}.partial")  # MLflow caches by URI
    try:
        MlflowClient(f"sqlite:///{partial}")  # builds the schema
        try:
            os.link(partial, db)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: a rename, unless one is there now
            if not db.exists():
                os.rename(partial, db)
    finally:
        partial.unlink(missing_ok=True)


def open_experiment(uri: str, name: str) -> str:
    """Point MLflow at `uri`, create the experiment if needed (once, race-safe); return its id."""
    check_store(uri)
    try:
        db = _sqlite_path(uri)
        if db is not None and not db.exists():
            _create_sqlite_store(db)
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return client.create_experiment(name, artifact_location=artifact_root(uri))
            except MlflowException:  # another process created it first
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    raise
    except MlflowException as ex:
        raise UserError(f"cannot use the tracking store {uri}: {_first_line(ex)}") from None
    if experiment.lifecycle_stage == "deleted":
        raise UserError(
            f"experiment '{name}' is deleted in {uri}: restore it (mlflow experiments restore "
            f"--experiment-id {experiment.experiment_id}) or set tracking.experiment=<another>"
        )
    return experiment.experiment_id


def _first_line(ex: BaseException) -> str:
    text = str(getattr(ex, "message", None) or ex).strip()
    return text.splitlines()[0] if text else type(ex).__name__


# ---------------------------------------------------------------- writing runs


class _CtrlC:
    """The state of `_ctrl_c_held`: how deep the holds nest, and whether Ctrl-C came meanwhile."""

    depth = 0
    pending = False

    @staticmethod
    def hold(signum: int, frame: Any) -> None:
        if _CtrlC.pending:  # pressed again: the user will not wait for the write
            _CtrlC.pending = False
            raise KeyboardInterrupt
        _CtrlC.pending = True


@contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Hold Ctrl-C back while writing to the store; it takes effect right after the write, or
    at once when pressed a second time (a write to a server that does not answer retries).

    A KeyboardInterrupt inside an MLflow call can leave a run RUNNING (its row written, its id
    not yet returned) or the database session unusable for the writes that would end it.
    Holds nest. Only Python's default Ctrl-C handler in the main thread is held: signals reach
    only that thread, and another handler is someone else's choice.
    """
    outermost = _CtrlC.depth == 0
    if outermost and (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    if outermost:
        signal.signal(signal.SIGINT, _CtrlC.hold)
    _CtrlC.depth += 1
    try:
        yield
    finally:
        _CtrlC.depth -= 1
        if outermost:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if _CtrlC.pending:
                _CtrlC.pending = False
                raise KeyboardInterrupt


def _holding_ctrl_c(write: Callable[P, R]) -> Callable[P, R]:
    """`write` runs with Ctrl-C held back (see `_ctrl_c_held`)."""

    @functools.wraps(write)
    def held(*args: P.args, **kwargs: P.kwargs) -> R:
        with _ctrl_c_held():
            return write(*args, **kwargs)

    return held


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
    run_id = None
    try:
        with _ctrl_c_held():  # a Ctrl-C meanwhile is raised once `run_id` is known
            run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)
            run_id = run.info.run_id
            mlflow.log_params(params)
        yield run_id
    except KeyboardInterrupt:
        if run_id is not None:
            _end(RunStatus.KILLED, "interrupted (Ctrl-C)")
        raise
    except BaseException as ex:
        if run_id is not None:
            _end(RunStatus.FAILED, _first_line(ex))
        raise
    else:
        _end(RunStatus.FINISHED)


@_holding_ctrl_c
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

    @_holding_ctrl_c
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


@_holding_ctrl_c
def log_summary(metrics: dict[str, float]) -> None:
    """Metrics without a step (final figures, timings)."""
    mlflow.log_metrics(metrics)


@_holding_ctrl_c
def set_tags(tags: dict[str, str]) -> None:
    mlflow.set_tags(tags)


@_holding_ctrl_c
def log_figure(figure: Any, name: str) -> None:
    mlflow.log_figure(figure, name)


@_holding_ctrl_c
def log_text(text: str, name: str) -> None:
    mlflow.log_text(text, name)


@_holding_ctrl_c
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


@_holding_ctrl_c
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


# ---------------------------------------------------------------- sweeps

SWEEP_TAG = "lstm_digits.sweep"  # "parent" on a sweep's parent run


@_holding_ctrl_c
def start_parent_run(experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
    """Create a sweep's parent run (not made the active run: jobs may share this process)."""
    run = MlflowClient().create_run(
        experiment_id, run_name=run_name, tags={**tags, SWEEP_TAG: "parent"}
    )
    return run.info.run_id


@_holding_ctrl_c
def end_parent_run(run_id: str, status: str) -> None:
    """Close a parent run with `status` (FINISHED, FAILED or KILLED)."""
    MlflowClient().set_terminated(run_id, status)


@_holding_ctrl_c
def end_sweep(parent_id: str, status: str, reason: str) -> None:
    """A sweep stopped early: its unfinished children and the parent end with `status` and
    `reason`, in one hold of Ctrl-C (a second Ctrl-C would otherwise leave the parent RUNNING)."""
    close_children(parent_id, status, reason)
    log_to_run(parent_id, tags={"error": reason})
    end_parent_run(parent_id, status)


@_holding_ctrl_c
def close_children(parent_id: str, status: str, reason: str) -> int:
    """Give every child still RUNNING (its process died or was stopped) a final status."""
    client = MlflowClient()
    closed = 0
    for child in _children(parent_id):
        if child.info.status == "RUNNING":
            client.set_tag(child.info.run_id, "error", reason)
            client.set_terminated(child.info.run_id, status)
            closed += 1
    return closed


def _children(parent_id: str) -> list[Any]:
    client = MlflowClient()
    parent = client.get_run(parent_id)
    return list(
        client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'",
            max_results=10000,
        )
    )


def child_runs(parent_id: str, curve: str = "val_accuracy") -> list[dict[str, Any]]:
    """A sweep's jobs as plain dicts: ids, status, overrides, params, final metrics, error, and
    the per-epoch history of `curve`."""
    client = MlflowClient()
    records = []
    for run in _children(parent_id):
        history = client.get_metric_history(run.info.run_id, curve)
        tags = run.data.tags
        records.append(
            {
                "run_id": run.info.run_id,
                "job": int(tags.get("sweep_job", -1)),
                "status": run.info.status,
                "overrides": tags.get("overrides", ""),
                "params": dict(run.data.params),
                "metrics": dict(run.data.metrics),
                "error": tags.get("error", ""),
                "curve": [m.value for m in sorted(history, key=lambda m: m.step)],
            }
        )
    return sorted(records, key=lambda r: r["job"])


@_holding_ctrl_c
def log_to_run(
    run_id: str,
    *,
    tags: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
    texts: dict[str, str] | None = None,
    figures: dict[str, Any] | None = None,
) -> None:
    """Tags, step-less metrics, text files and figures for a run that is not the active one."""
    client = MlflowClient()
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, value)
    for key, value in (metrics or {}).items():
        client.log_metric(run_id, key, value)
    for name, text in (texts or {}).items():
        client.log_text(run_id, text, name)
    for name, figure in (figures or {}).items():
        client.log_figure(run_id, figure, name)


@_holding_ctrl_c
def log_steps(name: str, values: list[float], first_step: int = 1) -> None:
    """A metric series in the active run, with steps first_step, first_step + 1, ..."""
    now_ms = int(time.time() * 1000)
    metrics = [Metric(name, float(v), now_ms, first_step + k) for k, v in enumerate(values)]
    MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=metrics, synchronous=True)


# ---------------------------------------------------------------- reading runs

MAX_RUNS = 10000  # runs read per experiment: far more than a local study holds
NO_RUNS = "no runs yet: run `lstm-digits train` first"


@dataclass(frozen=True)
class RunRecord:
    """One run as plain values, for the commands that read runs back."""

    run_id: str
    name: str
    status: str  # FINISHED, RUNNING, FAILED or KILLED
    start_ms: int
    end_ms: int | None  # None while running
    params: dict[str, str]
    metrics: dict[str, float]  # the last value of each
    tags: dict[str, str]
    has_model: bool  # a model was logged by the run

    @property
    def is_sweep_parent(self) -> bool:
        return self.tags.get(SWEEP_TAG) == "parent"


def _record(run: Any) -> RunRecord:
    return RunRecord(
        run_id=run.info.run_id,
        name=run.info.run_name or "",
        status=run.info.status,
        start_ms=run.info.start_time,
        end_ms=run.info.end_time,
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        tags=dict(run.data.tags),
        has_model=bool(run.outputs and run.outputs.model_outputs),
    )


def _reader(uri: str) -> MlflowClient:
    """A client on an existing store; a UserError, rather than a new empty store, if none."""
    db = _sqlite_path(uri)
    if db is not None and not db.exists():
        raise UserError(f"{NO_RUNS} (there is no tracking store at {db})")
    if db is None:
        check_store(uri)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def _experiment_id(client: MlflowClient, uri: str, experiment: str) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise UserError(f"{NO_RUNS} (no experiment '{experiment}' in {uri})")
    return found.experiment_id


def require_runs(uri: str) -> None:
    """Raise a UserError unless the store exists and holds at least one run."""
    client = _reader(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    if not ids or not client.search_runs(ids, max_results=1):
        raise UserError(f"{NO_RUNS} (the store {uri} has no runs)")


def experiment_id(uri: str, experiment: str) -> str | None:
    """The id of `experiment` in an existing store; None if the store has no such experiment."""
    found = _reader(uri).get_experiment_by_name(experiment)
    return found.experiment_id if found else None


def search(uri: str, experiment: str, parent_id: str | None = None) -> list[RunRecord]:
    """The runs of `experiment`, newest first; only the children of sweep `parent_id` if given."""
    client = _reader(uri)
    found = _experiment_id(client, uri, experiment)
    query = f"tags.`{PARENT_TAG}` = '{parent_id}'" if parent_id else ""
    runs = client.search_runs(
        [found], filter_string=query, max_results=MAX_RUNS, order_by=["attributes.start_time DESC"]
    )
    if not runs and parent_id is None:
        raise UserError(f"{NO_RUNS} (experiment '{experiment}' in {uri} is empty)")
    return [_record(run) for run in runs]


def best(runs: list[RunRecord], experiment: str) -> RunRecord:
    """The FINISHED run with the highest `val_accuracy` (sweep parents excluded)."""
    done = [
        r
        for r in runs
        if r.status == "FINISHED" and "val_accuracy" in r.metrics and not r.is_sweep_parent
    ]
    if not done:
        raise UserError(f"no finished run with a val_accuracy in experiment '{experiment}' yet")
    return max(done, key=lambda r: (r.metrics["val_accuracy"], r.start_ms))


def find_run(uri: str, experiment: str, ref: str) -> RunRecord:
    """The run `ref` names: `best`, a full run id, or a unique prefix of one in `experiment`."""
    client = _reader(uri)
    ref = ref.strip().lower()
    if len(ref) == 32:  # a full id may belong to any experiment of the store
        try:
            return _record(client.get_run(ref))
        except MlflowException:
            pass  # told below, with the experiment's runs in mind
    runs = search(uri, experiment)
    if ref == "best":
        return best(runs, experiment)
    matches = [r for r in runs if ref and r.run_id.startswith(ref)]
    if len(matches) > 1:
        raise UserError(f"run id prefix '{ref}' matches {len(matches)} runs: give more characters")
    if not matches:
        raise UserError(
            f"no run '{ref}' in experiment '{experiment}' at {uri}: "
            "`lstm-digits runs` lists the run ids (or use `best`)"
        )
    return matches[0]


def load_model(uri: str, run: RunRecord) -> Any:
    """The pyfunc model logged by `run`: raw 0..16 images (n, rows, pixels) -> probabilities."""
    if not run.has_model:
        raise UserError(
            f"run {run.run_id} has no logged model (trained with tracking.log_model=false, "
            "or it stopped before the end): pick another run"
        )
    mlflow.set_tracking_uri(uri)
    try:
        with warnings.catch_warnings():  # version-mismatch advice on load: not actionable here
            warnings.simplefilter("ignore")
            return mlflow.pyfunc.load_model(f"runs:/{run.run_id}/{MODEL_NAME}")
    except MlflowException as ex:
        raise UserError(f"cannot load the model of run {run.run_id}: {_first_line(ex)}") from None


def server_environment() -> dict[str, str]:
    """The environment for `server_command`: without MLflow's GenAI job runner (unless the user
    asks for it), whose ten helper processes this tool never uses and whose store directory in
    /dev/shm MLflow leaves behind at every start."""
    return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}


def server_command(uri: str, host: str, port: int) -> list[str]:
    """`mlflow server` on the store `uri` (one worker: a UI for one user)."""
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri]
    root = artifact_root(uri)
    if root:  # new experiments keep their artifacts beside the database, as `train` does
        command += ["--default-artifact-root", root, "--artifacts-destination", root]
    return [*command, "--host", host, "--port", str(port), "--workers", "1"]
