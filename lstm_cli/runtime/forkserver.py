"""Imported by the fork server whose forks are a joblib sweep's workers (see
`internals._start_fork_server`): importing it imports what every job needs, once for all workers.

A Ctrl-C reaches the server too (the terminal signals the whole process group): it is
ignored while the server imports, so that no traceback lands in the user's terminal (the
sweep's own process reports it and stops the server); then Python's fork server ignores it
itself, and gives each worker the handler it found here: Python's default, restored.
"""

import signal
import sys

signal.signal(signal.SIGINT, signal.SIG_IGN)
try:
    # Python starts the server with `-c`, so the user's directory comes first on its path; the
    # command's own path does not hold it (Python 3.11 drops the path it is given).
    sys.path[:] = [entry for entry in sys.path if entry not in ("", ".")]
    from lstm_cli.runtime import process

    process.import_job_modules()
finally:
    signal.signal(signal.SIGINT, signal.default_int_handler)
