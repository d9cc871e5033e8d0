"""One MLflow run as a handle that owns its writes, its buffered epoch metrics and its end.

    with start_run(experiment_id, name, params, tags) as run:
        run.log_epoch({"val_accuracy": 0.9}, epoch=1)
        run.log_figure(figure, "learning_curves.png")

The run ends FINISHED when the block completes, KILLED on Ctrl-C or SIGTERM, FAILED on any
other exception (the error kept as the `error` tag and `error.txt`); metrics logged so far are
kept. Whatever fails once the run exists, while it starts too (its params, the system-metrics
monitor), ends it that way: never RUNNING. The handle opens one signal scope (see
`lstm_cli.signals`) and every store write runs deferred within it, so no signal lands between
a write and the code that would end the run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mlflow
import numpy as np
from mlflow.entities import Metric, RunTag
from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE

from lstm_cli import signals
from lstm_cli.errors import UserError, one_line

PARENT_TAG = MLFLOW_PARENT_RUN_ID  # how MLflow links a child run to its parent (for searches)
FLUSH_EVERY_S = 1.0  # epoch metrics reach the store at most this often
DATASET_RETRY_S = 0.2  # after the store refused a dataset another job added meanwhile
# MLflow samples every 10 s by default, longer than most of our runs: they would log nothing.
SYSTEM_METRICS_EVERY_S = 1.0  # $MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides it
SOURCE = "lstm-digits train"  # the UI's Source column (a joblib worker's argv[0] says nothing)
KIND_TAG = "mlflow.experimentKind"  # MLflow 3's UI opens an experiment on what it is for
KIND = "custom_model_development"  # training runs, not GenAI traces
# Figures as PNG at zlib level 1: the same pixels as matplotlib's default (level 6), files
# about 15 % larger, and encoding takes 0.085 s instead of 0.24 s for a run's five figures.
FIGURE_SAVE = {"pil_kwargs": {"compress_level": 1}}


def mark_model_training(experiment_id: str) -> None:
    """Mark the experiment as model training, unless someone said what it is for: the UI's own
    guesses (`no_inferred_type`, `..._inferred`, written on a first visit) are replaced."""
    client = MlflowClient()
    kind = client.get_experiment(experiment_id).tags.get(KIND_TAG, "")
    if not kind or "inferred" in kind:
        client.set_experiment_tag(experiment_id, KIND_TAG, KIND)


class Run:
    """A started run (see `start_run`). Every method writes to the store, signals deferred."""

    def __init__(self, run_id: str, experiment_id: str) -> None:
        self.run_id = run_id
        self.experiment_id = experiment_id
        self._client = MlflowClient()
        # Per-epoch metrics written in batches: a store round trip per epoch would cost more
        # than a fast epoch; MLflow's own async queue costs about a second to shut down.
        self._pending: list[Metric] = []
        self._last_flush = time.monotonic()
        self._monitor: Any = None  # MLflow's system-metrics thread, when asked for

    def monitor_system(self) -> None:
        """Record CPU, memory, disk and network use (`system/...` metrics) until the run ends."""
        if self._monitor is not None:
            return
        try:
            import psutil  # noqa: F401 - MLflow's monitors read the system through it
        except ImportError:
            raise UserError(
                "system metrics need psutil, which is not installed: pip install psutil"
            ) from None
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self._monitor = SystemMetricsMonitor(self.run_id, sampling_interval=SYSTEM_METRICS_EVERY_S)
        self._monitor.start()

    def log_epoch(self, metrics: dict[str, float], epoch: int) -> None:
        """Per-epoch metrics with step=epoch; in the store within FLUSH_EVERY_S."""
        now_ms = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now_ms, epoch) for k, v in metrics.items()]
        if time.monotonic() - self._last_flush >= FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        """Write the buffered epoch metrics now."""
        with signals.deferred():
            if self._pending:
                self._client.log_batch(self.run_id, metrics=self._pending, synchronous=True)
            self._pending = []
            self._last_flush = time.monotonic()

    def log_steps(self, name: str, values: list[float], first_step: int = 1) -> None:
        """A metric series with steps first_step, first_step + 1, ..."""
        now_ms = int(time.time() * 1000)
        metrics = [Metric(name, float(v), now_ms, first_step + k) for k, v in enumerate(values)]
        with signals.deferred():
            self._client.log_batch(self.run_id, metrics=metrics, synchronous=True)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        """Metrics without a step (final figures, timings)."""
        now_ms = int(time.time() * 1000)
        batch = [Metric(k, float(v), now_ms, 0) for k, v in metrics.items()]
        with signals.deferred():
            self._client.log_batch(self.run_id, metrics=batch, synchronous=True)

    def set_tags(self, tags: dict[str, str]) -> None:
        with signals.deferred():
            self._client.log_batch(self.run_id, tags=_tags(tags), synchronous=True)

    def log_text(self, text: str, name: str) -> None:
        with signals.deferred():
            self._client.log_text(self.run_id, text, name)

    def log_dict(self, data: dict, name: str) -> None:
        with signals.deferred():
            self._client.log_dict(self.run_id, data, name)

    def log_figure(self, figure: Any, name: str) -> None:
        with signals.deferred():
            self._client.log_figure(self.run_id, figure, name, save_kwargs=FIGURE_SAVE)

    def mark_experiment(self) -> None:
        """Mark the run's experiment as model training (see `mark_model_training`)."""
        with signals.deferred():
            mark_model_training(self.experiment_id)

    def log_datasets(
        self, splits: dict[str, tuple[str, np.ndarray, np.ndarray]], loader: str
    ) -> None:
        """The data splits as dataset inputs: context -> (name, features, targets), made by
        `loader` (a function's dotted name); see `tracking.dataset`."""
        from lstm_cli.tracking.dataset import inputs

        datasets = inputs(splits, loader)
        with signals.deferred():
            try:
                self._client.log_inputs(self.run_id, datasets=datasets)
            except MlflowException:
                # Jobs that start together on a new store both add the same dataset, and the
                # store's unique key refuses the second (MLflow checks, then inserts): it is
                # there now, so this run just links it.
                time.sleep(DATASET_RETRY_S)
                self._client.log_inputs(self.run_id, datasets=datasets)

    def log_model(self, model: Any, scaling: str, example: np.ndarray) -> None:
        """The trained model as a SavedModel named `model` (see `tracking.model`)."""
        from lstm_cli.tracking.model import log_model

        with signals.deferred():
            log_model(model, scaling, example)  # MLflow logs a model to the active run: this one

    def register_model(self, name: str) -> str:
        """Register the model this run logged as a new version of `name`; return its URI
        (models:/NAME/VERSION)."""
        from lstm_cli.tracking.registry import register

        with signals.deferred():
            return register(self.run_id, name).uri

    def metric_history(self, names: tuple[str, ...]) -> dict[int, dict[str, float]]:
        """The per-epoch values of `names` in the store, by step (a resumed run's past)."""
        history: dict[int, dict[str, float]] = {}
        for name in names:
            for metric in self._client.get_metric_history(self.run_id, name):
                history.setdefault(metric.step, {})[name] = metric.value
        return history

    def end(self, status: str, error: str | None = None) -> None:
        """Flush, keep `error` if any, and close the run with `status`."""
        with signals.deferred():
            try:
                if self._monitor is not None:
                    self._monitor.finish()  # joins its thread and writes what it sampled
                self.flush()
                if error:
                    self._client.set_tag(self.run_id, "error", error[:5000])
                    self._client.log_text(self.run_id, error + "\n", "error.txt")
            finally:
                mlflow.end_run(status)


