"""The run's background writer: order, coalescing, retries through an outage, faults told once.

Fast: a fake store (a list, and errors raised on demand) stands in for MLflow.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
import time

import pytest

from lstm_cli.runtime.errors import StoreUnavailable
from lstm_cli.tracking import writer as writes
from lstm_cli.tracking.writer import Writer, classify


class FakeStore:
    """Records writes in order; refuses them while `refusal` is set; can hold a write."""

    def __init__(self) -> None:
        self.log: list = []
        self.refusal: BaseException | None = None
        self.gate = threading.Event()
        self.gate.set()

    def metrics(self, batch: list) -> None:
        self.gate.wait(10)
        if self.refusal is not None:
            raise self.refusal
        self.log += [("metric", m) for m in batch]

    def checkpoint(self, epoch: int):
        def write() -> None:
            if self.refusal is not None:
                raise self.refusal
            self.log.append(("checkpoint", epoch))

        return write


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "full"),
        (sqlite3.OperationalError("database or disk is full"), "full"),
        (sqlite3.OperationalError("attempt to write a readonly database"), "read-only"),
        (OSError(errno.EROFS, "Read-only file system"), "read-only"),
        (sqlite3.OperationalError("database is locked"), "locked"),
        (
            ConnectionError("Failed to establish a new connection: Connection refused"),
            "unreachable",
        ),
        (ValueError("a bad value"), None),
    ],
)
def test_store_errors_are_told_apart(error, kind):
    assert classify(error) == kind
    try:  # wrapped, as MLflow wraps the driver's error
        raise RuntimeError("(raised as a result of Query-invoked autoflush)") from error
    except RuntimeError as wrapped:
        assert classify(wrapped) == kind


def test_metrics_reach_the_store_before_the_checkpoint_that_covers_them():
    store = FakeStore()
    writer = Writer("sqlite:///x.db", 60, store.metrics)
    for epoch in range(1, 7):
        writer.add_metrics([epoch])
        if epoch % 3 == 0:
            writer.put(store.checkpoint(epoch), "checkpoint")
    writer.drain()
    for position, (what, epoch) in enumerate(store.log):
        if what == "checkpoint":  # every epoch up to it is before it
            assert {e for w, e in store.log[:position] if w == "metric"} >= set(range(1, epoch + 1))
    assert [e for w, e in store.log if w == "metric"] == list(range(1, 7))
    writer.close()


def test_a_newer_checkpoint_replaces_an_unsent_one():
    store = FakeStore()
    writer = Writer("sqlite:///x.db", 60, store.metrics)
    store.gate.clear()  # the store is slow: the first batch is held
    writer.add_metrics([1])
    writer.put(store.checkpoint(1), "checkpoint")
    time.sleep(0.2)  # the writer is inside the first batch now
    for epoch in (2, 3):
        writer.add_metrics([epoch])
        writer.put(store.checkpoint(epoch), "checkpoint")
    store.gate.set()
    writer.drain()
    assert store.log == [("metric", 1), ("metric", 2), ("metric", 3), ("checkpoint", 3)]
    writer.close()


def test_a_store_away_for_a_while_loses_nothing_and_costs_the_training_nothing(monkeypatch):
    monkeypatch.setattr(writes, "RETRY_FIRST_S", 0.05)
    store = FakeStore()
    writer = Writer("http://server", 60, store.metrics)
    store.refusal = ConnectionError("Connection refused")
    start = time.monotonic()
    for epoch in range(1, 101):
        writer.add_metrics([epoch])  # returns at once while the server is away
    assert time.monotonic() - start < 0.5
    time.sleep(0.3)
    store.refusal = None  # back
    writer.drain()
    assert [e for _, e in store.log] == list(range(1, 101))
    writer.close()


def test_past_the_limit_the_training_is_told_once_in_one_line(monkeypatch):
    monkeypatch.setattr(writes, "RETRY_FIRST_S", 0.05)
    store = FakeStore()
    writer = Writer("sqlite:////data/mlflow.db", 0.3, store.metrics)
    store.refusal = sqlite3.OperationalError("database is locked")
    writer.add_metrics([1])
    with pytest.raises(StoreUnavailable) as raised:
        writer.drain()
    message = str(raised.value)
    assert "sqlite:////data/mlflow.db stayed locked" in message and "\n" not in message
    with pytest.raises(StoreUnavailable):  # every later write too
        writer.add_metrics([2])


def test_a_full_store_is_not_retried():
    store = FakeStore()
    writer = Writer("sqlite:///x.db", 600, store.metrics)
    store.refusal = OSError(errno.ENOSPC, "No space left on device")
    writer.add_metrics([1])
    start = time.monotonic()
    with pytest.raises(StoreUnavailable, match="is full"):
        writer.drain()
    assert time.monotonic() - start < 2  # not the 10 minutes of an outage


def test_another_error_is_raised_as_it_is():
    def broken(batch):
        raise ValueError("a bug")

    writer = Writer("sqlite:///x.db", 600, broken)
    writer.add_metrics([1])
    with pytest.raises(ValueError, match="a bug"):
        writer.drain()


def test_epoch_metrics_reach_the_store_within_a_flush_without_a_checkpoint():
    store = FakeStore()
    writer = Writer("sqlite:///x.db", 60, store.metrics)
    writer.add_metrics([1])
    writer.add_metrics([2])  # joins the batch the writer is gathering
    deadline = time.monotonic() + writes.FLUSH_EVERY_S + 2
    while not store.log and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.log == [("metric", 1), ("metric", 2)]  # no drain, no checkpoint asked for it
    writer.close()


def test_a_fault_is_told_in_whole_words_however_long_the_library_says_it():
    """requests says an outage in a line of hundreds of characters: the one line keeps the
    words that tell it, not a cut (it was `...port=5079): Max r): start it again`)."""
    said = (
        "HTTPConnectionPool(host='127.0.0.1', port=5079): Max retries exceeded with url: "
        "/api/2.0/mlflow/runs/log-batch (Caused by NewConnectionError('<urllib3.connection."
        "HTTPConnection object at 0x7f>: Failed to establish a new connection: [Errno 111] "
        "Connection refused'))"
    )
    line = writes.describe("unreachable", "http://127.0.0.1:5079", 600, ConnectionError(said))
    assert line == (
        "the tracking server http://127.0.0.1:5079 was unreachable for 10 minutes "
        "(tracking.outage_minutes) (connection refused): start it again"
    )


def test_a_store_that_refuses_for_a_while_is_told_once_as_the_writes_wait(monkeypatch):
    """The training is told once, when the first write waits (it may end meanwhile: a finished
    bar and nothing else for as long as the outage lasts is no answer)."""
    monkeypatch.setattr(writes, "RETRY_FIRST_S", 0.01)
    store, told = FakeStore(), []
    store.refusal = ConnectionError("Connection refused")
    writer = Writer("http://127.0.0.1:1", 60, store.metrics, told.append)
    writer.add_metrics(["m1"])
    writer.put(store.checkpoint(1), "checkpoint")
    time.sleep(0.2)  # several attempts
    store.refusal = None
    writer.drain()
    assert store.log == [("metric", "m1"), ("checkpoint", 1)]
    assert told == [
        "the tracking store http://127.0.0.1:1 does not answer: the run's records wait and are "
        "sent again for up to 1 minute (tracking.outage_minutes)"
    ]
