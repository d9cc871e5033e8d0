"""`lstm-digits train` as a Hydra app: the checked command line, `hydra.main`, and the task
each job runs.

    argv -> config.preflight -> [sweep.start: the parent run] -> hydra.main(Task) -> jobs
                                [watch.watching: a live line] -> [Sweep.summarise]
    a job: Task(cfg) -> run_job: the run's name, params and tags -> training.train_run

`hydra.main` runs the jobs, so `-m`, `--cfg`, launchers and sweepers behave as in any Hydra
app. A job learns all it needs from its config (a sweep's parent run is
`tracking.parent_run_id`) and Hydra's `HydraConfig` (its number, output directory and
launcher), so it runs the same in this process, a joblib worker or a SLURM job; save whether
a sweep's live line shows its start and end (its environment: see `watch`). What jobs did is
read back from the store.
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig
from rich.markup import escape

from lstm_cli import (
    config,
    console,
    internals,
    masking,
    process,
    pruning,
    resume,
    signals,
    slurm_output,
    training,
    watch,
)
from lstm_cli.config_files import CONF_DIR, CONFIG_NAME
from lstm_cli.errors import (
    Interrupted,
    TrainingFailed,
    UserError,
    debugging,
    one_line,
    traceback_text,
)

PROGRAM = "lstm-digits train"


def launch(argv: list[str], reopen: str | None = None) -> None:
    """Run `lstm-digits train ARGV`; raise what went wrong, as `cli` reports it. `reopen`: the
    stopped sweep whose command line `argv` is, to go on with (`resume SWEEP`)."""
    process.quiet()
    request = config.preflight(argv)
    if reopen and not request.multirun:
        raise UserError(f"run {reopen}'s command line runs no sweep: {' '.join(argv)}")
    # First, before any job or worker starts: on a terminal, the jobs leave their start and
    # end to the sweep's live line.
    with process.environment(watch.job_environment(request)):
        _run(argv, request, reopen)


def _run(argv: list[str], request: config.Request, reopen: str | None = None) -> None:
    if request.launcher is not None:  # first: the workers take seconds to start
        internals.warm_up_workers(request.launcher)
    if request.cfg is None:  # Hydra prints help or the config; nothing is tracked
        _launch(argv, Task())
        return
    process.import_tracking()
    from lstm_cli.tracking import store

    uri = store.resolve_uri(request.cfg.tracking.uri)
    if not request.multirun:
        store.check_store(uri)  # before Hydra makes an output directory
        job = Task()
        _launch(argv, job)
        if job.error is not None:
            raise job.error
        return
    _check_shared_store(request, uri)
    from lstm_cli import sweep

    remote = _is_remote(request.launcher)
    if remote:
        _register_launcher()
    experiment = request.cfg.tracking.experiment
    kept = config.portable_argv(request)  # what `resume SWEEP` runs again
    with sweep.start(uri, experiment, request.overrides, kept, reopen) as running:
        with (
            watch.watching(request, uri, running.parent_id),
            slurm_output.quiet_slurm(console.accounting_note) if remote else nullcontext(),
        ):
            _launch([*argv, f"{config.PARENT_KEY}={running.parent_id}"], Task())
        failed = running.summarise()
        said = running.told() if failed else ""
    if failed:
        jobs = ", ".join(failed)
        raise TrainingFailed(f"{len(failed)} sweep job(s) failed (job {jobs}): see above; {said}")


def go_on(uri: str, experiment: str, ref: str, overrides: list[str]) -> None:
    """`lstm-digits resume REF OVERRIDES`: a run goes on (`training.resume_run`), a sweep's
    parent run goes on as a sweep (`resume_sweep`)."""
    process.quiet()
    process.import_tracking()
    from lstm_cli.tracking import read

    found = read.find_run(uri, experiment, ref)
    if found.is_sweep_parent:
        resume_sweep(uri, found, overrides)
    else:
        training.resume_run(uri, found, overrides)


def resume_sweep(uri: str, parent: Any, overrides: list[str]) -> None:
    """`lstm-digits resume SWEEP [hydra.launcher.KEY=VALUE]...`: the stopped sweep `parent`
    (a `tracking.read.RunRecord`) goes on under its own command line and launcher, as
    `sweep.start` kept it: its finished and pruned points stay, its stopped ones go on in
    their runs (`run_job` finds them), the ones that never started run; then its summary."""
    from lstm_cli.tracking import read
    from lstm_cli.tracking.owner import process_alive

    if parent.status == "RUNNING" and process_alive(parent.tags):
        raise UserError(f"sweep {parent.run_id} is still running: stop it first")
    for override in overrides:
        if not override.startswith("hydra.launcher."):
            raise UserError(
                f"{override}: a sweep goes on with the command line it started with; only its "
                "launcher's keys (hydra.launcher.KEY=VALUE) may change"
            )
    argv = read.sweep_command(uri, parent)
    argv = [a for a in argv if a.partition("=")[0] != "tracking.uri"]
    launch([*argv, *overrides, f"tracking.uri={uri}"], reopen=parent.run_id)


REMOTE_LAUNCHERS = ("SlurmLauncher",)  # launchers whose jobs may run on other machines


def _is_remote(launcher) -> bool:
    return str(launcher.get("_target_", "")).endswith(REMOTE_LAUNCHERS)


def _register_launcher() -> None:
    """Make our SLURM launcher known to Hydra, which finds plugins by scanning the
    `hydra_plugins` folders: an editable install's folder is not one it can scan."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.lstm_digits.launcher import PackedSlurmLauncher

    Plugins.instance().register(PackedSlurmLauncher)


