"""Runs read back as plain values, for `runs`, `evaluate`, `predict`, `register` and `ui`.

Lookups run in the store: `best`, run-id prefixes and sorted, limited listings are one
search_runs each, with a filter, an order and a limit, never a read of the whole experiment.
"""

from __future__ import annotations

import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lstm_cli.runtime.errors import UserError, first_line, needs
from lstm_cli.tracking import registry
from lstm_cli.tracking.logged_model import MODEL_NAME
from lstm_cli.tracking.store import NO_RUNS, reader
from lstm_cli.tracking.tags import PARENT_TAG, PRUNED_TAG, SWEEP_TAG

BEST_PAGE = 20  # `best`: runs read at a time (pruned points are skipped)
PAGE = 1000  # runs per request when all of them are needed (a tracking server's page limit)
NEWEST_FIRST = ["attributes.start_time DESC"]
# Sweep parents log best_val_accuracy, never val_accuracy: this leaves them out.
FINISHED_WITH_ACCURACY = "attributes.status = 'FINISHED' and metrics.val_accuracy >= 0"


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
    def shown_status(self) -> str:
        """The status as `runs` shows it: RUNNING (lost) when its process died on this host,
        FINISHED (pruned @k) when pruning stopped it after epoch k."""
        from lstm_cli.tracking.owner import process_alive

        if self.status == "FINISHED" and PRUNED_TAG in self.tags:
            return f"FINISHED (pruned @{self.tags[PRUNED_TAG]})"
        lost = self.status == "RUNNING" and not process_alive(self.tags)
        return f"{self.status} (lost)" if lost else self.status

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
    with needs("READ permission on it", lambda: f"read experiment '{experiment}'", uri):
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


def _search(
    client: MlflowClient, ids: list[str], query: str, order_by: list[str], limit: int | None
) -> list[Any]:
    """Runs matching `query` in `order_by`: the first `limit` of them, or all (page by page)."""
    runs: list[Any] = []
    token = None
    while limit is None or len(runs) < limit:
        size = PAGE if limit is None else min(PAGE, limit - len(runs))
        page = client.search_runs(ids, query, max_results=size, order_by=order_by, page_token=token)
        runs += page
        token = page.token
        if not token:
            break
    return runs


def children_query(parent_id: str | None) -> str:
    """The filter for the runs of sweep `parent_id` (MLflow keeps the link as a tag)."""
    return f"tags.`{PARENT_TAG}` = '{parent_id}'" if parent_id else ""


def search(
    uri: str,
    experiment: str,
    parent_id: str | None = None,
    order_by: list[str] | None = None,
    limit: int | None = None,
) -> list[RunRecord]:
    """The runs of `experiment` (only the children of sweep `parent_id` if given) in `order_by`
    (MLflow's syntax; default newest first), at most `limit` of them."""
    client = reader(uri)
    found = _experiment_id(client, uri, experiment)
    runs = _search(client, [found], children_query(parent_id), order_by or NEWEST_FIRST, limit)
    if not runs and parent_id is None:
        raise UserError(f"{NO_RUNS} (experiment '{experiment}' in {uri} is empty)")
    return [_record(run) for run in runs]


def has_param(uri: str, experiment: str, key: str, parent_id: str | None = None) -> bool:
    """Whether any run (of sweep `parent_id`, if given) has the param `key`."""
    client = reader(uri)
    query = " and ".join(q for q in (children_query(parent_id), f"params.`{key}` != ''") if q)
    return bool(client.search_runs([_experiment_id(client, uri, experiment)], query, max_results=1))


def best(uri: str, experiment: str, parent_id: str | None = None) -> RunRecord:
    """The FINISHED run with the highest `val_accuracy` (the newest of equals); a point that
    pruning stopped is not one (its number is of fewer epochs, and it has no model)."""
    client = reader(uri)
    query = " and ".join(q for q in (FINISHED_WITH_ACCURACY, children_query(parent_id)) if q)
    ids, order = [_experiment_id(client, uri, experiment)], ["metrics.val_accuracy DESC"]
    token = None
    while True:  # MLflow cannot search for a missing tag: the pruned are skipped here
        page = client.search_runs(
            ids, query, max_results=BEST_PAGE, order_by=[*order, *NEWEST_FIRST], page_token=token
        )
        for run in page:
            if PRUNED_TAG not in run.data.tags:
                return _record(run)
        token = page.token
        if not token:
            raise UserError(f"no finished run with a val_accuracy in experiment '{experiment}' yet")


