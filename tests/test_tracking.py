"""The tracking store and the run handle, on temporary SQLite stores (no CLI, no training)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy.orm
from mlflow.tracking import MlflowClient

from lstm_cli.runtime import signals
from lstm_cli.runtime.errors import Interrupted
from lstm_cli.tracking import checkpoint_slots, store
from lstm_cli.tracking.parent_run import start_parent
from lstm_cli.tracking.run_handle import start_run
from tests.helpers import cli_env, sqlite_uri


def test_a_new_store_is_created_once_with_the_experiment(tmp_path):
    uri = sqlite_uri(tmp_path)
    first = store.open_experiment(uri, "one")
    assert store.open_experiment(uri, "one") == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]  # no partial file left
    assert MlflowClient(uri).get_experiment_by_name("one").experiment_id == first


def test_an_interrupted_creation_leaves_no_store(tmp_path, monkeypatch):
    """Ctrl-C while MLflow builds the schema: no half-built store that could not be opened."""

    def interrupted(partial_uri):
        store.sqlite_path(partial_uri).write_bytes(b"half a schema")
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "MlflowClient", interrupted)
    monkeypatch.setattr(store, "template_path", lambda: tmp_path.parent / "no-template.db")
    uri = sqlite_uri(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        store.open_experiment(uri, "one")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert store.open_experiment(uri, "one")  # the next run starts afresh


def _contents(db) -> tuple:
    """A store's schema (each statement's lines: MLflow orders constraints differently from
    one build to the next), schema version and experiments (without their times)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as con:
        rows = con.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        lines = lambda sql: sorted(x.strip().rstrip(",") for x in (sql or "").splitlines())  # noqa: E731
        schema = [(kind, name, lines(sql)) for kind, name, sql in rows]
        version = con.execute("SELECT * FROM alembic_version").fetchall()
        experiments = con.execute(
            "SELECT experiment_id, name, artifact_location, lifecycle_stage FROM experiments"
        ).fetchall()
    return schema, version, experiments


@pytest.mark.slow  # MLflow builds a store from its migrations: about 10 s
def test_a_store_copied_from_the_template_is_the_one_mlflow_builds(tmp_path, monkeypatch):
    template = tmp_path / "cache" / "empty.db"
    monkeypatch.setattr(store, "template_path", lambda: template)
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path / "first")
    store.create_sqlite_store(tmp_path / "first" / "mlflow.db")  # MLflow builds it
    assert template.exists()
    monkeypatch.chdir(tmp_path / "second")  # the Default experiment's location follows
    store.create_sqlite_store(tmp_path / "second" / "mlflow.db")  # a copy
    MlflowClient(f"sqlite:///{tmp_path / 'second' / 'built.db'}").search_experiments()
    copied = _contents(tmp_path / "second" / "mlflow.db")
    assert copied == _contents(tmp_path / "second" / "built.db") != ((), (), ())
    assert copied[2] == [(0, "Default", str(tmp_path / "second" / "mlruns" / "0"), "active")]
    uri = f"sqlite:///{tmp_path / 'second' / 'mlflow.db'}"
    assert store.open_experiment(uri, "one")  # MLflow opens the copy and writes to it


def test_a_store_made_meanwhile_by_another_process_is_kept(tmp_path):
    uri = sqlite_uri(tmp_path)
    experiment_id = store.open_experiment(uri, "theirs")
    store.create_sqlite_store(tmp_path / "mlflow.db")  # lost the race: discards its own
    assert MlflowClient(uri).get_experiment_by_name("theirs").experiment_id == experiment_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


@pytest.mark.slow
def test_a_store_another_process_is_migrating_in_place_is_waited_for(tmp_path):
    """`mlflow ui` (or any MLflow client) opening a new SQLite file builds its schema in place;
    opening the store meanwhile waits for that instead of failing on a table built twice."""
    uri = sqlite_uri(tmp_path)
    builder = subprocess.Popen(
        [sys.executable, "-c", f"from mlflow.tracking import MlflowClient; MlflowClient({uri!r})"],
        env=cli_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "mlflow.db").exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # the builder has begun its migrations
        store.open_experiment(uri, "mine")
    finally:
        assert builder.wait(timeout=60) == 0  # its migrations were not run over
    assert MlflowClient(uri).get_experiment_by_name("mine") is not None


