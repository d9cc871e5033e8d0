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


def _run_with_ctrl_c_after_commit(experiment_id: str, nth: int | None, seen: dict) -> None:
    """One run (start, params, an epoch, a summary, end) with a real SIGINT right after the
    store's nth commit (None: none). `seen` gets the number of commits by the body's end, if
    the body ran to its end."""
    commit, commits = sqlalchemy.orm.Session.commit, []

    def commit_then_ctrl_c(session, *args, **kwargs):
        commit(session, *args, **kwargs)
        commits.append(session)
        if len(commits) == nth:
            signal.raise_signal(signal.SIGINT)

    sqlalchemy.orm.Session.commit = commit_then_ctrl_c
    try:
        with tracking.tracked_run(experiment_id, "run", {"a": 1, "b": 2}, {"t": "v"}):
            tracking.log_epoch({"loss": 1.0}, 1)
            tracking._epoch_buffer.flush()
            tracking.log_summary({"loss": 0.5})
            seen["body_done"] = len(commits)
    finally:
        sqlalchemy.orm.Session.commit = commit


def test_ctrl_c_after_any_store_commit_of_a_run_never_leaves_it_running(tmp_path):
    """A real SIGINT after each of a run's database commits in turn: inside start_run (its row
    just written), log_params, a metric flush, a summary, and the run's end."""
    uri = sqlite_uri(tmp_path)
    experiment_id = tracking.open_experiment(uri, "one")
    client = MlflowClient(uri)
    clean: dict = {}
    _run_with_ctrl_c_after_commit(experiment_id, None, clean)
    in_body = clean["body_done"]  # commits up to the body's end (12 with MLflow 3.17)
    known = {r.info.run_id for r in client.search_runs([experiment_id])}
    nth = 0
    while True:
        nth += 1
        seen: dict = {}
        try:
            _run_with_ctrl_c_after_commit(experiment_id, nth, seen)
        except KeyboardInterrupt:
            pass
        else:
            break  # nth is past the run's last commit
        (run,) = [r for r in client.search_runs([experiment_id]) if r.info.run_id not in known]
        known.add(run.info.run_id)
        if nth <= in_body:  # during the body: it stops there, the run is KILLED
            assert (run.info.status, "body_done" in seen) == ("KILLED", False), nth
        else:  # while the run ends: it ends FINISHED, then Ctrl-C takes effect
            assert run.info.status == "FINISHED", nth
    assert nth > in_body + 1  # the run's own end was interrupted too


def test_a_second_ctrl_c_does_not_wait_for_the_write():
    reached = []
    with pytest.raises(KeyboardInterrupt), tracking._ctrl_c_held():
        signal.raise_signal(signal.SIGINT)
        reached.append("held once")
        signal.raise_signal(signal.SIGINT)
        reached.append("held twice")
    assert reached == ["held once"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