def latest(uri: str, experiment: str) -> RunRecord:
    """The newest run of `experiment` that is not a sweep's point: a run, or a sweep's parent."""
    client = reader(uri)
    ids, token = [_experiment_id(client, uri, experiment)], None
    while True:  # MLflow cannot search for a missing tag: a sweep's points are skipped here
        page = client.search_runs(
            ids, "", max_results=BEST_PAGE, order_by=NEWEST_FIRST, page_token=token
        )
        for run in page:
            if PARENT_TAG not in run.data.tags:
                return _record(run)
        token = page.token
        if not token:
            raise UserError(f"{NO_RUNS} (experiment '{experiment}' in {uri} is empty)")


def find_run(uri: str, experiment: str, ref: str) -> RunRecord:
    """The run `ref` names: `best`, `latest`, a full run id, or a unique prefix of one in
    `experiment`."""
    client = reader(uri)
    ref = ref.strip().lower()
    if ref == "best":
        return best(uri, experiment)
    if ref == "latest":
        return latest(uri, experiment)
    if len(ref) == 32:  # a full id may belong to any experiment of the store
        try:
            with needs("READ permission on its experiment", lambda: f"read run {ref}", uri):
                return _record(client.get_run(ref))
        except MlflowException:
            pass  # told below, with the experiment's runs in mind
    found = _experiment_id(client, uri, experiment)
    matches = []
    if re.fullmatch(r"[0-9a-f]+", ref):  # run ids are hex: anything else matches none
        query = f"attributes.run_id LIKE '{ref}%'"
        matches = client.search_runs([found], query, max_results=2)
    if len(matches) > 1:
        raise UserError(f"run id prefix '{ref}' matches several runs: give more characters")
    if not matches:
        if not client.search_runs([found], max_results=1):
            raise UserError(f"{NO_RUNS} (experiment '{experiment}' in {uri} is empty)")
        raise UserError(
            f"no run '{ref}' in experiment '{experiment}' at {uri}: "
            "`lstm-digits runs` lists the run ids (or use `best`)"
        )
    return _record(matches[0])


def require_model(run: RunRecord) -> None:
    """Raise a UserError unless `run` logged a model."""
    if not run.has_model:
        raise UserError(
            f"run {run.run_id} has no logged model (trained with tracking.log_model=false, "
            "or it stopped before the end): pick another run"
        )


def find_model(uri: str, experiment: str, ref: str) -> tuple[RunRecord, str]:
    """The run that logged the model `ref` names, and the URI MLflow loads it from.

    `ref` is what `find_run` takes, or a registered version: models:/NAME/VERSION or
    models:/NAME@ALIAS (resolved once, so the model and its run agree).
    """
    if not registry.is_reference(ref):
        run = find_run(uri, experiment, ref)
        require_model(run)
        return run, f"runs:/{run.run_id}/{MODEL_NAME}"
    client = reader(uri)
    version = registry.resolve(uri, ref)
    if version.run_id is None:
        raise UserError(f"{version.uri} was not logged by a run: its held-out split is unknown")
    try:
        return _record(client.get_run(version.run_id)), version.uri
    except MlflowException as ex:
        raise UserError(f"{version.uri}: its run {version.run_id}: {first_line(ex)}") from None


def load_model(uri: str, model_uri: str) -> Any:
    """The logged model at `model_uri` (from `find_model`): raw 0..16 images (n, rows, pixels)
    -> class probabilities."""
    mlflow.set_tracking_uri(uri)
    try:
        with warnings.catch_warnings():  # version-mismatch advice on load: not actionable here
            warnings.simplefilter("ignore")
            return mlflow.pyfunc.load_model(model_uri)
    except MlflowException as ex:
        raise UserError(f"cannot load the model {model_uri}: {first_line(ex)}") from None


