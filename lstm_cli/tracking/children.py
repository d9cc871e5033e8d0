"""A running sweep's children as its live line reads them: one search per look, plain dicts.

`sweeps.live_line` calls `Children.read` every few seconds from a thread while the jobs write; it
reads and never writes. Its experiment is looked up at the first read, not at construction,
so that a store away at the sweep's start fails a read (which the caller retries), not the sweep.
"""

from __future__ import annotations

from typing import Any

from mlflow.tracking import MlflowClient

from lstm_cli.tracking.parent_run import search_children
from lstm_cli.tracking.tags import PRUNED_TAG


class Children:
    """The child runs of sweep `parent_id` in the store at `uri`."""

    def __init__(self, uri: str, parent_id: str) -> None:
        self.uri = uri
        self.parent_id = parent_id
        self._experiment_id: str | None = None

    def read(self) -> list[dict[str, Any]]:
        """Every child so far: its status (RUNNING, FINISHED, FAILED, KILLED), whether it was
        pruned, its overrides and its metrics' last values. Raises what the store raises."""
        client = MlflowClient(self.uri)
        if self._experiment_id is None:
            self._experiment_id = client.get_run(self.parent_id).info.experiment_id
        runs = search_children(client, self._experiment_id, self.parent_id)
        return [
            {
                "status": run.info.status,
                "pruned": PRUNED_TAG in run.data.tags,
                "overrides": run.data.tags.get("overrides", ""),
                "metrics": dict(run.data.metrics),
            }
            for run in runs
        ]
