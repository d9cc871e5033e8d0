"""The tracking store itself: a new SQLite store appears complete or not at all."""

from __future__ import annotations

import signal

import pytest
import sqlalchemy.orm
from mlflow.tracking import MlflowClient

from lstm_cli import tracking
from tests.conftest import sqlite_uri


def test_a_new_store_is_created_once_with_the_experiment(tmp_path):
    uri = sqlite_uri(tmp_path)
    first = tracking.open_experiment(uri, "one")
    assert tracking.open_experiment(uri, "one") == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]  # no partial file left
    assert MlflowClient(uri).get_experiment_by_name("one").experiment_id == first


def test_an_interrupted_creation_leaves_no_store(tmp_path, monkeypatch):
    """Ctrl-C while MLflow builds the schema: no half-built store that could not be opened."""

    def interrupted(partial_uri):
        tracking._sqlite_path(partial_uri).write_bytes(b"half a schema")
        raise KeyboardInterrupt

    monkeypatch.setattr(tracking, "MlflowClient", interrupted)
    uri = sqlite_uri(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        tracking.open_experiment(uri, "one")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert tracking.open_experiment(uri, "one")  # the next run starts afresh


def test_a_store_made_meanwhile_by_another_process_is_kept(tmp_path):
    uri = sqlite_uri(tmp_path)
    experiment_id = tracking.open_experiment(uri, "theirs")
    tracking._create_sqlite_store(tmp_path / "mlflow.db")  # lost the race: discards its own
    assert MlflowClient(uri).get_experiment_by_name("theirs").experiment_id == experiment_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


@pytest.mark.parametrize("nth", range(1, 7))
def test_ctrl_c_during_any_store_write_of_a_run_never_leaves_it_running(tmp_path, monkeypatch, nth):
    """A real SIGINT right after the nth commit: inside start_run (its row just written), in
    log_params, in a metric flush, or while the run is being ended."""
    uri = sqlite_uri(tmp_path)
    experiment_id = tracking.open_experiment(uri, "one")
    commit, commits = sqlalchemy.orm.Session.commit, []

    def commit_then_ctrl_c(session, *args, **kwargs):
        commit(session, *args, **kwargs)
        commits.append(session)
        if len(commits) == nth:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(sqlalchemy.orm.Session, "commit", commit_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        with tracking.tracked_run(experiment_id, "run", {"a": 1, "b": 2}, {"t": "v"}):
            tracking.log_epoch({"loss": 1.0}, 1)
            tracking.log_summary({"loss": 0.5})
        raise KeyboardInterrupt  # Ctrl-C after the run ended (nth beyond its writes)
    monkeypatch.undo()
    runs = MlflowClient(uri).search_runs([experiment_id])
    assert [r.info.status for r in runs] in (["KILLED"], ["FINISHED"])
