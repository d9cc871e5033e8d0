"""Process-level tricks, and every private library API this package uses, in one place.

Each buys measured time (figures from `make bench` / `make bench-sweep` on the 2-core CI
machine; see bench/RESULTS.md) and each may break on an upgrade of the library it reaches
into: pyproject.toml pins the versions they were written for.

| trick                               | buys                                          |
| ----------------------------------- | --------------------------------------------- |
| `quiet`                             | no TensorFlow/MLflow start-up chatter         |
| `importing` (gc.freeze)             | 1.3 s in a 4-job sweep (0.22 s per collection)|
| `import_tensorflow` (stderr muted)  | no native start-up lines before log levels    |
| `warm_up_workers` / `stop_workers`  | joblib sweep 0.83 -> 0.77 of sequential;      |
|  (workers forked from a warm server)| 16 jobs 33.6 -> 32.1 s, first epoch 1.2 s      |
|                                     | sooner                                        |
| `without_model_checks`              | 0.3 s of each process's first logged model,   |
|                                     | then 0.09-0.13 s of every logged model        |
| `finish` (no interpreter teardown)  | 1-1.5 s after training, 0.6 s after `runs`    |
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, NoReturn

from lstm_cli.errors import debugging

# ---------------------------------------------------------------- imports


def quiet() -> None:
    """Keep TensorFlow's and MLflow's start-up chatter out of the user's terminal."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    # MLflow prints "View run ... at: <tracking URI>" at each run's end: the URI may hold a
    # password, and the run's URL is printed by `train` itself (masked).
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # "Retrying ..." while a server is away
    if not debugging():
        # MLflow logs every database error it raises again, traceback and SQL included
        # (hundreds of lines when a store is full or locked): the error is told once, in one
        # line; --debug shows them.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


@contextlib.contextmanager
def importing() -> Iterator[None]:
    """Around big imports: pause the garbage collector, then leave out of later collections
    (`gc.freeze`) every object made so far. Imported modules live as long as the process, and
    each full collection would walk all of them: about 0.2 s once TensorFlow and MLflow are in,
    1.5 s over a 4-job sweep (loky also collects after every job in a worker)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


def import_tensorflow() -> None:
    """Import TensorFlow (and Keras) with stderr muted: their native code logs there before any
    log level applies, and on a machine without a GPU, the CUDA-capable build logs an error
    when it looks for one ("failed call to cuInit"): the devices are listed here, muted too.
    Runs no op, so thread settings can still be made. Later calls are free."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        with importing():
            import tensorflow as tf

            tf.keras.utils  # noqa: B018 - Keras loads lazily, with start-up messages of its own
            tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in this process's environment for the block (what a child started meanwhile
    inherits), then each variable as it was (unset if it was)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def import_tracking() -> None:
    """Import MLflow (through `lstm_cli.tracking`'s modules) out of the collector's way."""
    with importing():
        for module in ("store", "run", "sweep", "read"):
            importlib.import_module(f"lstm_cli.tracking.{module}")


@contextlib.contextmanager
def without_model_checks() -> Iterator[None]:
    """While a model is logged, MLflow skips two checks whose outcome we would never see:

    - its pip requirements against the installed packages. Ours are the installed versions by
      construction (`tracking.model.requirements`), and the first check in a process maps every
      installed package's files (`importlib_metadata.packages_distributions`): 0.3 s of every
      single run and of every sweep worker's or SLURM job's first run;
    - loading the saved model back to predict its input example, which only logs a warning if
      that fails (MLflow's logger is at ERROR, see `quiet`): 0.09-0.13 s of every run. The
      served model is tested end to end (tests/test_mlflow_native.py).

    Private: MLflow's `warn_dependency_requirement_mismatches`, as `mlflow.utils.environment`
    (saving) and `mlflow.pyfunc` (loading) call it, and `mlflow.models.utils.
    _validate_serving_input`, which `Model.log` imports when it checks the example.
    """
    checks = (("mlflow.utils.environment", "warn_dependency_requirement_mismatches"),
              ("mlflow.pyfunc", "warn_dependency_requirement_mismatches"),
              ("mlflow.models.utils", "_validate_serving_input"))  # fmt: skip
    modules = [(sys.modules.get(module), name) for module, name in checks]
    saved = [(module, name, getattr(module, name)) for module, name in modules
             if hasattr(module, name)]  # fmt: skip
    for module, name, _ in saved:
        setattr(module, name, lambda *args, **kwargs: None)
    try:
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