def _tags(tags: dict[str, str]) -> list[RunTag]:
    return [RunTag(k, str(v)) for k, v in tags.items()]


@contextmanager
def start_run(
    experiment_id: str,
    name: str,
    params: dict[str, Any],
    tags: dict[str, str],
    parent_run_id: str | None = None,
    system_metrics: bool = False,
    resume: str | None = None,
    requeued: bool = False,
) -> Iterator[Run]:
    """Start a run (a child of `parent_run_id` if given), or go on with run `resume` (from
    `lstm-digits resume`, or `requeued` by SLURM), and yield its handle; end it with a true
    status whatever stops the block.

    `system_metrics` (or MLflow's $MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING) records CPU and memory
    while the run lasts; the handle starts the monitor, so that a failure to start it ends the
    run FAILED (MLflow's own start would raise with the run left RUNNING).
    """
    tags = {MLFLOW_SOURCE_NAME: SOURCE, MLFLOW_SOURCE_TYPE: "LOCAL", **tags}
    run = None
    with signals.scope(), _ending(lambda: run):
        with signals.deferred():  # a signal meanwhile is raised once the run can be ended
            if resume:
                run = _reopen(resume, tags, requeued)
            else:
                started = mlflow.start_run(
                    experiment_id=experiment_id,
                    run_name=name,
                    tags=tags,
                    parent_run_id=parent_run_id or None,
                    log_system_metrics=False,
                )
                run = Run(started.info.run_id, experiment_id)
                mlflow.log_params(params)
            if system_metrics or MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.get():
                run.monitor_system()
        yield run


RESUMED_TAG, REQUEUED_TAG = "resumed", "requeued"  # how often a run went on after a stop


def _reopen(run_id: str, tags: dict[str, str], requeued: bool) -> Run:
    """Run `run_id` RUNNING again (MLflow's start_run on an existing id), counting the resume
    (`lstm-digits resume`) or the requeue (SLURM) in a tag."""
    client = MlflowClient()
    before = client.get_run(run_id)
    counter = REQUEUED_TAG if requeued else RESUMED_TAG
    count = int(before.data.tags.get(counter, "0")) + 1
    started = mlflow.start_run(run_id=run_id)
    run = Run(started.info.run_id, started.info.experiment_id)
    client.log_batch(run_id, tags=_tags({**tags, counter: str(count)}), synchronous=True)
    if "error" in before.data.tags:  # the stop it goes on from is no error of the run's
        client.delete_tag(run_id, "error")
    return run


@contextmanager
def _ending(current) -> Iterator[None]:
    """End the run `current()` names with a true status, whatever stops the block."""
    try:
        yield
    except KeyboardInterrupt as ex:
        if current() is not None:
            current().end("KILLED", one_line(ex))
        raise
    except BaseException as ex:
        if current() is not None:
            current().end("FAILED", one_line(ex))
        raise
    else:
        current().end("FINISHED")
