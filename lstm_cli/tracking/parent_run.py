"""A sweep in MLflow: one parent run, every job a child run that names it.

The parent is created before any job (jobs, wherever they run, then only open the store,
which avoids SQLite's schema-creation race) and is not the active run: jobs may share this
process. Its handle ends it, and any child left RUNNING, whatever stops the sweep.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient, get_tracking_uri
from mlflow.utils.mlflow_tags import MLFLOW_SOURCE_TYPE

from lstm_cli.runtime import internals, signals
from lstm_cli.runtime.errors import Interrupted, needs, one_line
from lstm_cli.tracking.owner import process_tags
from lstm_cli.tracking.run_handle import (
    FIGURE_SAVE,
    SOURCE,
    experiment_label,
    mark_model_training,
    run_name,
)
from lstm_cli.tracking.tags import (
    DIVERGED_TAG,
    ERROR_TAG,
    PARENT_TAG,
    PRUNED_TAG,
    RESUMED_TAG,
    SOURCE_TAG,
    SWEEP_JOB_TAG,
    SWEEP_TAG,
)

MAX_CHILDREN = 10000


def search_children(client: MlflowClient, experiment_id: str, parent_id: str) -> list[Any]:
    """Every child run of sweep `parent_id` in `experiment_id`, in one search."""
    query = f"tags.`{PARENT_TAG}` = '{parent_id}'"
    return list(client.search_runs([experiment_id], query, max_results=MAX_CHILDREN))


class Parent:
    """A sweep's parent run (see `start_parent`), in the current store or the one at `uri`."""

    def __init__(self, run_id: str, uri: str | None = None) -> None:
        self.run_id = run_id
        self.ended = False
        self._client = MlflowClient(uri)

    def log(
        self,
        *,
        tags: dict[str, str] | None = None,
        metrics: dict[str, float] | None = None,
        texts: dict[str, str] | None = None,
        figures: dict[str, Any] | None = None,
    ) -> None:
        """Tags, step-less metrics, text files and figures on the parent."""
        with signals.deferred():
            for key, value in (tags or {}).items():
                self._client.set_tag(self.run_id, key, value)
            for key, value in (metrics or {}).items():
                self._client.log_metric(self.run_id, key, value)
            for name, text in (texts or {}).items():
                self._client.log_text(self.run_id, text, name)
            for name, figure in (figures or {}).items():
                self._client.log_figure(self.run_id, figure, name, save_kwargs=FIGURE_SAVE)

    def _children(self) -> list[Any]:
        parent = self._client.get_run(self.run_id)
        return search_children(self._client, parent.info.experiment_id, self.run_id)

    def children(self, curve: str = "val_accuracy") -> list[dict[str, Any]]:
        """The jobs as plain dicts, by job number: ids, status, overrides, params, final
        metrics, error, and the per-epoch history of `curve`."""
        records = []
        for run in self._children():
            history = self._client.get_metric_history(run.info.run_id, curve)
            tags = run.data.tags
            records.append(
                {
                    "run_id": run.info.run_id,
                    "job": int(tags.get(SWEEP_JOB_TAG, -1)),
                    "status": run.info.status,
                    "overrides": tags.get("overrides", ""),
                    "params": dict(run.data.params),
                    "metrics": dict(run.data.metrics),
                    "error": tags.get(ERROR_TAG, ""),
                    "pruned_at_epoch": tags.get(PRUNED_TAG, ""),
                    "output_dir": tags.get("output_dir", ""),
                    "curve": [m.value for m in sorted(history, key=lambda m: m.step)],
                }
            )
        return sorted(records, key=lambda r: r["job"])

    def close_children(self, status: str, reason: str) -> int:
        """Give every child still RUNNING (its process died or was stopped) `status`."""
        closed = 0
        with signals.deferred():
            for child in self._children():
                if child.info.status == "RUNNING":
                    self._client.set_tag(child.info.run_id, ERROR_TAG, reason)
                    self._client.set_terminated(child.info.run_id, status)
                    closed += 1
        return closed

    def unfinished(self) -> list[str]:
        """The children a `resume` of the sweep would go on with: stopped or failed, not
        diverged (those would diverge again)."""
        return [
            child.info.run_id
            for child in self._children()
            if child.info.status != "FINISHED" and DIVERGED_TAG not in child.data.tags
        ]

    def end(self, status: str, reason: str | None = None) -> None:
        """Close the parent with `status`; with a reason, its unfinished children too."""
        with signals.deferred():  # one hold: a second signal would leave the parent RUNNING
            if reason:
                self.close_children(status, reason)
                self._client.set_tag(self.run_id, ERROR_TAG, reason)
            self._client.set_terminated(self.run_id, status)
            self.ended = True


SWEEP_COMMAND = "sweep.json"  # a sweep's command line, for `lstm-digits resume SWEEP`
SHOWN_IDS = 4  # runs a one-line message names by their id's first 8 characters


