"""Exceptions that reach users, and how any exception is told in one line."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for; its message is shown as is, without a traceback."""


class TrainingFailed(Exception):
    """Training stopped on its own terms (for example a NaN loss); the run is marked FAILED."""


def one_line(ex: BaseException) -> str:
    """The message a user sees for `ex`: one line, no traceback."""
    if isinstance(ex, UserError | TrainingFailed):
        text = str(ex)
    elif isinstance(ex, OSError) and ex.filename:
        text = f"cannot write or read {ex.filename}: {ex.strerror or ex}"
    else:
        first = str(ex).strip().splitlines()
        text = f"{type(ex).__name__}: {first[0]}" if first else type(ex).__name__
    return " ".join(text.split())
