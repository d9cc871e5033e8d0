"""How a run ends, whatever stops its block: FINISHED, KILLED on a stop, FAILED on an error,
never left RUNNING; a stop or a store fault names the run, so that the user is told how to go
on (see `tracking.run.start_run`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from lstm_cli.errors import Interrupted, StoreUnavailable, one_line


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
            ex.run_id = ex.run_id or (run.run_id if run.has_checkpoint else None)
        raise
    except KeyboardInterrupt as ex:
        run = current()
        if run is not None:
            if getattr(ex, "at_once", False):  # a second signal: no wait for the store
                run.abandon("KILLED", one_line(ex))
                raise
            try:
                run.end("KILLED", one_line(ex))
            except (Exception, KeyboardInterrupt):  # a second signal, or the store failed
                run.abandon("KILLED", one_line(ex))
                raise ex from None
            if isinstance(ex, Interrupted) and run.has_checkpoint and run.opened:
                ex.run_id = ex.run_id or run.run_id
        raise
    except BaseException as ex:
        if current() is not None:
            try:
                current().end("FAILED", one_line(ex))
            except Exception:  # the store failed too (or the writer did): one attempt
                current().abandon("FAILED", one_line(ex))
        raise
    else:
        try:
            current().end("FINISHED")
        except StoreUnavailable as ex:  # what is left could not be sent: resume sends it
            current().abandon("FAILED", one_line(ex))
            ex.run_id = ex.run_id or (current().run_id if current().has_checkpoint else None)
            raise
        except Exception as ex:  # the writer failed otherwise: never left RUNNING
            current().abandon("FAILED", one_line(ex))
            raise
