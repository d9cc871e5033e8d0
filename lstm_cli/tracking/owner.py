"""What runs a run: the process (the host and pid tags every run gets, so that `resume` and
`runs` can tell a run whose process died, RUNNING (lost), from one still training) and the
code (the commit of this checkout)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from lstm_cli.tracking.tags import HOST_TAG, PID_TAG


def process_tags() -> dict[str, str]:
    """Tags naming the process that runs a run, so that `resume` and `runs` can tell whether
    it is alive."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def process_alive(tags: dict[str, str]) -> bool:
    """Whether the process a run's `tags` name still runs (on this host; on another: unknown,
    so taken as alive)."""
    host, pid = tags.get(HOST_TAG), tags.get(PID_TAG)
    if host != socket.gethostname() or not (pid or "").isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def git_commit() -> str:
    """The commit of the checkout this package runs from ('' when it is not a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