def _run_with_signal_after_commit(experiment_id, signum, nth, seen) -> None:
    """One run (start, params, epochs, a summary, end) with a real `signum` right after the
    store's nth commit (None: none). `seen` gets the number of commits by the body's end, if
    the body ran to its end."""
    commit, commits = sqlalchemy.orm.Session.commit, []

    def commit_then_signal(session, *args, **kwargs):
        commit(session, *args, **kwargs)
        commits.append(session)
        if len(commits) == nth:
            signal.raise_signal(signum)

    sqlalchemy.orm.Session.commit = commit_then_signal
    try:
        with start_run(experiment_id, "run", {"a": 1, "b": 2}, {"t": "v"}) as run:
            run.log_epoch({"loss": 1.0}, 1)
            run.flush()
            run.log_epoch({"loss": 0.9}, 2)  # buffered: written by the run's end
            run.log_metrics({"loss_final": 0.5})
            seen["body_done"] = len(commits)
    finally:
        sqlalchemy.orm.Session.commit = commit


@pytest.mark.slow  # a run per commit, each stopped by a real signal: about 12 s
@pytest.mark.fault
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_after_any_store_commit_of_a_run_never_leaves_it_running(tmp_path, signum):
    """A real SIGINT or SIGTERM after each of a run's database commits in turn: inside
    start_run (its row just written), log_params, a metric flush, a summary, and the run's end."""
    uri = sqlite_uri(tmp_path)
    experiment_id = store.open_experiment(uri, "one")
    client = MlflowClient(uri)
    clean: dict = {}
    _run_with_signal_after_commit(experiment_id, signum, None, clean)
    in_body = clean["body_done"]  # commits up to the body's end
    known = {r.info.run_id for r in client.search_runs([experiment_id])}
    nth = 0
    while True:
        nth += 1
        seen: dict = {}
        try:
            _run_with_signal_after_commit(experiment_id, signum, nth, seen)
        except Interrupted as ex:
            assert ex.signum == signum
        else:
            break  # nth is past the run's last commit
        (run,) = [r for r in client.search_runs([experiment_id]) if r.info.run_id not in known]
        known.add(run.info.run_id)
        if nth <= in_body:  # during the body: it stops there, the run is KILLED
            assert (run.info.status, "body_done" in seen) == ("KILLED", False), nth
            reason = "interrupted (Ctrl-C)" if signum == signal.SIGINT else "terminated (SIGTERM)"
            assert run.data.tags["error"] == reason
        else:  # while the run ends: it ends FINISHED, then the signal takes effect
            assert run.info.status == "FINISHED", nth
    assert nth > in_body + 1  # the run's own end was interrupted too
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the scope gave it back


