"""One MLflow run as a handle that owns its writes, its buffered epoch metrics and its end.

    with start_run(experiment_id, name, params, tags, outage_s=600) as run:
        run.log_epoch({"val_accuracy": 0.9}, epoch=1)
        run.log_figure(figure, "learning_curves.png")

The run ends FINISHED when the block completes, KILLED on Ctrl-C or SIGTERM, FAILED on any
other exception (the error kept as the `error` tag and `error.txt`); metrics logged so far are
kept. Whatever fails once the run exists, while it starts too (its params, the system-metrics
monitor), ends it that way: never RUNNING. The handle opens one signal scope (see
`runtime.signals`) and every store write runs deferred within it, so no signal lands between a
write and the code that would end the run.

Epoch metrics and checkpoints go through a background writer (`tracking.writer`): the
training never waits on the store, and the metrics of an epoch reach it before the checkpoint
that covers it. A run reopened to go on (`resume`, a requeue) is not touched before its first
write: a resume that fails before it has trained an epoch leaves the run as it was.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_SOURCE_TYPE

from lstm_cli.runtime import internals, process, signals
from lstm_cli.runtime.errors import AccessRefused, UserError, needs
from lstm_cli.tracking import checkpoint_slots
from lstm_cli.tracking.ending import ending
from lstm_cli.tracking.owner import process_tags
from lstm_cli.tracking.tags import (
    ERROR_TAG,
    KIND_TAG,
    PARENT_TAG,
    REQUEUED_TAG,
    RESUMED_TAG,
    SOURCE_TAG,
)
from lstm_cli.tracking.writer import Writer, retrying

# MLflow's HTTP client retries a dead server for about 4 minutes, the caller blocked: our
# writer retries instead, for tracking.outage_minutes, without blocking the training.
HTTP_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
DATASET_RETRY_S = 0.2  # after the store refused a dataset another job added meanwhile
SOURCE = "lstm-digits train"  # the UI's Source column (a joblib worker's argv[0] says nothing)
KIND = "custom_model_development"  # training runs, not GenAI traces
# Figures as PNG at zlib level 1: the same pixels as matplotlib's default (level 6), files
# about 15 % larger, and encoding takes 0.085 s instead of 0.24 s for a run's five figures.
FIGURE_SAVE = {"pil_kwargs": {"compress_level": 1}}


MAX_NAME = 250  # characters of a run name: MLflow's column; PostgreSQL refuses a longer one


def run_name(text: str) -> str:
    """`text` as a run name the store takes: cut to MAX_NAME characters (SQLite keeps a longer
    one, PostgreSQL and MySQL refuse the run)."""
    return text if len(text) <= MAX_NAME else text[: MAX_NAME - 1] + "…"


def mark_model_training(experiment_id: str) -> None:
    """Mark the experiment as model training, unless someone said what it is for: the UI's own
    guesses (`no_inferred_type`, `..._inferred`, written on a first visit) are replaced."""
    client = MlflowClient()
    kind = client.get_experiment(experiment_id).tags.get(KIND_TAG, "")
    if not kind or "inferred" in kind:
        client.set_experiment_tag(experiment_id, KIND_TAG, KIND)


def experiment_label(experiment_id: str) -> str:
    """ "experiment 'NAME'" for a message (by its id if the store will not say its name)."""
    try:
        return f"experiment '{MlflowClient().get_experiment(experiment_id).name}'"
    except MlflowException:
        return f"experiment {experiment_id}"


class Run:
    """A started run (see `start_run`). Every method writes to the store, signals deferred."""

    def __init__(
        self,
        run_id: str,
        experiment_id: str,
        store: str,
        outage_s: float,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.run_id = run_id
        self.experiment_id = experiment_id
        self._client = MlflowClient()
        self._writer = Writer(store, outage_s, self._log_metrics_now, on_wait)
        self._monitor: Any = None  # MLflow's system-metrics thread, when asked for
        self._reopen: dict[str, str] | None = None  # a reopened run's tags, until `open`
        self.reopened = False  # it goes on after a stop: a value may be in the store already
        self.continued = False  # a finished run trained on: its final records are new ones
        self._wants_monitor = False
        # The slot of the newest checkpoint in the store: the next one goes into the other,
        # chosen when it is written (the writer drops a checkpoint a newer one overtook).
        self.stored_slot = checkpoint_slots.SLOTS[1]
        self.checkpoint_epoch = 0  # the epoch of the newest checkpoint in the store (0: none)
        self.last_epoch = 0  # the last epoch handed over (what a stop leaves, in its message)

    @property
    def opened(self) -> bool:
        """Whether the store knows this run is running (a reopened one: after its first write)."""
        return self._reopen is None

    def open(self) -> None:
        """Make a reopened run RUNNING again with its tags (see `start_run`); a no-op after."""
        if self._reopen is None:
            return
        tags, self._reopen = self._reopen, None
        try:
            with needs(
                "EDIT permission on its experiment",
                lambda: f"go on with run {self.run_id} of {experiment_label(self.experiment_id)}",
                self._writer.store,
            ):
                self._sync(lambda: _reopen(self._client, self.run_id, tags))
        except AccessRefused:
            self._reopen = tags  # the server took no write: the run stays as it was
            raise
        if self._wants_monitor:
            self.monitor_system()

    def monitor_system(self) -> None:
        """Record CPU, memory, disk and network use (`system/...` metrics) until the run ends."""
        if self._monitor is not None:
            return
        if not self.opened:
            self._wants_monitor = True  # started once the run is RUNNING again
            return
        self._monitor = _monitor(self.run_id)

    def log_epoch(self, metrics: dict[str, float], epoch: int) -> None:
        """Per-epoch metrics with step=epoch, sent in the background within a second."""
        self.open()
        self.last_epoch = max(self.last_epoch, epoch)
        now_ms = int(time.time() * 1000)
        self._writer.add_metrics([Metric(k, float(v), now_ms, epoch) for k, v in metrics.items()])

    def save_checkpoint(self, epoch: int, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """A checkpoint of `epoch`, sent in the background after the metrics before it."""
        self.open()

        def save() -> None:  # on the writer's thread, one at a time
            slot = checkpoint_slots.other(self.stored_slot)
            checkpoint_slots.save(self.run_id, slot, epoch, arrays, meta)
            self.stored_slot, self.checkpoint_epoch = slot, epoch

        self._writer.put(save, "checkpoint")

    def flush(self) -> None:
        """Wait until everything handed over is in the store."""
        with signals.deferred():
            self._writer.drain()

    def _log_metrics_now(self, metrics: list[Metric]) -> None:
        self._client.log_batch(self.run_id, metrics=metrics, synchronous=True)

    def _sync(self, write) -> Any:
        """Run a write now, after everything handed over before it, signals deferred."""
        with signals.deferred():
            return self._writer.call(write)

    def log_steps(self, name: str, values: list[float], first_step: int = 1) -> None:
        """A metric series with steps first_step, first_step + 1, ..."""
        now_ms = int(time.time() * 1000)
        metrics = [Metric(name, float(v), now_ms, first_step + k) for k, v in enumerate(values)]
        self._log_once(metrics)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        """Final figures and timings, at `step`: the last epoch trained, so that a finished run
        trained on (`resume RUN epochs=MORE`) gets its new figures at its new last epoch."""
        now_ms = int(time.time() * 1000)
        self._log_once([Metric(k, float(v), now_ms, step) for k, v in metrics.items()])

    def _log_once(self, metrics: list[Metric]) -> None:
        """Log `metrics`; in a run reopened after a stop, those whose step is in the store
        already are left out (a stop during the final logging: its values are there), one value
        per step. A finished run trained on logs its new final records whole."""
        self.open()

        def log() -> None:
            batch = metrics
            if self.reopened and not self.continued:
                names = {m.key for m in metrics}
                stored = {
                    (m.key, m.step)
                    for name in names
                    for m in self._client.get_metric_history(self.run_id, name)
                }
                batch = [m for m in metrics if (m.key, m.step) not in stored]
            if batch:
                self._log_metrics_now(batch)

        self._sync(log)

    def set_tags(self, tags: dict[str, str]) -> None:
        if self._reopen is not None:  # written with the reopening's tags
            self._reopen.update({k: str(v) for k, v in tags.items()})
            return
        self._sync(lambda: self._client.log_batch(self.run_id, tags=_tags(tags), synchronous=True))

    def log_text(self, text: str, name: str) -> None:
        self.open()
        self._sync(lambda: self._client.log_text(self.run_id, text, name))

    def log_dict(self, data: dict, name: str) -> None:
        self.open()
        self._sync(lambda: self._client.log_dict(self.run_id, data, name))

    def log_figure(self, figure: Any, name: str) -> None:
        self.open()
        self._sync(
            lambda: self._client.log_figure(self.run_id, figure, name, save_kwargs=FIGURE_SAVE)
        )

    def mark_experiment(self) -> None:
        """Mark the run's experiment as model training (see `mark_model_training`)."""
        self._sync(lambda: mark_model_training(self.experiment_id))

    def log_datasets(
        self, splits: dict[str, tuple[str, np.ndarray, np.ndarray]], loader: str
    ) -> None:
        """The data splits as dataset inputs: context -> (name, features, targets), made by
        `loader` (a function's dotted name); see `tracking.dataset`."""
        from lstm_cli.tracking.dataset import inputs

        datasets = inputs(splits, loader)

        def log() -> None:
            try:
                self._client.log_inputs(self.run_id, datasets=datasets)
            except MlflowException:
                # Jobs that start together on a new store both add the same dataset, and the
                # store's unique key refuses the second (MLflow checks, then inserts): it is
                # there now, so this run just links it.
                time.sleep(DATASET_RETRY_S)
                self._client.log_inputs(self.run_id, datasets=datasets)

        self.open()
        self._sync(log)

    def log_model(self, model: Any, scaling: str, reading: Any, example: np.ndarray) -> None:
        """The trained model as a SavedModel named `model`, taking raw 8x8 images read as
        `reading` reads them (see `tracking.logged_model`)."""
        from lstm_cli.tracking.logged_model import log_model

        self.open()
        self._sync(
            lambda: log_model(model, scaling, reading, example, self.run_id, self.experiment_id)
        )

    def register_model(self, name: str) -> str:
        """Register the model this run logged as a new version of `name`; return its URI
        (models:/NAME/VERSION)."""
        from lstm_cli.tracking.registry import register

        self.open()
        return self._sync(lambda: register(self.run_id, name).uri)

    def end(self, status: str, error: str | None = None) -> None:
        """Send what is left, keep `error` if any, and close the run with `status`."""
        if not self.opened:
            return  # a reopened run never written: it stays as it was
        with signals.deferred():
            try:
                if self._monitor is not None:
                    internals.stop_system_metrics(self._monitor)
                self._writer.drain()
                if error:
                    self._writer.call(lambda: self._set_error(error))
                self._writer.call(lambda: self._client.set_terminated(self.run_id, status))
            finally:
                self._writer.close()

    def abandon(self, status: str, error: str) -> None:
        """End the run after its store failed (or a second signal): one attempt at its status
        (first: an artifact store may be full while the database is not), then its error."""
        self._writer.close()
        if self.opened:
            with signals.deferred():
                with contextlib.suppress(Exception):
                    self._client.set_terminated(self.run_id, status)
                with contextlib.suppress(Exception):
                    self._set_error(error)

    def _set_error(self, error: str) -> None:
        self._client.set_tag(self.run_id, ERROR_TAG, error[:5000])
        self._client.log_text(self.run_id, error + "\n", ERROR_FILE)


