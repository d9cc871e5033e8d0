"""How a run ends, whatever stops its block: FINISHED, KILLED on a stop, FAILED on an error,
never left RUNNING; a stop, a store fault or a failure names the run, and a stop or a store
fault says how to go on (see `tracking.run.start_run`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lstm_cli.runtime.errors import (
    Interrupted,
    StoreUnavailable,
    TrainingFailed,
    one_line,
    resume_command,
)


def told(run: Any) -> str:
    """What a stop left of `run` (a `tracking.run.Run`), and the command that goes on."""
    go_on = f"go on with: {resume_command(run.run_id)}"
    if not run.opened:  # a reopened run that this process never wrote to
        return f"run {run.run_id} is as it was before; {go_on}"
    if not run.last_epoch:
        return f"run {run.run_id} is KILLED before its first epoch; {go_on}"
    if run.checkpoint_epoch:
        saved = f"its checkpoint of epoch {run.checkpoint_epoch}"
    else:  # `resume` trains it again from its start, keeping what the store holds
        saved = "no checkpoint yet: resume replays it from its start"
    return f"run {run.run_id} is KILLED after epoch {run.last_epoch} ({saved}); {go_on}"


@contextmanager
def ending(current) -> Iterator[None]:
    """End the run `current()` names with a true status, whatever stops the block; a stop or
    a store fault names the run, so that the user is told how to go on. If the end itself
    fails (the store, a second signal), the run is abandoned: one attempt at its status."""
    try:
        yield
    except StoreUnavailable as ex:
        run = current()
        if run is not None:
            run.abandon("FAILED", one_line(ex))
            ex.run_id = ex.run_id or run.run_id
        raise
    except KeyboardInterrupt as ex:
        if current() is not None:
            _stopped(current(), ex)
        raise
    except BaseException as ex:
        if current() is not None:
            _failed(current(), ex)
        raise
    else:
        _finished(current())


def _stopped(run: Any, ex: KeyboardInterrupt) -> None:
    """End `run` KILLED by the stop `ex`, which then tells what it left: once the run's
    writes are done, so that it names the checkpoint that reached the store."""
    try:
        if getattr(ex, "at_once", False):  # a second signal: no wait for the store
            run.abandon("KILLED", one_line(ex))
        else:
            try:
                run.end("KILLED", one_line(ex))
            except (Exception, KeyboardInterrupt):  # a second signal, or the store failed
                run.abandon("KILLED", one_line(ex))
                raise ex from None
    finally:
        if isinstance(ex, Interrupted) and ex.told is None:
            ex.told = told(run)


def _failed(run: Any, ex: BaseException) -> None:
    """End `run` FAILED by the error `ex` (a TrainingFailed then names the run)."""
    reason = one_line(ex)  # before the run's id joins a TrainingFailed's message
    if isinstance(ex, TrainingFailed):
        ex.run_id = ex.run_id or run.run_id
    try:
        run.end("FAILED", reason)
    except Exception:  # the store failed too (or the writer did): one attempt
        run.abandon("FAILED", reason)


def _finished(run: Any) -> None:
    """End `run` FINISHED, or FAILED if what is left cannot reach the store."""
    try:
        run.end("FINISHED")
    except StoreUnavailable as ex:  # what is left could not be sent: resume sends it
        run.abandon("FAILED", one_line(ex))
        ex.run_id = ex.run_id or run.run_id
        raise
    except Exception as ex:  # the writer failed otherwise: never left RUNNING
        run.abandon("FAILED", one_line(ex))
        raise