def test_metrics_logged_before_a_signal_are_kept(tmp_path):
    uri = sqlite_uri(tmp_path)
    experiment_id = store.open_experiment(uri, "one")
    with pytest.raises(Interrupted), start_run(experiment_id, "run", {}, {}) as run:
        for epoch in range(1, 4):
            run.log_epoch({"val_accuracy": epoch / 10}, epoch)  # buffered, not yet written
        os.kill(os.getpid(), signal.SIGTERM)
    client = MlflowClient(uri)
    assert client.get_run(run.run_id).info.status == "KILLED"
    history = client.get_metric_history(run.run_id, "val_accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.1), (2, 0.2), (3, 0.3)]


def test_an_error_ends_the_run_failed_with_its_reason(tmp_path):
    uri = sqlite_uri(tmp_path)
    experiment_id = store.open_experiment(uri, "one")
    with pytest.raises(ValueError), start_run(experiment_id, "run", {}, {}) as run:
        raise ValueError("the loss became NaN")
    finished = MlflowClient(uri).get_run(run.run_id)
    assert finished.info.status == "FAILED"
    assert finished.data.tags["error"] == "ValueError: the loss became NaN"


def test_a_stopped_sweep_ends_its_parent_and_running_children(tmp_path):
    uri = sqlite_uri(tmp_path)
    experiment_id = store.open_experiment(uri, "one")
    client = MlflowClient(uri)
    with pytest.raises(Interrupted), start_parent(experiment_id, "sweep", {}) as parent:
        child = client.create_run(
            experiment_id, tags={"mlflow.parentRunId": parent.run_id}
        )  # a job whose process was killed: RUNNING
        os.kill(os.getpid(), signal.SIGTERM)
    assert client.get_run(parent.run_id).info.status == "KILLED"
    assert client.get_run(child.info.run_id).info.status == "KILLED"
    assert client.get_run(child.info.run_id).data.tags["error"] == "terminated (SIGTERM)"


def test_a_second_signal_does_not_wait_for_the_write():
    reached = []
    with pytest.raises(Interrupted), signals.scope(), signals.deferred():
        signal.raise_signal(signal.SIGINT)
        reached.append("held once")
        signal.raise_signal(signal.SIGTERM)
        reached.append("held twice")
    assert reached == ["held once"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_while_epochs_train_a_first_signal_asks_and_a_second_stops_at_once():
    with signals.scope():
        with pytest.raises(Interrupted) as stopped, signals.graceful():
            signal.raise_signal(signal.SIGINT)
            assert signals.requested() == signal.SIGINT  # the epoch ends, then a checkpoint
            signal.raise_signal(signal.SIGINT)
        assert stopped.value.signum == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_another_handler_is_left_alone():
    def theirs(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, theirs)
    try:
        with signals.scope():
            assert signal.getsignal(signal.SIGTERM) is theirs
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_jobs_adding_the_same_dataset_at_once_both_link_it(tmp_path, monkeypatch):
    """Two jobs starting together on a new store: MLflow looks the dataset up, then inserts it,
    and the store's unique key refuses the second insert. The run that lost retries and links
    the dataset the other one added. The other job's insert is made right after this run's
    lookup, in the real store."""
    import numpy as np

    from lstm_cli.tracking.dataset import inputs

    uri = sqlite_uri(tmp_path)
    experiment_id = store.open_experiment(uri, "one")
    splits = {"training": ("digits-train", np.zeros((3, 8, 8)), np.arange(3))}
    client = MlflowClient(uri)
    other = client.create_run(experiment_id).info.run_id
    lookup, raced = sqlalchemy.orm.Query.all, []

    def lookup_then_the_other_job_adds_it(query):
        rows = lookup(query)
        entity = query.column_descriptions[0]["entity"]
        if not raced and getattr(entity, "__name__", "") == "SqlDataset":
            raced.append(rows)
            client.log_inputs(other, datasets=inputs(splits, "loader"))
        return rows

    monkeypatch.setattr(sqlalchemy.orm.Query, "all", lookup_then_the_other_job_adds_it)
    with start_run(experiment_id, "run", {}, {}) as run:
        run.log_datasets(splits, loader="loader")
    assert raced == [[]]  # the lookup found nothing: the insert met the other job's row
    linked = [client.get_run(r).inputs.dataset_inputs for r in (other, run.run_id)]
    assert [[d.dataset.digest for d in found] for found in linked] == [
        [linked[0][0].dataset.digest]
    ] * 2
    assert client.get_run(run.run_id).info.status == "FINISHED"
    client.set_terminated(other)


def test_a_checkpoint_the_writer_drops_does_not_shift_the_slots(tmp_path, monkeypatch):
    """A checkpoint overtaken before it was written is dropped: the next one written goes into
    the slot the newest stored one is not in, never over the only good one."""
    experiment_id = store.open_experiment(sqlite_uri(tmp_path), "one")
    written, inside = [], threading.Event()
    release = threading.Event()

    def save(run_id, slot, epoch, arrays, meta):
        if not written:
            inside.set()
            release.wait(10)  # a slow store: the next two are handed over meanwhile
        written.append((slot, epoch))

    monkeypatch.setattr(checkpoint_slots, "save", save)
    with start_run(experiment_id, "run", {}, {}) as run:
        run.save_checkpoint(1, {}, {})
        assert inside.wait(10)
        run.save_checkpoint(2, {}, {})  # dropped: 3 overtakes it before it is written
        run.save_checkpoint(3, {}, {})
        time.sleep(0.1)
        release.set()
        run.flush()
    assert written == [("a", 1), ("b", 3)]


@pytest.mark.parametrize("when", ["inside the block", "at the run's end"])
def test_a_writer_error_that_is_no_store_fault_still_ends_the_run(tmp_path, monkeypatch, when):
    """Not a store's refusal (a bug, a proxy's 413): the run ends FAILED, never RUNNING."""
    from lstm_cli.tracking.run_handle import Run

    experiment_id = store.open_experiment(sqlite_uri(tmp_path), "one")

    def broken(self, metrics):
        raise ValueError("a writer bug")

    monkeypatch.setattr(Run, "_log_metrics_now", broken)
    with (
        pytest.raises(ValueError, match="a writer bug"),
        start_run(experiment_id, "run", {}, {}) as run,
    ):
        run.log_epoch({"loss": 1.0}, 1)
        if when == "inside the block":
            run.flush()
    ended = MlflowClient(sqlite_uri(tmp_path)).get_run(run.run_id)
    assert ended.info.status == "FAILED" and "a writer bug" in ended.data.tags["error"]