def _check_shared_store(request: config.Request, uri: str) -> None:
    """Jobs on other machines cannot share a SQLite file on this one (or only through a shared
    file system, where SQLite's locks do not hold): refuse, unless the user says the cluster
    is this machine."""
    from lstm_cli.tracking.store import sqlite_path

    if (
        _is_remote(request.launcher)
        and sqlite_path(uri)
        and not request.cfg.tracking.sqlite_on_cluster
    ):
        raise UserError(
            f"a SLURM sweep cannot track to the SQLite store {uri} on this machine: give "
            "tracking.uri=http(s)://<tracking server> (make cluster-up starts one), or "
            "tracking.sqlite_on_cluster=true on a single-node cluster"
        )


def _launch(argv: list[str], task: Task) -> None:
    """`hydra.main` over `argv` with `task` as the task function."""
    import hydra

    # hydra.main reads its command line from sys.argv: the one channel Hydra forces on us.
    sys.argv = [PROGRAM, *argv]
    # Hydra's own errors (a launcher failing, an unwritable output directory) then raise
    # rather than print a traceback and exit 1: the CLI tells them in one line.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    main = hydra.main(config_path=str(CONF_DIR), config_name=CONFIG_NAME, version_base="1.3")
    try:
        main(task)()
    except Exception as ex:
        if type(ex).__name__ != "FailedJobError" or "sbatch: error" not in str(ex):
            raise
        # submitit's message is sbatch's stderr: its first line says what SLURM refused.
        refusal = str(ex).strip().splitlines()[0].removeprefix("sbatch: error: ")
        raise UserError(f"SLURM refused the sweep's jobs: {refusal}") from None


class JobEnd(Callback):
    """What a process lets go of after each job (a Hydra callback: conf/config.yaml's
    `hydra.callbacks`): Hydra's launchers keep each job's return until the sweep ends, with the
    job's whole config and Hydra's in it (0.1 MB a job in one process, measured with
    bench/bench_memory.py), while only its value and overrides are read. Without them a
    sweep's process stays flat (0.03 MB a job)."""

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        job_return.cfg = job_return.hydra_cfg = None


