"""Every use of a library's internals, in one place: private names, raw SQL on MLflow's
schema, a library's signal handler and a launcher's pickling contract.

Each may break when its library moves (pyproject.toml caps those libraries below their next
minor version, constraints.txt pins them) and is kept for what it buys, measured on the 2-core
CI machine (`python bench/bench_internals.py`), or for correctness. tests/test_layout.py
fails on a private name or raw SQL anywhere else, hydra_plugins/ included.

| use (versions checked on)                           | for                    | buys      |
| --------------------------------------------------- | ---------------------- | --------- |
| `without_model_checks`: MLflow's private checks     | skip two model-logging | 0.61 s a  |
|  (mlflow 3.17.2)                                    | checks we never see    | run       |
| `hydra_arguments`: Hydra's private parser           | -m, --cfg, overrides   | correct-  |
|  (hydra-core 1.3.8)                                 | read as Hydra reads    | ness      |
| `warm_up_workers`, `_start_fork_server`: joblib's,  | joblib workers forked  | 2.5 s a   |
|  loky's and hydra-joblib-launcher's internals,      | from one warm server   | sweep (*) |
|  multiprocessing.forkserver (joblib 1.6.0, 1.2.0)   |                        |           |
| `stop_workers`: loky's executor, the fork server's  | no worker outlives a   | correct-  |
|  pid (joblib 1.6.0, CPython 3.11)                   | stopped sweep          | ness      |
| `finish`: `atexit._run_exitfuncs` (CPython 3.11)    | no interpreter teardown| 0.41 s    |
| `copy_store_template`: SQL on MLflow's schema       | a new SQLite store     | 1.0 s a   |
|  (mlflow 3.17.2)                                    | copied, not migrated   | new store |
| `scheduler_signals`, `requeue`: submitit's job      | checkpoint and requeue | correct-  |
|  environment and signal handler (submitit 1.5.4)    | before a time limit    | ness      |
| `packed_slurm_launcher`: hydra-submitit-launcher's  | several sweep points   | 64 points |
|  pickling contract (1.2.0)                          | per SLURM job          | 285->110 s|
| `delete_artifact`: MLflow's artifact repositories   | a resumed run keeps no | correct-  |
|  (mlflow 3.17.2)                                    | error.txt of its stop  | ness      |
| `context_tags`: MLflow's run-context providers      | a run's user, source   | correct-  |
|  (mlflow 3.17.2)                                    | and commit, as MLflow's| ness      |
| `start_system_metrics`, `stop_system_metrics`:      | a short run keeps its  | correct-  |
|  MLflow's undocumented monitor (mlflow 3.17.2)      | system metrics         | ness      |
| `CLICK_ERRORS`: Typer's vendored click (0.29)       | usage errors, one line | correct-  |
| `sbatch_refusal`: submitit's FailedJobError (1.5.4) | SLURM's refusal, one   | correct-  |
|                                                     | line                   | ness      |
| `schema_version`, `schema_head`: SQL on MLflow's    | no migrations run over | correct-  |
|  schema, its alembic head (mlflow 3.17.2)           | another process's      | ness      |

Measured 2026-12-02, medians of 5 interleaved runs: a run is `train experiment=debug
tracking.log_model=true` (8.1 s); (*) 4 such jobs on joblib (10.3 s; the fork server 1.4 s).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from lstm_cli.runtime import process

# ---------------------------------------------------------------- MLflow


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
    checks = (
        ("mlflow.utils.environment", "warn_dependency_requirement_mismatches"),
        ("mlflow.pyfunc", "warn_dependency_requirement_mismatches"),
        ("mlflow.models.utils", "_validate_serving_input"),
    )
    modules = [(sys.modules.get(module), name) for module, name in checks]
    saved = [
        (module, name, getattr(module, name)) for module, name in modules if hasattr(module, name)
    ]
    for module, name, _ in saved:
        setattr(module, name, lambda *args, **kwargs: None)
    try:
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


def copy_store_template(template: Path, path: Path) -> bool:
    """Copy MLflow's empty schema `template` to `path`, as MLflow would have built it there;
    False if there is no template.

    The one row that depends on where a store is built, MLflow's `Default` experiment (which
    we never use), gets the artifact location MLflow gives it: ./mlruns/0 from the working
    directory (a test compares a copy with a store MLflow builds). Raw SQL on MLflow's schema.
    """
    import shutil
    import sqlite3
    import time

    try:
        shutil.copyfile(template, path)
    except OSError:
        return False
    now = int(time.time() * 1000)
    with contextlib.closing(sqlite3.connect(path)) as copy, copy:
        copy.execute(
            "UPDATE experiments SET artifact_location = ?, creation_time = ?, "
            "last_update_time = ? WHERE experiment_id = 0",
            (str(Path.cwd() / "mlruns" / "0"), now, now),
        )
    return True


def context_tags(tags: dict[str, str]) -> dict[str, str]:
    """`tags` with those MLflow's own `start_run` adds from the run's context (the user, the
    source, git's commit): our runs are made by the client, which adds none.

    Private-ish: `mlflow.tracking.context.registry.resolve_tags`, the providers' registry."""
    from mlflow.tracking.context.registry import resolve_tags

    return resolve_tags(tags)


# MLflow samples every 10 s by default, longer than most of our runs: they would log nothing.
SYSTEM_METRICS_EVERY_S = 1.0  # $MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides it


def start_system_metrics(run_id: str) -> Any:
    """MLflow's system metrics for run `run_id` (`tracking.system_metrics=true`): CPU, memory,
    disk and network use as `system/...` metrics, sampled while the run lasts; the monitor, for
    `stop_system_metrics`. Undocumented: `mlflow.system_metrics.system_metrics_monitor`'s
    `SystemMetricsMonitor`, which `mlflow.start_run` starts, and we start for our handle."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=SYSTEM_METRICS_EVERY_S)
    monitor.start()
    return monitor


def stop_system_metrics(monitor: Any) -> None:
    """Stop sampling and write what was sampled. MLflow writes the mean of each interval's
    samples at the interval's end and drops the samples of an interval cut short: a run
    shorter than one interval would keep none. Those are written here, as one more step
    (its `finish`, `aggregate_metrics`, `publish_metrics` and `mlflow_logger`)."""
    monitor.finish()  # joins its thread and writes what it wrote so far
    tail = monitor.aggregate_metrics()  # the samples since its last write, averaged
    if tail:
        monitor.publish_metrics(tail)
        monitor.mlflow_logger.flush()


def schema_version(db: Path) -> str | None:
    """The MLflow schema revision of the SQLite store `db` (alembic's row), None before one."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as c:
            row = c.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:  # no such table yet, or not a database yet
        return None
    return row[0] if row else None


def schema_head() -> str:
    """The schema revision this MLflow builds (its migrations' head)."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def delete_artifact(artifact_uri: str, path: str) -> bool:
    """Delete the artifact `path` of the run whose artifacts are at `artifact_uri`; False where
    the store cannot (its repository does not delete) or has no such file.

    MLflow's client has no call for it: its artifact repositories do (local files, a server's
    served artifacts, the clouds'), found by `get_artifact_repository`, which the client uses
    itself. A resumed run that finishes is no failed run: the error file of its stop goes.
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    try:
        get_artifact_repository(artifact_uri).delete_artifacts(path)
    except Exception:  # NotImplementedError, a missing file, a server's refusal
        return False
    return True


# ---------------------------------------------------------------- Typer, submitit


def _click_errors() -> tuple[type, type]:
    """Typer (0.29) vendors its own click (`typer._click`): the base of its usage errors, which
    `typer.BadParameter` derives from, and the error of a group called without a command."""
    import typer._click.exceptions as errors

    return errors.ClickException, errors.NoArgsIsHelpError


CLICK_ERRORS, NO_ARGS_IS_HELP = _click_errors()  # for `commands.app.Root` (one line, exit 2)


def sbatch_refusal(ex: BaseException) -> str | None:
    """What SLURM refused, when `ex` is submitit's `FailedJobError` from `sbatch` (its message
    is sbatch's stderr, whose first line says it); None for any other error."""
    from submitit.core.utils import FailedJobError

    if not isinstance(ex, FailedJobError) or "sbatch: error" not in str(ex):
        return None
    return str(ex).strip().splitlines()[0].removeprefix("sbatch: error: ")


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


FORK_SERVER_PRELOAD = "lstm_cli.runtime.forkserver"  # imported by the fork server: what jobs need
# MLflow's SQL store, which a job's first write loads: imported ahead with what jobs need
# (`process.JOB_MODULES`). A module of MLflow's, not its API: only its name is used.
MLFLOW_SQL_STORE = "mlflow.store.tracking.sqlalchemy_store"


def _start_fork_server(workers: int) -> None:
    """Start the fork server whose forks become loky's `workers` workers (nothing on a machine
    with an NVIDIA GPU: CUDA does not survive a fork, and TensorFlow's import looks for it).

    The server imports what jobs need (`lstm_cli.runtime.forkserver`), runs no TensorFlow op (each
    worker still sets its own thread counts), and starts with this process's environment plus
    what joblib gives the workers loky starts itself: its thread limits for native pools
    (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, ...: cores // workers each). A worker's liveness
    is read through the server: if it dies, loky takes the workers for dead too.

    Private: joblib's `LokyBackend._prepare_worker_env` (those limits), loky's start method
    (`loky.backend.context.set_start_method`, vendored in joblib). joblib's public
    `parallel_config(inner_max_num_threads=...)` sets the limits in the environment loky gives
    a worker it starts, which a fork of the server does not get: the server needs them itself.
    """
    import glob
    import multiprocessing.forkserver

    from joblib._parallel_backends import LokyBackend
    from joblib.externals.loky.backend.context import set_start_method

    if glob.glob("/dev/nvidia[0-9]*"):
        return
    multiprocessing.forkserver.set_forkserver_preload([FORK_SERVER_PRELOAD])
    with process.environment(
        LokyBackend()._prepare_worker_env(workers)
    ):  # read as the server starts
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

    Buys: see the table above (the warm-up 2.5 s of a 4-job sweep, the fork server 1.4 s).
    Private: the joblib launcher's settings translation (`_core.process_joblib_cfg`, so the
    workers match the launcher's and are reused).
    """
    if "joblib" not in str(launcher.get("_target_", "")):
        return
    from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
    from joblib import Parallel, delayed, effective_n_jobs

    settings = {k: v for k, v in launcher.items() if k != "_target_"}
    settings["backend"] = "loky"  # as the launcher does
    process_joblib_cfg(settings)
    workers = effective_n_jobs(settings.get("n_jobs", -1))
    _start_fork_server(workers)

    def warm() -> None:
        # Nothing escapes this thread: a Ctrl-C reaches the workers too (the terminal signals
        # the process group), and the main thread reports it. A failed warm-up (a worker killed
        # while importing) breaks the shared workers: the launcher then fails in one line.
        with contextlib.suppress(BaseException):
            Parallel(**settings)(delayed(process.import_job_modules)() for _ in range(workers))

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


# ---------------------------------------------------------------- submitit and SLURM


def scheduler_signals() -> tuple[tuple[int, ...], int | None]:
    """In a job submitit runs (SLURM, or its local executor): the signals that stop it
    (SIGTERM), and its warning before a time limit or a preemption (SIGUSR2 unless
    configured), which checkpoints and requeues. Outside one: none."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return (), None
    from submitit import JobEnvironment

    return (signal.SIGTERM,), signal.Signals[f"SIG{JobEnvironment.USR_SIG}"]


def requeue(handler: Any, signum: int) -> None:
    """Have submitit requeue this job: `handler` is the one submitit installed for its warning
    `signum` (`signals.previous`), which requeues the job, then exits the process. Does
    nothing if it is not callable; the run then stays KILLED."""
    if callable(handler):
        with contextlib.suppress(Exception):
            handler(signum, None)


def packed_slurm_launcher(tell: Any) -> type:
    """hydra-submitit-launcher's `SlurmLauncher` with `points_per_task` sweep points per SLURM
    job, as hydra_plugins/lstm_digits/launcher.py names it for Hydra (why: see there); `tell`
    (job number, text) says in the job's log that a point was not started.

    Its pickling contract: `launch` submits one job per pack through the parent's `launch`,
    which pickles the launcher itself (`self`, packs included) as each job's callable; in the
    job, `__call__` gets the pack's index as `job_num` and runs each point of the pack through
    the parent's `__call__`, as its own Hydra job. Built on demand: Hydra and submitit load
    only for a SLURM sweep.
    """
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    methods = {"__init__": _packed_init, "launch": _packed_launch, "__call__": _packed_call}
    methods["tell"] = staticmethod(tell)
    cls = type("PackedSlurmLauncher", (SlurmLauncher,), methods)
    cls.__module__ = "hydra_plugins.lstm_digits.launcher"  # pickled by reference, as before
    cls.__doc__ = "hydra-submitit-launcher's SLURM launcher, `points_per_task` points per job."
    return cls


def _packed_init(self, points_per_task: int = 1, **params: Any) -> None:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    SlurmLauncher.__init__(self, **params)
    self.points_per_task = points_per_task
    self.packs = None  # list[list[(overrides, job number)]], set by `launch` when k > 1


def _packed_launch(self, job_overrides: Any, initial_job_idx: int) -> Any:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    k = self.points_per_task
    if k <= 1 or len(job_overrides) <= 1:
        return SlurmLauncher.launch(self, job_overrides, initial_job_idx)
    points = [(list(o), initial_job_idx + i) for i, o in enumerate(job_overrides)]
    self.packs = [points[i : i + k] for i in range(0, len(points), k)]
    # One SLURM job per pack: its own overrides are a label only (`__call__` reads the pack),
    # its job number the pack's index.
    labels = [[f"points={len(p)}", f"first={p[0][1]}"] for p in self.packs]
    try:
        results = SlurmLauncher.launch(self, labels, 0)
    finally:
        self.packs = None
    return [r for pack in results for r in pack]


def _packed_call(self, sweep_overrides, job_dir_key, job_num, job_id, singleton_state) -> Any:
    from hydra.core.utils import JobReturn, JobStatus
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    from lstm_cli.runtime import signals

    run_point = SlurmLauncher.__call__
    if self.packs is None:
        return run_point(self, sweep_overrides, job_dir_key, job_num, job_id, singleton_state)
    stop, warning = scheduler_signals()
    done = []
    # One scope for the whole pack: a SIGTERM between two points stops it too.
    with signals.scope(force=stop, requests=(warning,) if warning else ()):
        for overrides, num in self.packs[job_num]:
            if signals.stopped() is None:
                done.append(run_point(self, overrides, job_dir_key, num, job_id, singleton_state))
                continue
            self.tell(str(num), "not started: its SLURM job was stopped")
            # Completed with no result, as a failed job's (NaN), so that the sweeper goes on;
            # the sweep's summary lists the runs that exist.
            result = JobReturn(overrides=overrides, status=JobStatus.COMPLETED, task_name="train")
            result.return_value = float("nan")
            done.append(result)
    return done
