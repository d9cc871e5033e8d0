"""A SLURM sweep's terminal: SLURM's chatter kept off it (see `quiet_slurm`)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from lstm_cli.runtime.process import environment


class _OnceAboutSacct(logging.Filter):
    """submitit warns at every status poll when sacct fails (twice: to stdout and stderr):
    drop the warnings, and tell the user once through `note`."""

    def __init__(self, note: Callable[[], None]) -> None:
        super().__init__()
        self.note = note
        self.told = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "Bypassing sacct error" not in record.getMessage():
            return True
        if not self.told:
            self.told = True
            self.note()
        return False


class _WithoutSbatchErrors(io.TextIOBase):
    """stderr without sbatch's own error lines, which submitit prints before it raises them
    (the CLI then tells the error in one line)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        if not text.lstrip().startswith("sbatch: error"):
            self.stream.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


# sacct for this process: the real one, quiet; if it answers nothing (no accounting), the
# controller's view of the jobs asked for (-j ID), finished ones included for MinJobAge, in
# sacct's --parsable2 format: submitit then sees a job that died without a result as ended,
# rather than waiting for it forever.
SACCT_SHIM = """#!/bin/sh
if out=$({sacct} "$@" 2>/dev/null); then printf '%s\\n' "$out"; exit 0; fi
echo 'JobID|State|NodeList'
while [ $# -gt 0 ]; do
  if [ "$1" = -j ]; then squeue -h --states=all -j "$2" -o '%i|%T|%N' 2>/dev/null; shift; fi
  shift
done
"""


@contextlib.contextmanager
def quiet_slurm(note: Callable[[], None]) -> Iterator[None]:
    """While a SLURM sweep runs, keep SLURM's chatter off the terminal.

    Without accounting (the usual small cluster) sacct fails at every poll of submitit, and a
    sweep printed two lines each time: sacct's own ("Slurm accounting storage is disabled",
    dropped by a `sacct` placed first on PATH for this process) and submitit's warning about
    it (dropped; `note` says it once). sbatch's refusals reach the user as the sweep's error.
    """
    import shutil
    import tempfile

    logger = logging.getLogger("submitit")
    once = _OnceAboutSacct(note)
    real = shutil.which("sacct")
    with tempfile.TemporaryDirectory(prefix="lstm-digits-sacct-") as shim:
        path = {}
        if real is not None:
            script = os.path.join(shim, "sacct")
            with open(script, "w") as out:
                out.write(SACCT_SHIM.format(sacct=real))
            os.chmod(script, 0o755)
            path = {"PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '')}"}
        logger.addFilter(once)
        try:
            with environment(path), contextlib.redirect_stderr(_WithoutSbatchErrors(sys.stderr)):
                yield
        finally:
            logger.removeFilter(once)