# ---------------------------------------------------------------- Hydra's command line


def hydra_arguments(argv: list[str]) -> tuple[Any, list[str]]:
    """`argv` parsed as `hydra.main` will parse it (flags, overrides), without running it; and
    what Hydra's parser does not know (where `hydra.main` would print argparse's usage).

    Private: Hydra's own parser (hydra._internal.utils.get_args_parser), so that `-m`,
    `--cfg`, `--help` and the overrides are read exactly as Hydra reads them.
    """
    from hydra._internal.utils import get_args_parser

    return get_args_parser().parse_known_args(argv)


# ---------------------------------------------------------------- joblib's workers

_warming: list[threading.Thread] = []  # the warm-up started by `warm_up_workers`, if any


FORK_SERVER_PRELOAD = "lstm_cli.forkserver"  # imported by the fork server: what jobs need


def import_job_modules() -> int:
    """Import what every job needs (TensorFlow, MLflow and its SQL store and model flavour,
    scikit-learn, matplotlib: about 5 s), out of the collector's way: in the fork server that
    starts the joblib workers (a no-op in each worker then), or in a worker started otherwise."""
    quiet()
    import_tensorflow()
    with importing():
        for module in ("lstm_cli.job", "lstm_cli.train", "lstm_cli.insight", "lstm_cli.figures",
                       "lstm_cli.data", "lstm_cli.tracking.run", "lstm_cli.tracking.model",
                       "sklearn.datasets", "sklearn.model_selection", "sklearn.metrics",
                       "mlflow.store.tracking.sqlalchemy_store"):  # fmt: skip
            importlib.import_module(module)
    return os.getpid()


def _start_fork_server(workers: int) -> None:
    """Start the fork server whose forks become loky's `workers` workers (nothing on a machine
    with an NVIDIA GPU: CUDA does not survive a fork, and TensorFlow's import looks for it).

    The server imports what jobs need (`lstm_cli.forkserver`), runs no TensorFlow op (each
    worker still sets its own thread counts), and starts with this process's environment plus
    what joblib gives the workers loky starts itself: its thread limits for native pools
    (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, ...: cores // workers each). A worker's liveness
    is read through the server: if it dies, loky takes the workers for dead too.

    Private: joblib's `LokyBackend._prepare_worker_env` (those limits), loky's start method
    (`loky.backend.context.set_start_method`, vendored in joblib).
    """
    import glob
    import multiprocessing.forkserver

    from joblib._parallel_backends import LokyBackend
    from joblib.externals.loky.backend.context import set_start_method

    if glob.glob("/dev/nvidia[0-9]*"):
        return
    multiprocessing.forkserver.set_forkserver_preload([FORK_SERVER_PRELOAD])
    with environment(LokyBackend()._prepare_worker_env(workers)):  # read as the server starts
        multiprocessing.forkserver.ensure_running()  # spawns it; its imports run meanwhile
    set_start_method("forkserver", force=True)


