"""One MLflow run as a handle that owns its writes, its buffered epoch metrics and its end.

    with start_run(experiment_id, name, params, tags) as run:
        run.log_epoch({"val_accuracy": 0.9}, epoch=1)
        run.log_figure(figure, "learning_curves.png")

The run ends FINISHED when the block completes, KILLED on Ctrl-C or SIGTERM, FAILED on any
other exception (the error kept as the `error` tag and `error.txt`); metrics logged so far are
kept. The handle opens one signal scope (see `lstm_cli.signals`) and every store write runs
deferred within it, so no signal lands between a write and the code that would end the run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mlflow
import numpy as np
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from lstm_cli import signals
from lstm_cli.errors import one_line

PARENT_TAG = "mlflow.parentRunId"
FLUSH_EVERY_S = 1.0  # epoch metrics reach the store at most this often


class Run:
    """A started run (see `start_run`). Every method writes to the store, signals deferred."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._client = MlflowClient()
        # Per-epoch metrics written in batches: a store round trip per epoch would cost more
        # than a fast epoch; MLflow's own async queue costs about a second to shut down.
        self._pending: list[Metric] = []
        self._last_flush = time.monotonic()

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
            self._client.log_figure(self.run_id, figure, name)

    def log_model(self, spec: dict, weights: dict[str, np.ndarray]) -> None:
        """The trained model as a pyfunc named `model` (see `tracking.model`)."""
        from lstm_cli.tracking.model import log_model

        with signals.deferred():
            log_model(spec, weights)  # MLflow logs a model to the active run: this one

    def end(self, status: str, error: str | None = None) -> None:
        """Flush, keep `error` if any, and close the run with `status`."""
        with signals.deferred():
            try:
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
) -> Iterator[Run]:
    """Start a run (a child of `parent_run_id` if given) and yield its handle; end it with a
    true status whatever stops the block."""
    if parent_run_id:
        tags = {**tags, PARENT_TAG: parent_run_id}
    run = None
    with signals.scope():
        try:
            with signals.deferred():  # a signal meanwhile is raised once the run can be ended
                started = mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags)
                run = Run(started.info.run_id)
                mlflow.log_params(params)
            yield run
        except KeyboardInterrupt as ex:
            if run is not None:
                run.end("KILLED", one_line(ex))
            raise
        except BaseException as ex:
            if run is not None:
                run.end("FAILED", one_line(ex))
            raise
        else:
            run.end("FINISHED")
