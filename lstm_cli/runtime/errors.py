"""Exceptions that reach users, and how any exception is told in one line."""

from __future__ import annotations

import os
import signal
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from lstm_cli.runtime.masking import mask, shown, split_credentials


class UserError(Exception):
    """A mistake in what the user asked for; its message is shown as is, without a traceback."""


class TrainingFailed(Exception):
    """Training stopped on its own terms (for example a NaN loss); the run is marked FAILED.

    `run_id`, once the run's handle has set it, starts the message with the run it ended.
    """

    run_id: str | None = None

    def __str__(self) -> str:
        text = super().__str__()
        return f"run {self.run_id} FAILED: {text}" if self.run_id else text


class Diverged(TrainingFailed):
    """The loss became NaN or infinite at `epoch`: the run ends FAILED before anything of that
    epoch is checkpointed, and `resume` refuses it (it would diverge again)."""

    def __init__(self, epoch: int, learning_rate: float):
        super().__init__(
            f"the loss became NaN or infinite at epoch {epoch} (learning_rate={learning_rate:g}): "
            "train it again with a lower learning_rate"
        )
        self.epoch = epoch


class StoreUnavailable(Exception):
    """The tracking store refused a run's writes: full, read-only, or locked or away for longer
    than `tracking.outage_minutes`. What reached the store stays, its last checkpoint too.

    `run_id`, once the run's handle has set it, ends the message with how to go on.
    """

    run_id: str | None = None

    def __str__(self) -> str:
        text = super().__str__()
        if self.run_id:
            text += f"; then go on with: {resume_command(self.run_id)}"
        return text


# A tracking server that checks who asks (MLflow's basic-auth app): what MLflow's client reads
# credentials from, and the error codes its refusals come back with.
CREDENTIALS = "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)"
ACCESS_CODES = {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403}


class AccessRefused(UserError):
    """The tracking server refused who asked (401: no credentials, or wrong ones) or what they
    asked (403: `doing` needs `needs`, which the user lacks). Nothing was written."""

    def __init__(
        self, code: int, store: str | None = None, doing: str | None = None, needs: str = ""
    ):
        self.code = code
        server = f"the tracking server {mask(store)}" if store else "the tracking server"
        who = who_asks(store)
        if code == 401 and who is None:
            text = f"{server} asks who you are (401): set {CREDENTIALS}"
        elif code == 401:
            text = f"{server} did not take the credentials of {who} (401): set {CREDENTIALS}"
        elif doing:
            text = (
                f"{who or 'you'} may not {doing} on {server} (403): that needs {needs}; "
                "ask its owner or the server's admin for it"
            )
        else:
            text = f"{server} refused {who or 'you'} (403): ask its admin for the permission"
        super().__init__(text)


def who_asks(store: str | None = None) -> str | None:
    """Who MLflow's client says it is to a server, as it sends credentials: `user NAME` (its
    two variables, both set), `the token in MLFLOW_TRACKING_TOKEN`, `user NAME` of the URI, or
    None (no credentials)."""
    name = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if name and os.environ.get("MLFLOW_TRACKING_PASSWORD"):
        return f"user {name}"
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return "the token in MLFLOW_TRACKING_TOKEN"
    name = split_credentials(store)[1] if store else None
    return f"user {name}" if name else None


def access_code(ex: BaseException) -> int | None:
    """401 or 403 if `ex` (or an error it was raised from) is a tracking server's refusal of
    who asked or of what they asked; else None."""
    seen: BaseException | None = ex
    while seen is not None:
        if isinstance(seen, AccessRefused):
            return seen.code
        code = ACCESS_CODES.get(str(getattr(seen, "error_code", "")))
        status = getattr(getattr(seen, "response", None), "status_code", None)  # requests'
        if code is None and status in (401, 403):  # the artifacts' HTTP errors have no code
            code = status
        if code is not None:
            return code
        seen = seen.__cause__ or seen.__context__
    return None


@contextmanager
def needs(what: str, doing: Callable[[], str], store: str) -> Iterator[None]:
    """A refusal of the server `store` inside the block as an AccessRefused that says what was
    asked (`doing()`, called then: 'log runs into experiment 'x'') and what that `what` needs
    ('EDIT permission on it')."""
    try:
        yield
    except AccessRefused:
        raise
    except Exception as ex:
        code = access_code(ex)
        if code is None:
            raise
        raise AccessRefused(code, store, doing() if code == 403 else None, what) from None


def resume_command(run_id: str) -> str:
    """The one command that goes on with a stopped run or sweep."""
    return f"lstm-digits resume {run_id}"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or a stop request (SIGTERM: a scheduler, `docker stop`, `kill`).

    A KeyboardInterrupt, so that Hydra, joblib and our own code treat both alike: runs end
    KILLED, and the process exits 128 + the signal's number. `told`: what became of the run
    or sweep it stopped and the command that goes on, once their handles have set it (None:
    no run was made).
    """

    told: str | None = None
    at_once = False  # a second signal: the user will not wait for the store

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def reason(self) -> str:
        if self.signum == signal.SIGINT:
            return "interrupted (Ctrl-C)"
        if self.signum == signal.SIGTERM:
            return "terminated (SIGTERM)"
        name = signal.Signals(self.signum).name
        return f"stopped by the scheduler ({name}: time limit or preemption)"


def first_line(ex: BaseException) -> str:
    """The first line of an exception's message (MLflow's `message` if it has one)."""
    text = str(getattr(ex, "message", None) or ex).strip()
    return text.splitlines()[0] if text else type(ex).__name__


def one_line(ex: BaseException) -> str:
    """The message a user sees for `ex`: one line, no traceback."""
    if isinstance(ex, UserError | TrainingFailed | StoreUnavailable):
        text = str(ex)
    elif (code := access_code(ex)) is not None:  # where no caller said what was asked
        text = str(AccessRefused(code))
    elif isinstance(ex, KeyboardInterrupt):
        text = ex.reason if isinstance(ex, Interrupted) else Interrupted().reason
    elif isinstance(ex, OSError) and ex.filename:
        text = f"cannot write or read {ex.filename}: {ex.strerror or ex}"
    else:
        text = f"{type(ex).__name__}: {first_line(ex)}" if str(ex).strip() else type(ex).__name__
    return shown(" ".join(text.split()))  # a password never reaches a user or a store


DEBUG_ENV = "LSTM_DIGITS_DEBUG"  # =1 (or `lstm-digits --debug`): tracebacks after the line


def debugging() -> bool:
    """Whether the user asked for tracebacks (for a bug report); jobs in other processes
    inherit the setting with the environment."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def traceback_text(ex: BaseException) -> str:
    """The full traceback of `ex`, as Python prints it."""
    return shown("".join(traceback.format_exception(ex)))