def warm_up_workers(launcher: Any) -> None:
    """Start the joblib launcher's workers now, importing what jobs need, while this process
    prepares and launches the sweep (nothing for other launchers). The launcher reuses them:
    joblib keeps its workers for calls with the same settings, and Hydra's jobs queue behind the
    warm-up. The workers start before the parent run exists: jobs learn it from their config.

    The workers are forks of one fork server that has imported what jobs need
    (`FORK_SERVER_PRELOAD`, see `_start_fork_server`): those imports take 4.5 s of CPU once,
    not once per worker, on the cores this process needs meanwhile too.

    Buys: a 4-job sweep on 2 workers went from 0.83 to 0.77 of the sequential time (warm-up);
    the fork server: a 16-job sweep 33.6 -> 32.1 s, its first epoch 7.1 -> 5.9 s after the
    command (`bench/bench_sweep.py --part throughput`).
    Private: the joblib launcher's settings translation (`_core.process_joblib_cfg`, so the
    workers match the launcher's and are reused) and `Parallel._effective_n_jobs`.
    """
    if "joblib" not in str(launcher.get("_target_", "")):
        return
    from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
    from joblib import Parallel, delayed

    settings = {k: v for k, v in launcher.items() if k != "_target_"}
    settings["backend"] = "loky"  # as the launcher does
    process_joblib_cfg(settings)
    workers = Parallel(**settings)._effective_n_jobs()
    _start_fork_server(workers)

    def warm() -> None:
        # Nothing escapes this thread: a Ctrl-C reaches the workers too (the terminal signals
        # the process group), and the main thread reports it. A failed warm-up (a worker killed
        # while importing) breaks the shared workers: the launcher then fails in one line.
        with contextlib.suppress(BaseException):
            Parallel(**settings)(delayed(import_job_modules)() for _ in range(workers))

    thread = threading.Thread(target=warm, name="warm-up-workers", daemon=True)
    thread.start()
    _warming.append(thread)


def stop_workers() -> None:
    """Stop the joblib launcher's workers, kept for reuse, and wait for them and for an
    unfinished warm-up: before a stopped sweep closes its runs (no job may still write), and
    before the exit hooks (each worker would tear TensorFlow down; their locks and temporary
    folders are released once). Twice: a warm-up interrupted early may create the workers only
    meanwhile.

    Then the fork server, if one was started: it would otherwise live as long as this process.
    First if the warm-up has not ended: loky then waits for a fork the server makes only once
    its imports are done (seconds), and a stop should not.

    Private: loky's reusable executor (`reusable_executor._executor`), which joblib keeps, and
    the fork server's pid and `_stop` (Python's own tests use it).
    """
    server = getattr(sys.modules.get("multiprocessing.forkserver"), "_forkserver", None)

    def kill_server() -> None:
        if server is not None and server._forkserver_pid is not None:
            with contextlib.suppress(OSError):  # loky kills the workers by pid, not through it
                os.kill(server._forkserver_pid, signal.SIGKILL)

    def shut_down() -> None:
        reusable = sys.modules.get("joblib.externals.loky.reusable_executor")
        executor = getattr(reusable, "_executor", None)
        if executor is not None:
            # A killed fork server breaks the executor, and loky's own thread then shuts it
            # down, its workers killed: a second shutdown meanwhile can find its parts gone.
            with contextlib.suppress(AttributeError):
                executor.shutdown(wait=True, kill_workers=True)

    if any(thread.is_alive() for thread in _warming):
        kill_server()
    shut_down()
    for thread in _warming:
        thread.join(timeout=10)
    shut_down()
    kill_server()
    if server is not None and server._forkserver_pid is not None:
        server._stop()  # reaps it


# ---------------------------------------------------------------- the end


def finish(code: int) -> NoReturn:
    """End the process with `code`.

    Once TensorFlow or MLflow is loaded: run the exit hooks (MLflow's, joblib's, logging's),
    then end without the interpreter's teardown of the modules, which has nothing left to do
    (runs are ended and written) and takes 1-1.5 s after training, 0.6 s after `runs`.
    Private: CPython's `atexit._run_exitfuncs`, what a normal exit runs before the teardown.
    """
    # Everything is written: a Ctrl-C during the clean-up below just ends the process.
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(128 + signal.SIGINT))
    stop_workers()
    if sys.modules.keys() & {"tensorflow", "mlflow"}:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