class Task:
    """The Hydra task: train once; return the final val accuracy (a sweeper's objective).

    A single run's error is kept in `error` (for `launch` to raise) rather than raised:
    Hydra would print its own report. A sweep job's error is printed and recorded in its run
    (the sweep's summary reads it back from the store, wherever the job ran), and the sweep
    goes on. Ctrl-C and SIGTERM go through.
    """

    def __init__(self) -> None:
        self.error: BaseException | None = None

    def __call__(self, cfg: DictConfig) -> float:
        hc = HydraConfig.get()
        job = str(hc.job.num) if hc.mode == RunMode.MULTIRUN else None
        stop, warning = internals.scheduler_signals()
        handler = signals.previous(warning) if warning else None  # submitit's
        try:
            with signals.scope(force=stop, requests=(warning,) if warning else ()):
                return run_job(cfg, job=job)
        except KeyboardInterrupt as ex:
            if job is None or not stop:  # Ctrl-C in this process stops the whole sweep
                raise
            # The scheduler stopped this job alone. SIGTERM (scancel, the time limit itself):
            # its run is KILLED; the job ends normally so that the sweep waits for the others.
            # Its warning (time limit near, preemption): the run is checkpointed and submitit
            # requeues the job, whose next start goes on with the same run.
            console.job_line(job, f"[red]KILLED[/] {escape(one_line(ex))}")
            if isinstance(ex, Interrupted) and ex.signum == warning:
                internals.requeue(handler, warning)  # exits the process, if it requeues
            return float("nan")
        except Exception as ex:
            if job is None:
                self.error = ex
            else:
                reason = escape(f"{hc.job.override_dirname}: {one_line(ex)}")
                console.job_line(job, f"[red]FAILED[/] {reason}")
                if debugging():
                    console.errors.print(traceback_text(ex), markup=False, end="")
            return float("nan")


def run_job(cfg: DictConfig, job: str | None) -> float:
    """Train and track one configuration; `job` is the sweep job number (None: a single run)."""
    process.import_tracking()  # MLflow, out of the collector's way
    from lstm_cli.tracking import store
    from lstm_cli.tracking.owner import git_commit

    hc = HydraConfig.get()
    uri = store.resolve_uri(cfg.tracking.uri)
    parent = cfg.tracking.parent_run_id
    experiment_id = store.open_experiment(uri, cfg.tracking.experiment, parent)
    params = {k: masking.masked(v) for k, v in config.flatten(cfg).items()}
    overrides = masking.mask(" ".join(config.job_overrides(list(hc.overrides.task))))
    commit = git_commit()
    tags = {
        "overrides": overrides,
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
        "output_dir": hc.runtime.output_dir,
    }
    name = hc.job.override_dirname or "defaults"
    reopening = None
    earlier = _earlier_run(experiment_id, parent, job)
    if earlier is not None:  # a requeued or resumed sweep's point: its run from before
        ended = _ended_before(earlier, job)
        if ended is not None:
            return ended
        if not _same_point(earlier.tags.get("overrides", overrides), overrides):
            raise UserError(
                f"this point ran as '{earlier.tags['overrides']}' in run {earlier.run_id} and "
                f"asks for '{overrides}' now: the sweep's points are not the ones it ran "
                "(optuna's sampler without a seed?); train them as a new sweep"
            )
        config.check(cfg)  # as a new run checks it, before its run is touched
        reopening = resume.reopen(
            earlier.run_id, cfg, finished=False, requeued=_requeued(), tags=earlier.tags
        )
    if job is None:
        console.show_config(params)
    else:
        tags["sweep_job"] = job
        if not watch.shows_jobs():  # else the sweep's live line shows its start and its end
            start = f"goes on with run {earlier.run_id}: " if reopening else "start "
            console.job_line(job, f"{start}{overrides or '(defaults)'}")
    # Progress: a single run's, and a scheduled job's in its own log file (.submitit/); jobs
    # sharing this terminal (basic, joblib) print a line at their start and end only (none
    # while the sweep's live line shows them).
    quiet = job is not None and not os.environ.get("SUBMITIT_EXECUTOR")
    new = (experiment_id, name, params, tags, parent)
    result, run_id = training.train_run(cfg, quiet, _threads(cfg), new=new, reopening=reopening)
    if job is not None and watch.shows_jobs():  # the sweep's live line counts it
        return result["val_accuracy"]
    if job is None:
        how = store.ui_command(uri, cfg.tracking.experiment, experiment_id, run_id)
        console.show_result(result, run_id, masking.mask(uri), masking.mask(how))
    elif pruning.TAG in result:  # optuna gets its value at the epoch where it stopped
        console.job_line(job, f"[yellow]pruned[/] at epoch {result[pruning.TAG]}  val_accuracy="
                         f"{result['val_accuracy']:.4f} run {run_id}")  # fmt: skip
    else:
        console.job_line(job, f"done  val_accuracy={result['val_accuracy']:.4f} run {run_id}")
    return result["val_accuracy"]