def _monitor(run_id: str) -> Any:
    """MLflow's system-metrics monitor started for `run_id`; a UserError without psutil."""
    try:
        import psutil  # noqa: F401 - MLflow's monitors read the system through it
    except ImportError:
        raise UserError(
            "system metrics need psutil, which is not installed: pip install psutil"
        ) from None
    return internals.start_system_metrics(run_id)


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
    slot: str | None = None,
    epoch: int = 0,
    continued: bool = False,
    outage_s: float = 600.0,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[Run]:
    """Start a run (a child of `parent_run_id` if given), or go on with run `resume` (from
    `lstm-digits resume`, or `requeued` by SLURM) from its checkpoint of `epoch` in `slot`
    (none: from its start; `continued`: a finished run trained on), and yield its handle; end
    it with a true status whatever stops the block. `on_wait` is told once, in a line, when
    the run waits for a store that refuses.

    A reopened run is written to only from its first write on (`Run.open`): until then, a
    failure or a stop leaves it as it was. `outage_s`: how long the store may refuse writes
    that may go through later (a server away, a locked database).

    `system_metrics` (or MLflow's $MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING) records CPU and memory
    while the run lasts; the handle starts the monitor, so that a failure to start it ends the
    run FAILED (MLflow's own start would raise with the run left RUNNING).
    """
    from mlflow.tracking import get_tracking_uri

    store = get_tracking_uri()
    tags = {SOURCE_TAG: SOURCE, MLFLOW_SOURCE_TYPE: "LOCAL", **tags, **process_tags()}
    run = None
    with signals.scope(), process.environment(HTTP_RETRIES), ending(lambda: run):
        with signals.deferred():  # a signal meanwhile is raised once the run can be ended
            if resume:
                client = MlflowClient()
                before = client.get_run(resume)
                counter = REQUEUED_TAG if requeued else RESUMED_TAG
                count = int(before.data.tags.get(counter, "0")) + 1
                run = Run(resume, before.info.experiment_id, store, outage_s, on_wait)
                run._reopen, run.reopened = {**tags, counter: str(count)}, True
                run.continued = continued
                if slot:  # the one it goes on from stays untouched until a newer is saved
                    run.stored_slot = slot
                run.checkpoint_epoch = run.last_epoch = epoch
            else:
                if parent_run_id:
                    tags[PARENT_TAG] = parent_run_id
                client = MlflowClient()
                tags = internals.context_tags(tags)  # the user, as MLflow's start_run adds it
                with needs(
                    "EDIT permission on it",
                    lambda: f"log runs into {experiment_label(experiment_id)}",
                    store,
                ):
                    started = retrying(  # a store full, locked or away: one line, as later
                        lambda: client.create_run(
                            experiment_id, run_name=run_name(name), tags=tags
                        ),
                        store,
                        outage_s,
                        on_wait=on_wait,
                    )
                run = Run(started.info.run_id, experiment_id, store, outage_s, on_wait)
                params = [Param(k, str(v)) for k, v in params.items()]
                for first in range(0, len(params), 100):  # MLflow's limit per request
                    batch = params[first : first + 100]
                    run._sync(lambda b=batch: client.log_batch(run.run_id, params=b))
            if system_metrics or MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.get():
                run.monitor_system()
        yield run


ERROR_FILE = "error.txt"  # a failed or stopped run's error, whole (its tag is cut)


def _reopen(client: MlflowClient, run_id: str, tags: dict[str, str]) -> None:
    """Run `run_id` RUNNING again with `tags` (the count of resumes or requeues among them);
    the error of the stop it goes on from is no error of the run's (its tag and its file go)."""
    from lstm_cli.runtime.internals import delete_artifact

    before = client.get_run(run_id)
    client.update_run(run_id, "RUNNING")
    client.log_batch(run_id, tags=_tags(tags), synchronous=True)
    if ERROR_TAG in before.data.tags:
        client.delete_tag(run_id, ERROR_TAG)
        delete_artifact(before.info.artifact_uri, ERROR_FILE)
