"""Imported by the fork server whose forks are a joblib sweep's workers (see
`process.warm_up_workers`): importing it imports what every job needs, once for all workers.

loky gives the workers it starts itself one thread per native pool (OpenBLAS, OpenMP) when
there are as many workers as cores, its default, through their environment; a fork of this
server does not take an environment, so the same limit is set here. TensorFlow's own pools
are set by each job (`train.configure_threads`).

A Ctrl-C reaches the server too (the terminal signals the whole process group): it is
ignored while the server imports, so that no traceback lands in the user's terminal (the
sweep's own process reports it and stops the server); then Python's fork server ignores it
itself, and gives each worker the handler it found here: Python's default, restored.
"""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)

from threadpoolctl import threadpool_limits  # noqa: E402 - imported with Ctrl-C ignored

from lstm_cli import process  # noqa: E402

process.import_job_modules()
threadpool_limits(limits=1)
signal.signal(signal.SIGINT, signal.default_int_handler)