def _same_point(before: str, now: str) -> bool:
    """Whether two of a point's overrides (its runs' `overrides` tags) ask for the same
    training: the store (tracking.uri) may be named differently by a resume."""

    def point(text: str) -> set[str]:
        return {o for o in text.split() if o.partition("=")[0] != "tracking.uri"}

    return point(before) == point(now)


def _requeued() -> bool:
    """Whether this process is a SLURM job started again by a requeue."""
    return os.environ.get("SLURM_RESTART_COUNT", "0") != "0"


def _earlier_run(experiment_id: str, parent: str | None, job: str | None) -> Any:
    """The run this sweep point made before, in a job SLURM requeued or a sweep `resume`
    goes on with (a `tracking.sweep.Child`); None for a point that made none, or a single run."""
    if not (parent and job):
        return None
    from lstm_cli.tracking.sweep import find_child

    return find_child(experiment_id, parent, job)


def _ended_before(earlier: Any, job: str) -> float | None:
    """What a point whose run ended before returns (its val_accuracy, NaN if none), told in a
    line: finished, pruned, or diverged (it would diverge again). None for a run to go on
    with; a UserError for one still running."""
    from lstm_cli.tracking.owner import process_alive

    run_id, accuracy = earlier.run_id, earlier.val_accuracy
    value = accuracy if accuracy is not None else float("nan")
    if earlier.status == "FINISHED":  # done then (a job of several points is requeued whole)
        pruned = earlier.tags.get(pruning.TAG)
        how = f"[yellow]pruned[/] at epoch {pruned} before" if pruned else "done before"
        if not watch.shows_jobs():  # else the sweep's live line counts it
            console.job_line(job, f"{how}: val_accuracy={value:.4f} run {run_id}")
        return value
    refusal = resume.diverged(run_id, earlier.tags)
    if earlier.status == "FAILED" and refusal:
        console.job_line(job, f"[red]FAILED[/] before: {escape(refusal)}")
        return float("nan")
    if earlier.status == "RUNNING" and process_alive(earlier.tags):
        raise UserError(f"run {run_id} of this point is still running: stop it first")
    return None


def cores_per_job(launcher: Any, available: int) -> int | None:
    """The cores one job of a sweep may use under `launcher` (None: all of them).

    joblib runs `n_jobs` workers side by side (-1 or null: one per core); submitit gives each
    job `cpus_per_task`; other launchers run one job at a time.
    """
    if "joblib" in str(launcher.get("_target_", "")):
        n_jobs = launcher.get("n_jobs", -1)
        workers = available if n_jobs is None or n_jobs < 1 else min(n_jobs, available)
        return max(1, available // workers)
    if launcher.get("cpus_per_task"):
        return int(launcher.cpus_per_task)
    return None


def _threads(cfg: DictConfig) -> int | None:
    """TensorFlow threads: the config's, else by model size within the job's cores."""
    process.import_tensorflow()  # lstm_cli.loop imports it: muted, out of the collector's way
    from lstm_cli.loop import default_threads

    if cfg.threads is not None:
        return cfg.threads
    hc = HydraConfig.get()
    cores = None
    if hc.mode == RunMode.MULTIRUN:
        cores = cores_per_job(hc.launcher, os.cpu_count() or 1)
    return default_threads(cfg.hidden_size, cores)
