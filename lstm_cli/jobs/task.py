"""A Hydra job: the task each job of `lstm-digits train` runs (one run, or a sweep's point), in
this process, a joblib worker or a SLURM job.

    Task(cfg) -> run_job: the run's name, params and tags; for a requeued or resumed sweep's
        point, the run it made before -> jobs.run.train

A job learns all it needs from its config (a sweep's parent run is `tracking.parent_run_id`)
and Hydra's `HydraConfig` (its number, output directory and launcher); save whether a sweep's
live line shows its start and end (its environment: see `views.console.shows_jobs`). What jobs
did is read back from the store.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig
from rich.markup import escape

from lstm_cli.config import compose, schema
from lstm_cli.jobs import resume_rules
from lstm_cli.jobs.run import NewRun, train
from lstm_cli.runtime import internals, masking, process, signals
from lstm_cli.runtime.errors import Interrupted, UserError, debugging, one_line, traceback_text
from lstm_cli.tracking.tags import OVERRIDES_TAG, PRUNED_TAG, SWEEP_JOB_TAG, built_on
from lstm_cli.views import console


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

    A single run's error is kept in `error` (for `commands.train` to raise) rather than raised:
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

    hc = HydraConfig.get()
    _mask_hydras_record(hc)
    uri = store.resolve_uri(cfg.tracking.uri)
    parent = cfg.tracking.parent_run_id
    experiment_id = store.open_experiment(uri, cfg.tracking.experiment, parent)
    new = _new_run(cfg, hc, experiment_id, parent, job)
    reopening = None
    earlier = _earlier_run(experiment_id, parent, job)
    if earlier is not None:  # a requeued or resumed sweep's point: its run from before
        ended = _ended_before(earlier, job)
        if ended is not None:
            return ended
        reopening = _reopen(cfg, earlier, new.tags[OVERRIDES_TAG])
    overrides = new.tags[OVERRIDES_TAG]
    if job is None:
        console.show_config(new.params)
    elif not console.shows_jobs():  # else the sweep's live line shows its start and its end
        start = f"goes on with run {earlier.run_id}: " if reopening else "start "
        console.job_line(job, f"{start}{overrides or '(defaults)'}")
    # Progress: a single run's, and a scheduled job's in its own log file (.submitit/); jobs
    # sharing this terminal (basic, joblib) print a line at their start and end only (none
    # while the sweep's live line shows them).
    quiet = job is not None and not os.environ.get("SUBMITIT_EXECUTOR")
    result, run_id = train(cfg, quiet, _threads(cfg), new=new, reopening=reopening)
    if job is None:
        how = store.ui_command(uri, cfg.tracking.experiment, experiment_id, run_id)
        console.show_result(result, run_id, masking.mask(uri), masking.mask(how))
    elif not console.shows_jobs():  # else the sweep's live line counts it
        _done(job, result, run_id)
    return result["val_accuracy"]


def _mask_hydras_record(hc: Any) -> None:
    """A password in tracking.uri masked in what Hydra wrote of this job (its output_subdir)
    and of its sweep (multirun.yaml), as everywhere else the URI is kept."""
    files = []
    if hc.output_subdir is not None:
        files += Path(hc.runtime.output_dir, hc.output_subdir).glob("*.yaml")
    if hc.mode is not None and hc.mode.name == "MULTIRUN":
        files.append(Path(hc.sweep.dir, "multirun.yaml"))
    masking.mask_files(files)


def _new_run(
    cfg: DictConfig, hc: Any, experiment_id: str, parent: str | None, job: str | None
) -> NewRun:
    """The run a job makes: named after its overrides, its config as params, tagged with what
    ran it (the overrides, the commit, Hydra's output directory, its job number)."""
    from lstm_cli.tracking.owner import git_commit

    params = {k: masking.masked(v) for k, v in schema.flatten(cfg).items()}
    overrides = masking.mask(" ".join(compose.job_overrides(list(hc.overrides.task))))
    commit = git_commit()
    tags = {
        OVERRIDES_TAG: overrides,
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
        "output_dir": hc.runtime.output_dir,
    }
    if job is not None:
        tags[SWEEP_JOB_TAG] = job
    if cfg.tracking.from_run:
        from lstm_cli.tracking.read import experiment_of

        tags |= built_on(cfg.tracking.from_run, experiment_of(cfg.tracking.from_run))
    return NewRun(experiment_id, hc.job.override_dirname or "defaults", params, tags, parent)


def _reopen(cfg: DictConfig, earlier: Any, overrides: str) -> Any:
    """How a point goes on in the run it made before, checked (a `resume_rules.Reopening`)."""
    if not _same_point(earlier.tags.get(OVERRIDES_TAG, overrides), overrides):
        raise UserError(
            f"this point ran as '{earlier.tags[OVERRIDES_TAG]}' in run {earlier.run_id} and "
            f"asks for '{overrides}' now: the sweep's points are not the ones it ran "
            "(optuna's sampler without a seed?); train them as a new sweep"
        )
    schema.check(cfg)  # as a new run checks it, before its run is touched
    return resume_rules.reopen(
        earlier.run_id, cfg, finished=False, requeued=_requeued(), tags=earlier.tags
    )


def _done(job: str, result: dict[str, Any], run_id: str) -> None:
    """A sweep's point's line at its end: done, or pruned (optuna gets its value at the epoch
    where it stopped)."""
    accuracy = f"val_accuracy={result['val_accuracy']:.4f} run {run_id}"
    if PRUNED_TAG in result:
        console.job_line(job, f"[yellow]pruned[/] at epoch {result[PRUNED_TAG]}  {accuracy}")
    else:
        console.job_line(job, f"done  {accuracy}")


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
    goes on with (a `tracking.parent_run.Child`); None for a point that made none, or a single
    run."""
    if not (parent and job):
        return None
    from lstm_cli.tracking.parent_run import find_child

    return find_child(experiment_id, parent, job)


def _ended_before(earlier: Any, job: str) -> float | None:
    """What a point whose run ended before returns (its val_accuracy, NaN if none), told in a
    line: finished, pruned, or diverged (it would diverge again). None for a run to go on
    with; a UserError for one still running."""
    from lstm_cli.tracking.owner import process_alive

    run_id, accuracy = earlier.run_id, earlier.val_accuracy
    value = accuracy if accuracy is not None else float("nan")
    if earlier.status == "FINISHED":  # done then (a job of several points is requeued whole)
        pruned = earlier.tags.get(PRUNED_TAG)
        how = f"[yellow]pruned[/] at epoch {pruned} before" if pruned else "done before"
        if not console.shows_jobs():  # else the sweep's live line counts it
            console.job_line(job, f"{how}: val_accuracy={value:.4f} run {run_id}")
        return value
    refusal = resume_rules.diverged(run_id, earlier.tags)
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
    process.import_tensorflow()  # the trainer imports it: muted, out of the collector's way
    from lstm_cli.fit.trainer import default_threads

    if cfg.threads is not None:
        return cfg.threads
    hc = HydraConfig.get()
    cores = None
    if hc.mode == RunMode.MULTIRUN:
        cores = cores_per_job(hc.launcher, os.cpu_count() or 1)
    return default_threads(cfg.hidden_size, cores)
