"""A sweep in MLflow: one parent run, every job a child run that names it.

The parent is created before any job (jobs, wherever they run, then only open the store,
which avoids SQLite's schema-creation race) and is not the active run: jobs may share this
process. Its handle ends it, and any child left RUNNING, whatever stops the sweep.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE

from lstm_cli import signals
from lstm_cli.errors import one_line
from lstm_cli.pruning import TAG as PRUNED_TAG
from lstm_cli.tracking.run import (
    FIGURE_SAVE,
    PARENT_TAG,
    SOURCE,
    mark_model_training,
    run_name,
)

SWEEP_TAG = "lstm_digits.sweep"  # "parent" on a sweep's parent run
MAX_CHILDREN = 10000


def search_children(client: MlflowClient, experiment_id: str, parent_id: str) -> list[Any]:
    """Every child run of sweep `parent_id` in `experiment_id`, in one search."""
    query = f"tags.`{PARENT_TAG}` = '{parent_id}'"
    return list(client.search_runs([experiment_id], query, max_results=MAX_CHILDREN))


class Parent:
    """A sweep's parent run (see `start_parent`)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.ended = False
        self._client = MlflowClient()

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
                    "job": int(tags.get("sweep_job", -1)),
                    "status": run.info.status,
                    "overrides": tags.get("overrides", ""),
                    "params": dict(run.data.params),
                    "metrics": dict(run.data.metrics),
                    "error": tags.get("error", ""),
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
                    self._client.set_tag(child.info.run_id, "error", reason)
                    self._client.set_terminated(child.info.run_id, status)
                    closed += 1
        return closed

    def end(self, status: str, reason: str | None = None) -> None:
        """Close the parent with `status`; with a reason, its unfinished children too."""
        with signals.deferred():  # one hold: a second signal would leave the parent RUNNING
            if reason:
                self.close_children(status, reason)
                self._client.set_tag(self.run_id, "error", reason)
            self._client.set_terminated(self.run_id, status)
            self.ended = True


@contextmanager
def start_parent(experiment_id: str, name: str, tags: dict[str, str]) -> Iterator[Parent]:
    """Create a sweep's parent run and yield its handle. If the block does not end it, it ends
    FINISHED; KILLED on Ctrl-C or SIGTERM and FAILED on an error, with its children."""
    parent = None
    with signals.scope():
        try:
            with signals.deferred():
                source = {MLFLOW_SOURCE_NAME: f"{SOURCE} -m", MLFLOW_SOURCE_TYPE: "LOCAL"}
                run = MlflowClient().create_run(
                    experiment_id,
                    run_name=run_name(name),
                    tags={**source, **tags, SWEEP_TAG: "parent"},
                )
                parent = Parent(run.info.run_id)
                mark_model_training(experiment_id)
            yield parent
        except KeyboardInterrupt as ex:
            ex.run_id = None  # a sweep stops many runs: `runs` lists them, each resumable
            if parent is not None and not parent.ended:
                parent.end("KILLED", one_line(ex))
            raise
        except BaseException as ex:
            if parent is not None and not parent.ended:
                parent.end("FAILED", one_line(ex))
            raise
        else:
            if not parent.ended:
                parent.end("FINISHED")


def find_child(
    experiment_id: str, parent_id: str, job: str
) -> tuple[str, str, float | None] | None:
    """The run of job `job` of sweep `parent_id` (in its `experiment_id`), as (run id, status,
    val_accuracy), or None (a job SLURM requeued finds its run)."""
    found = MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}' and tags.sweep_job = '{job}'",
        max_results=1,
    )
    if not found:
        return None
    run = found[0]
    return run.info.run_id, run.info.status, run.data.metrics.get("val_accuracy")


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
