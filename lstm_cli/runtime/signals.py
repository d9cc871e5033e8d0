"""Ctrl-C and SIGTERM, turned into an orderly end of the runs they interrupt.

A scheduler stops a job with SIGTERM (`scancel`, a time limit, `docker stop`, systemd,
Kubernetes), whose default action kills the process on the spot: its MLflow run would stay
RUNNING forever. Inside `scope()` both signals raise `Interrupted` instead (a
KeyboardInterrupt), so the run's handle ends it KILLED with the metrics so far.

A KeyboardInterrupt inside an MLflow call can leave a run RUNNING (its row written, its id not
yet returned) or the database session unusable for the writes that would end it, so store
writes run in `deferred()`: a signal that arrives meanwhile takes effect right after the write,
or at once when it comes a second time (a write to a server that does not answer retries).

While a run trains its epochs (`graceful()`), the first SIGINT or SIGTERM asks for a stop
instead: the epoch ends, a checkpoint is saved, then the run ends KILLED and can be resumed. A
second signal stops at once.

Compare Lightning's SLURM signal connector: one place turns a signal into an orderly end.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lstm_cli.runtime.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Handlers this module replaces: Python's own, and the defaults. Another handler (a launcher's,
# a test harness's) is someone else's choice and stays.
TAKEN_OVER = {signal.SIGINT: (signal.default_int_handler,), signal.SIGTERM: (signal.SIG_DFL,)}


class _State:
    """How deep scopes and writes nest, the handlers replaced, a signal held back, and a stop
    requested."""

    def __init__(self) -> None:
        self.scopes = 0
        self.writes = 0
        self.graceful = 0
        self.pending: int | None = None
        self.replaced: dict[int, Any] = {}
        self.requested: int | None = None
        self.stopped: int | None = None

    def request(self, signum: int, frame: Any) -> None:
        self.requested = signum  # the training stops at its next epoch's end (`requested`)

    def handle(self, signum: int, frame: Any) -> None:
        self.stopped = signum
        if self.requested is not None:  # a stop was asked for already: the user will not wait
            self.pending = None
            stop = Interrupted(signum)
            stop.at_once = True
            raise stop
        if self.graceful:
            self.requested = signum  # the training stops at its epoch's end, checkpointed
            return
        if self.writes and self.pending is None:
            self.pending = signum  # raised when the write ends
            return
        self.pending = None  # outside a write, or a second signal: the user will not wait
        raise Interrupted(signum)


_state = _State()


@contextmanager
def scope(force: tuple[int, ...] = (), requests: tuple[int, ...] = ()) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM raise `Interrupted` (deferred during writes).

    `force`: signals taken over whatever handles them now, e.g. in a scheduled job, where
    submitit only logs SIGTERM ("Bypassing signal SIGTERM", until SLURM's SIGKILL) and its
    time-limit signal would raise in the middle of a store write.
    `requests`: signals that ask for an orderly stop rather than raise (SLURM's warning before
    a time limit or a preemption): `requested()` tells, the training checkpoints and stops.
    Scopes nest (a sweep, then each of its runs); the outermost installs the handlers and
    restores the previous ones. Signals reach only the main thread: elsewhere, a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _state.scopes == 0:
        _state.replaced = {}
        _state.requested = None
        _state.stopped = None
        for signum in dict.fromkeys((*SIGNALS, *force, *requests)):
            previous = signal.getsignal(signum)
            if signum in requests:
                _state.replaced[signum] = previous
                signal.signal(signum, _state.request)
            elif signum in force or previous in TAKEN_OVER.get(signum, ()):
                _state.replaced[signum] = previous
                signal.signal(signum, _state.handle)
    _state.scopes += 1
    try:
        yield
    finally:
        _state.scopes -= 1
        if _state.scopes == 0:
            for signum, previous in _state.replaced.items():
                signal.signal(signum, previous)
            _state.replaced, _state.pending = {}, None


@contextmanager
def graceful() -> Iterator[None]:
    """A run's epochs: the first SIGINT or SIGTERM is a request (see `requested`) that the
    training honours at the epoch's end; a second one raises at once."""
    _state.graceful += 1
    try:
        yield
    finally:
        _state.graceful -= 1


def previous(signum: int) -> Any:
    """The handler of `signum` before the outermost scope took it over (the current handler if
    none did): the requeue handler of submitit, for a job inside a packed SLURM job's scope."""
    return _state.replaced.get(signum, signal.getsignal(signum))


def stopped() -> int | None:
    """The signal that stopped this process's work inside the outermost scope, if one came (a
    packed SLURM job then starts no further sweep point)."""
    return _state.stopped


def requested() -> int | None:
    """The signal that asked for an orderly stop (see `scope` and `graceful`), if one came."""
    return _state.requested


@contextmanager
def deferred() -> Iterator[None]:
    """A store write: a signal arriving inside is raised once the outermost write ends."""
    _state.writes += 1
    try:
        yield
    finally:
        _state.writes -= 1
        if _state.writes == 0 and _state.pending is not None:
            signum, _state.pending = _state.pending, None
            raise Interrupted(signum)
