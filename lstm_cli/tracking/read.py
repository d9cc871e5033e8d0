"""Runs read back as plain values, for `runs`, `evaluate`, `predict` and `ui`."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lstm_cli.errors import UserError, first_line
from lstm_cli.tracking.model import MODEL_NAME
from lstm_cli.tracking.run import PARENT_TAG
from lstm_cli.tracking.store import NO_RUNS, reader
from lstm_cli.tracking.sweep import SWEEP_TAG

MAX_RUNS = 10000  # runs read per experiment: far more than a local study holds


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


def _experiment_id(client: MlflowClient, uri: str, experiment: str) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise UserError(f"{NO_RUNS} (no experiment '{experiment}' in {uri})")
    return found.experiment_id


def require_runs(uri: str) -> None:
    """Raise a UserError unless the store exists and holds at least one run."""
    client = reader(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    if not ids or not client.search_runs(ids, max_results=1):
        raise UserError(f"{NO_RUNS} (the store {uri} has no runs)")


def experiment_id(uri: str, experiment: str) -> str | None:
    """The id of `experiment` in an existing store; None if the store has no such experiment."""
    found = reader(uri).get_experiment_by_name(experiment)
    return found.experiment_id if found else None


def search(uri: str, experiment: str, parent_id: str | None = None) -> list[RunRecord]:
    """The runs of `experiment`, newest first; only the children of sweep `parent_id` if given."""
    client = reader(uri)
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
    client = reader(uri)
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
        raise UserError(f"cannot load the model of run {run.run_id}: {first_line(ex)}") from None