def told(parent_id: str, status: str, unfinished: list[str]) -> str:
    """What a stop or a failure left of a sweep, and the command that goes on."""
    ids = " ".join(run_id[:8] for run_id in unfinished[:SHOWN_IDS])
    if len(unfinished) > SHOWN_IDS:
        ids += f" +{len(unfinished) - SHOWN_IDS} more"
    runs = f" with {len(unfinished)} run(s) unfinished ({ids})" if unfinished else ""
    return f"sweep {parent_id} is {status}{runs}; go on with: lstm-digits resume {parent_id}"


def _create(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    tags: dict[str, str],
    command: dict[str, Any] | None,
) -> Parent:
    source = {SOURCE_TAG: f"{SOURCE} -m", MLFLOW_SOURCE_TYPE: "LOCAL"}
    run = client.create_run(
        experiment_id,
        run_name=run_name(name),
        # the user, as MLflow's start_run adds it
        tags=internals.context_tags({**source, **tags, SWEEP_TAG: "parent", **process_tags()}),
    )
    try:
        if command is not None:
            client.log_dict(run.info.run_id, command, SWEEP_COMMAND)
        mark_model_training(experiment_id)
    except BaseException:  # refused, or the store failed: the parent made is not left RUNNING
        with contextlib.suppress(Exception):
            client.set_terminated(run.info.run_id, "FAILED")
        raise
    return Parent(run.info.run_id)


def _reopen(client: MlflowClient, run_id: str) -> Parent:
    """A stopped sweep's parent RUNNING again, its process's tags and its resume counted; the
    error of its stop is no error of the sweep's."""
    before = client.get_run(run_id)
    count = int(before.data.tags.get(RESUMED_TAG, "0")) + 1
    client.update_run(run_id, "RUNNING")
    tags = {**process_tags(), RESUMED_TAG: str(count)}
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()], synchronous=True)
    if ERROR_TAG in before.data.tags:
        client.delete_tag(run_id, ERROR_TAG)
    return Parent(run_id)


@contextmanager
def start_parent(
    experiment_id: str,
    name: str,
    tags: dict[str, str],
    command: dict[str, Any] | None = None,
    reopen: str | None = None,
) -> Iterator[Parent]:
    """Create a sweep's parent run, its `command` ({"argv": [...]}, masked) kept for a
    resume, or reopen the stopped sweep `reopen`; yield its handle. If the block does not end
    it, it ends FINISHED; KILLED on Ctrl-C or SIGTERM and FAILED on an error, with its
    children, the stop naming them."""
    parent = None
    with signals.scope():
        try:
            with signals.deferred():
                client, store = MlflowClient(), get_tracking_uri()
                if reopen:
                    with needs(
                        "EDIT permission on its experiment",
                        lambda: f"go on with sweep {reopen} of {experiment_label(experiment_id)}",
                        store,
                    ):
                        parent = _reopen(client, reopen)
                else:
                    with needs(
                        "EDIT permission on it",
                        lambda: f"start a sweep in {experiment_label(experiment_id)}",
                        store,
                    ):
                        parent = _create(client, experiment_id, name, tags, command)
            yield parent
        except KeyboardInterrupt as ex:
            if parent is not None and not parent.ended:
                parent.end("KILLED", one_line(ex))
                if isinstance(ex, Interrupted):  # a sweep stops many runs: it names them
                    ex.told = told(parent.run_id, "KILLED", parent.unfinished())
            raise
        except BaseException as ex:
            if parent is not None and not parent.ended:
                parent.end("FAILED", one_line(ex))
            raise
        else:
            if not parent.ended:
                parent.end("FINISHED")


@dataclass(frozen=True)
class Child:
    """A sweep point's run as a requeued or resumed sweep finds it."""

    run_id: str
    status: str
    val_accuracy: float | None
    tags: dict[str, str]


def find_child(experiment_id: str, parent_id: str, job: str) -> Child | None:
    """The run of job `job` of sweep `parent_id` (in its `experiment_id`), or None (a job
    SLURM requeued, or a resumed sweep's, finds its run)."""
    found = MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}' and tags.{SWEEP_JOB_TAG} = '{job}'",
        max_results=1,
    )
    if not found:
        return None
    run = found[0]
    return Child(
        run.info.run_id, run.info.status, run.data.metrics.get("val_accuracy"), run.data.tags
    )


def rung_values(
    experiment_id: str, parent_id: str, run_id: str, key: str
) -> tuple[float | None, list[float]]:
    """The metric `key` (a pruning rung's) of the runs of sweep `parent_id`, in one search:
    (run `run_id`'s own value or None, the other runs' values)."""
    mine, others = None, []
    for run in search_children(MlflowClient(), experiment_id, parent_id):
        value = run.data.metrics.get(key)
        if value is None:
            continue
        if run.info.run_id == run_id:
            mine = value
        else:
            others.append(value)
    return mine, others