def epoch_history(
    run_id: str, names: tuple[str, ...], uri: str | None = None
) -> tuple[dict[int, dict[str, float]], dict[str, set[int]]]:
    """The per-epoch values of metrics `names` in the store `uri` (default: the current one),
    by step, and each one's steps."""
    client = reader(uri) if uri else MlflowClient()
    history: dict[int, dict[str, float]] = {}
    logged: dict[str, set[int]] = {}
    for name in names:
        for metric in client.get_metric_history(run_id, name):
            history.setdefault(metric.step, {})[name] = metric.value
            logged.setdefault(name, set()).add(metric.step)
        logged.setdefault(name, set())
    return history, logged


@dataclass(frozen=True)
class StoredRun:
    """Where a run of the current store is: its experiment, by id and name, and its tags."""

    run_id: str
    experiment_id: str
    experiment: str
    tags: dict[str, str]


def stored_run(run_id: str) -> StoredRun:
    """Run `run_id` of the current store (a resume goes on in it)."""
    client = MlflowClient()
    run = client.get_run(run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    return StoredRun(run_id, experiment.experiment_id, experiment.name, dict(run.data.tags))


def experiment_of(run_id: str) -> str | None:
    """The experiment id of run `run_id` in the current store; None if it has no such run."""
    try:
        return MlflowClient().get_run(run_id).info.experiment_id
    except MlflowException:
        return None


def artifact_text(run_id: str, path: str) -> str | None:
    """A text artifact of a run of the current store; None if it has none at `path`."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return Path(MlflowClient().download_artifacts(run_id, path, tmp)).read_text()
    except (MlflowException, OSError):
        return None


def sweep_command(uri: str, parent: RunRecord) -> list[str]:
    """The command line (after `train`) that ran sweep `parent`, as its start kept it (URIs
    masked); for a sweep from before that, its overrides (its -cd and -cn, if any, unknown)."""
    import json

    from lstm_cli.tracking.parent_run import SWEEP_COMMAND

    client = reader(uri)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(parent.run_id, SWEEP_COMMAND, tmp)
            return list(json.loads(Path(path).read_text())["argv"])
    except (MlflowException, OSError, ValueError, KeyError):
        return ["-m", *parent.tags.get("overrides", "").split()]


def sweep_jobs(uri: str, parent: RunRecord) -> list[dict[str, Any]]:
    """The jobs of sweep `parent` (its parent run, in the store at `uri`) as a finished sweep's
    summary reads them (`parent_run.Parent.children`); a UserError for a run that is not a
    sweep's parent, or one with no jobs."""
    from lstm_cli.tracking.parent_run import Parent

    if not parent.is_sweep_parent:
        kind = "a sweep's point" if PARENT_TAG in parent.tags else "a single run"
        raise UserError(
            f"run {parent.run_id} is {kind}, not a sweep: give a sweep's parent run "
            "(`lstm-digits runs` marks one `(sweep)`)"
        )
    reader(uri)
    jobs = Parent(parent.run_id, uri).children()
    if not jobs:
        raise UserError(f"sweep {parent.run_id} has no jobs in the store")
    return jobs


def held_out(run: RunRecord) -> Any:
    """The splits of `run`, rebuilt from its params, as raw 0..16 images (float32): its test
    split (`x_test`) is the held-out one, whatever its validation split."""
    from lstm_cli.data.digits import load_digits

    try:
        test_size = float(run.params["data.test_size"])
        split_seed = int(run.params["data.split_seed"])
    except (KeyError, ValueError):
        raise UserError(
            f"run {run.run_id} has no data.test_size/data.split_seed params: not an lstm-digits run"
        ) from None
    return load_digits(test_size, split_seed, scaling="raw")


def probabilities(model: Any, images: Any) -> Any:
    """A loaded model's class probabilities (n, classes) for raw images (n, rows, pixels), passed
    as the signature asks: float64, as sklearn's digits.images."""
    import numpy as np

    return np.asarray(model.predict(np.asarray(images, dtype=np.float64)))
