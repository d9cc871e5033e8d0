"""A run's store writes, in order, on one background thread, retried through an outage.

The training hands over its epoch metrics and checkpoints and goes on at once: a slow or
absent server costs it no time. One thread sends them in the order they came, so the metrics of
epochs 1..k are in the store before the checkpoint of epoch k: a kill at any instant leaves a
store that `lstm-digits resume` can go on from (see lstm_cli/jobs/resume_rules.py).

What stays buffered is bounded: epoch metrics (a few floats an epoch) and at most one
checkpoint, the newest, which replaces an unsent older one. Writes the store refuses for a while
(a server away, a SQLite database locked by another process) are retried until
`tracking.outage_minutes` has passed. A store that is full or read-only, a server that stops
taking the run's credentials or permission (401, 403: revoked, expired), or a store that refuses
for longer, is a `StoreUnavailable`, raised in the training's thread at its next write.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from lstm_cli.runtime.errors import (
    CREDENTIALS,
    AccessRefused,
    StoreUnavailable,
    access_code,
    first_line,
    who_asks,
)
from lstm_cli.runtime.masking import mask

FLUSH_EVERY_S = 1.0  # epoch metrics reach the store at most this often (a round trip each)
BATCH = 1000  # metrics per request: MLflow's limit for one log_batch
MAX_PENDING_METRICS = 500_000  # past this (days of epochs unsent), the training waits
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 10.0  # backoff between attempts while the store refuses
WAIT_STEP_S = 0.1  # how often a waiting training thread looks for a signal
TRANSIENT = ("unreachable", "locked")  # faults that may pass: retried until the limit

# What a store's error says, by its message (SQLAlchemy's, sqlite3's, requests') or errno.
_FAULTS = (
    ("full", ("disk is full", "no space left")),
    (
        "read-only",
        (
            "readonly database",
            "read-only file system",
            "read only",
            "unable to open database file",
            "permission denied",
            "disk i/o error",
        ),
    ),  # SQLite's, when its disk turns read-only mid-write
    ("locked", ("database is locked", "database table is locked")),
    (
        "unreachable",
        (
            "connection refused",
            "failed to establish",
            "max retries exceeded",
            "connection aborted",
            "remote end closed",
            "connectionerror",
            "timed out",
            "temporarily unavailable",
            "bad gateway",
            "service unavailable",
            "gateway timeout",
            "response code 50",
        ),
    ),
)
_ERRNOS = {
    errno.ENOSPC: "full",
    errno.EDQUOT: "full",
    errno.EROFS: "read-only",
    errno.EACCES: "read-only",
    errno.EPERM: "read-only",
    errno.ECONNREFUSED: "unreachable",
}


def classify(ex: BaseException) -> str | None:
    """What a store error is: 'full', 'read-only', 'locked', 'unreachable' or 'refused' (a
    server refused the credentials or the permission); None for another error (a bug, a bad
    value), which is not retried. Looks through the chained causes."""
    found = _diagnose(ex)
    return found[0] if found else None


def _diagnose(ex: BaseException) -> tuple[str, str] | None:
    """The fault's kind and the words of the error that say it (whole words: a line of a
    library's error can be hundreds of characters long)."""
    if isinstance(ex, AccessRefused):  # told already, with what was asked: not a store fault
        return None
    code = access_code(ex)  # before the words: a 403's body says "Permission denied"
    if code is not None:
        return "refused", str(code)
    seen: BaseException | None = ex
    while seen is not None:
        code = getattr(seen, "errno", None)
        if code in _ERRNOS:
            return _ERRNOS[code], os.strerror(code).lower()
        text = f"{type(seen).__name__}: {seen}".lower()
        for kind, fragments in _FAULTS:
            said = next((f for f in fragments if f in text), None)
            if said is not None:
                return kind, said
        seen = seen.__cause__ or seen.__context__
    return None


def describe(kind: str, store: str, limit_s: float, ex: BaseException) -> str:
    """The one line a store fault is told in: the store, what it did, what to do."""
    store = mask(store)
    limit = f"{_minutes(limit_s)} (tracking.outage_minutes)"
    found = _diagnose(ex)
    detail = found[1] if found else first_line(ex)
    if kind == "refused":  # its detail is the code: 401, the credentials; 403, the permission
        kind = f"refused {detail}"
    who = who_asks(store)
    what = {
        "full": (f"the tracking store {store} is full", "free some space"),
        "read-only": (f"the tracking store {store} cannot be written", "make it writable"),
        "locked": (f"the tracking store {store} stayed locked for {limit}", "stop what holds it"),
        "unreachable": (
            f"the tracking server {store} was unreachable for {limit}",
            "start it again",
        ),
        "refused 401": (
            f"the tracking server {store} stopped taking the credentials of {who or 'this run'}",
            f"set {CREDENTIALS} to working ones",
        ),
        "refused 403": (
            f"the tracking server {store} stopped letting {who or 'you'} write this run",
            "get EDIT permission on its experiment back",
        ),
    }
    fault, todo = what[kind]
    return f"{fault} ({mask(detail)}): {todo}"


def waiting(kind: str, store: str, limit_s: float) -> str:
    """The line that says a store refuses for now and its writes wait (see `retrying`)."""
    what = "does not answer" if kind == "unreachable" else "is locked"
    return (
        f"the tracking store {mask(store)} {what}: the run's records wait and are sent again "
        f"for up to {_minutes(limit_s)} (tracking.outage_minutes)"
    )


def _minutes(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:g} minute" + ("" if minutes == 1 else "s")


def retrying(
    write: Callable[[], Any],
    store: str,
    limit_s: float,
    given_up: Callable[[], bool] = lambda: False,
    on_wait: Callable[[str], None] | None = None,
) -> Any:
    """`write()`, tried again while `store` refuses for a reason that may pass, until `limit_s`
    has passed (or `given_up()`); a StoreUnavailable then, or at once for a full or read-only
    store. Another error is raised as it is. `on_wait(line)` is called when a retry begins."""
    first: float | None = None
    delay = RETRY_FIRST_S
    while True:
        try:
            return write()
        except Exception as ex:
            kind = classify(ex)
            if kind is None:
                raise
            if first is None and kind in TRANSIENT and on_wait is not None:
                on_wait(waiting(kind, store, limit_s))
            first = first if first is not None else time.monotonic()
            left = limit_s - (time.monotonic() - first)
            if kind not in TRANSIENT or left <= 0 or given_up():
                raise StoreUnavailable(describe(kind, store, limit_s, ex)) from ex
            time.sleep(min(delay, left))
            delay = min(delay * 2, RETRY_MAX_S)


class Writer:
    """The store writes of one run, in order, on a background thread (see the module).

    `add_metrics` and `put` return at once; `call` runs a write in the calling thread once all
    handed over before it are in the store; `drain` waits for those. All three raise the
    `StoreUnavailable` that stopped the writes, if one did.
    """

    def __init__(
        self,
        store: str,
        limit_s: float,
        write_metrics: Callable[[list], None],
        on_wait: Callable[[str], None] | None = None,
    ):
        self.store = store
        self.limit_s = limit_s
        self._write_metrics = write_metrics
        self._on_wait = on_wait  # told once, at the first wait for the store
        self._told = False
        self._queue: deque[tuple[str | None, Any]] = deque()  # (key, metrics list or callable)
        self._busy = False  # an item is being written
        self._fault: BaseException | None = None
        self._closed = False
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    # -- the training's side

    def add_metrics(self, metrics: list) -> None:
        """Epoch metrics, sent within FLUSH_EVERY_S."""
        self._raise_fault()
        with self._wake:
            if self._queue and self._queue[-1][0] == "metrics":
                self._queue[-1][1].extend(metrics)  # not taken yet: one batch
            else:
                self._queue.append(("metrics", list(metrics)))
                self._wake.notify()  # the writer gathers epochs for FLUSH_EVERY_S, then sends
            pending = sum(len(v) for k, v in self._queue if k == "metrics")
        self._start()
        while pending > MAX_PENDING_METRICS and self._wait_step():
            with self._wake:
                pending = sum(len(v) for k, v in self._queue if k == "metrics")

    def put(self, write: Callable[[], None], key: str) -> None:
        """A write sent after everything handed over before it; it replaces an unsent write of
        the same `key` (a newer checkpoint makes an older one useless)."""
        self._raise_fault()
        with self._wake:
            kept = [item for item in self._queue if item[0] != key]
            self._queue.clear()
            for item in kept:  # two metric batches a dropped write stood between: one
                if self._queue and item[0] == "metrics" and self._queue[-1][0] == "metrics":
                    self._queue[-1][1].extend(item[1])
                else:
                    self._queue.append(item)
            self._queue.append((key, write))
            self._wake.notify()
        self._start()

    def drain(self) -> None:
        """Wait until everything handed over is in the store (a signal ends the wait)."""
        with self._wake:
            self._wake.notify()
        while self._wait_step():
            pass
        self._raise_fault()

    def call(self, write: Callable[[], Any]) -> Any:
        """Run `write` here, after everything handed over before it, retried as the rest."""
        self.drain()
        return self.retrying(write)

    def close(self) -> None:
        """Stop the thread (after `drain`, nothing is lost)."""
        with self._wake:
            self._closed = True
            self._wake.notify()

    def retrying(self, write: Callable[[], Any]) -> Any:
        """`write()` with the store's retries (see `retrying`); a closed writer stops trying."""
        return retrying(write, self.store, self.limit_s, lambda: self._closed, self._tell)

    def _tell(self, line: str) -> None:
        if self._on_wait is not None and not self._told:
            self._told = True
            self._on_wait(line)

    # -- the thread

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="store-writer", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if not self._queue:  # closed, nothing left
                    return
                key, item = self._queue[0]
                if key == "metrics" and len(self._queue) == 1 and not self._closed:
                    self._wake.wait(FLUSH_EVERY_S)  # more epochs join this batch meanwhile
                key, item = self._queue.popleft()
                self._busy = True
            try:
                if key == "metrics":
                    for start in range(0, len(item), BATCH):
                        self.retrying(lambda b=item[start : start + BATCH]: self._write_metrics(b))
                else:
                    self.retrying(item)
            except BaseException as ex:  # kept for the training's thread, which tells it
                self._fault = ex
                with self._wake:
                    self._queue.clear()
                    self._busy = False
                return
            with self._wake:
                self._busy = False
                self._wake.notify_all()

    def _wait_step(self) -> bool:
        """Wait a little while items are left; False once none is (or the writes stopped)."""
        with self._wake:
            if (not self._queue and not self._busy) or self._fault is not None:
                return False
            if self._thread is None or not self._thread.is_alive():
                return False
            self._wake.wait(WAIT_STEP_S)
            return True

    def _raise_fault(self) -> None:
        if self._fault is not None:
            raise self._fault
