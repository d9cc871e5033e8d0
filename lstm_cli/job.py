"""One training job as Hydra runs it: config -> data -> model -> training -> an MLflow run.

`TrainJob` is the task function handed to `hydra.main` (by `experiment`). A job learns all it
needs from its config (a sweep's parent run is `tracking.parent_run_id`) and Hydra's
`HydraConfig` (its number, output directory and launcher), so it runs the same in this
process, a joblib worker or a SLURM job.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.markup import escape

from lstm_cli import config, console, fitting, masking, presets, process, pruning, resume, signals
from lstm_cli.errors import Interrupted, debugging, one_line, traceback_text
from lstm_cli.watch import shows_jobs


class TrainJob:
    """The Hydra task: train once; return the final val accuracy (a sweeper's objective).

    A single run's error is kept in `error` (for `experiment` to raise) rather than raised:
    Hydra would print its own report. A sweep job's error is printed and recorded in its run
    (the sweep's summary reads it back from the store, wherever the job ran), and the sweep
    goes on. Ctrl-C and SIGTERM go through.
    """

    def __init__(self) -> None:
        self.error: BaseException | None = None

    def __call__(self, cfg: DictConfig) -> float:
        hc = HydraConfig.get()
        job = str(hc.job.num) if hc.mode == RunMode.MULTIRUN else None
        stop, warning = scheduler_signals()
        requeue = signals.previous(warning) if warning else None  # submitit's
        try:
            with signals.scope(force=stop, requests=(warning,) if warning else ()):
                return train(cfg, job=job)
        except KeyboardInterrupt as ex:
            if job is None or not stop:  # Ctrl-C in this process stops the whole sweep
                raise
            # The scheduler stopped this job alone. SIGTERM (scancel, the time limit itself):
            # its run is KILLED; the job ends normally so that the sweep waits for the others.
            # Its warning (time limit near, preemption): the run is checkpointed and submitit
            # requeues the job, whose next start goes on with the same run.
            console.job_line(job, f"[red]KILLED[/] {escape(one_line(ex))}")
            if isinstance(ex, Interrupted) and ex.signum == warning and callable(requeue):
                with contextlib.suppress(Exception):  # not requeued: the run stays KILLED
                    requeue(warning, None)  # requeues, then exits the process
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


def scheduler_signals() -> tuple[tuple[int, ...], int | None]:
    """In a job submitit runs (SLURM, or its local executor): the signals that stop it
    (SIGTERM), and its warning before a time limit or a preemption (SIGUSR2 unless
    configured), which checkpoints and requeues. Outside one: none."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return (), None
    from submitit import JobEnvironment

    return (signal.SIGTERM,), signal.Signals[f"SIG{JobEnvironment.USR_SIG}"]


def train(cfg: DictConfig, job: str | None) -> float:
    """Train and track one configuration; `job` is the sweep job number (None: a single run)."""
    process.import_tracking()  # MLflow, out of the collector's way
    from lstm_cli.tracking import store

    hc = HydraConfig.get()
    uri = store.resolve_uri(cfg.tracking.uri)
    experiment_id = store.open_experiment(uri, cfg.tracking.experiment)
    params = {k: masking.masked(v) for k, v in config.flatten(cfg).items()}
    overrides = masking.mask(" ".join(config.job_overrides(list(hc.overrides.task))))
    commit = _git_commit()
    tags = {
        "overrides": overrides,
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
        "output_dir": hc.runtime.output_dir,
    }
    name = hc.job.override_dirname or "defaults"
    if job is None:
        console.show_config(params)
    else:
        tags["sweep_job"] = job
        if not shows_jobs():  # else the sweep's live line shows its start and its end
            console.job_line(job, f"start {overrides or '(defaults)'}")
    parent = cfg.tracking.parent_run_id
    # Progress: a single run's, and a scheduled job's in its own log file (.submitit/); jobs
    # sharing this terminal (basic, joblib) print a line at their start and end only (none
    # while the sweep's live line shows them).
    quiet = job is not None and not os.environ.get("SUBMITIT_EXECUTOR")
    earlier = _requeued_run(parent, job)
    reopening = None
    if earlier is not None:  # a requeued job (or packed point): its run from the attempt before
        run_id, status, accuracy = earlier
        if status == "FINISHED":  # done then (a job of several points is requeued whole)
            accuracy = accuracy if accuracy is not None else float("nan")
            console.job_line(job, f"done before the requeue: val_accuracy={accuracy:.4f} run "
                             f"{run_id}")  # fmt: skip
            return accuracy
        with contextlib.suppress(resume.NoCheckpoint):  # none: it starts anew, in a new run
            reopening = resume.reopen(run_id, cfg, finished=False, requeued=True)
    new = (experiment_id, name, params, tags, parent)
    result, run_id = train_run(cfg, quiet, _threads(cfg), new=new, reopening=reopening)
    if job is not None and shows_jobs():  # the sweep's live line counts it
        return result["val_accuracy"]
    if job is None:
        how = _ui_command(uri, cfg.tracking.experiment, experiment_id, run_id)
        console.show_result(result, run_id, masking.mask(uri), masking.mask(how))
    elif pruning.TAG in result:  # optuna gets its value at the epoch where it stopped
        console.job_line(job, f"[yellow]pruned[/] at epoch {result[pruning.TAG]}  val_accuracy="
                         f"{result['val_accuracy']:.4f} run {run_id}")  # fmt: skip
    else:
        console.job_line(job, f"done  val_accuracy={result['val_accuracy']:.4f} run {run_id}")
    return result["val_accuracy"]


def train_run(
    cfg: DictConfig,
    quiet: bool,
    threads: int | None,
    new: tuple[str, str, dict, dict, str | None] | None = None,
    reopening: resume.Reopening | None = None,
    tags: dict[str, str] | None = None,
) -> tuple[dict[str, float], str]:
    """Open a run and train it: the one path of every training. `reopening` (a stopped run,
    checked by `resume.reopen`) goes on in its run; else a new run from `new` (experiment id,
    name, params, tags, parent run); `tags` are added to a reopened run's. Returns the final
    metrics and the run's id."""
    from lstm_cli.tracking import run as tracked

    outage_s = 60 * cfg.tracking.outage_minutes
    if reopening is not None:
        if reopening.note:
            console.note(reopening.note)
        reopened = {"resume": reopening.run_id, "slot": reopening.checkpoint.slot,
                    "requeued": reopening.requeued}  # fmt: skip
        with tracked.start_run("", "", {}, tags or {}, outage_s=outage_s, **reopened) as run:
            return fitting.fit_and_log(cfg, run, quiet, threads, reopening), run.run_id
    experiment_id, name, params, tags, parent = new
    with tracked.start_run(experiment_id, name, params, tags, parent, outage_s=outage_s) as run:
        config.check(cfg)
        run.log_text(masking.mask(OmegaConf.to_yaml(cfg, resolve=True)), "config.yaml")
        return fitting.fit_and_log(cfg, run, quiet, threads), run.run_id


def _requeued_run(parent: str | None, job: str | None) -> tuple[str, str, float | None] | None:
    """In a job SLURM requeued, its run from the attempt before, as (run id, status,
    val_accuracy); None in any other job, or if that attempt made no run."""
    if not (parent and job and os.environ.get("SLURM_RESTART_COUNT", "0") != "0"):
        return None
    from lstm_cli.tracking.sweep import find_child

    return find_child(parent, job)


def resume_run(cfg: DictConfig, reopening: resume.Reopening, overrides: list[str]) -> None:
    """`lstm-digits resume`: go on with a stopped run (checked by `resume.plan`)."""
    from lstm_cli.tracking.store import resolve_uri

    uri = resolve_uri(cfg.tracking.uri)
    saved = reopening.checkpoint
    console.console.print(f"[bold]resume[/] run {reopening.run_id} after epoch {saved.epoch}")
    tags = {"resume_overrides": " ".join(overrides)}
    result, run_id = train_run(cfg, False, _resume_threads(cfg), reopening=reopening, tags=tags)
    console.show_result(result, run_id, masking.mask(uri), "lstm-digits ui")


def _resume_threads(cfg: DictConfig) -> int | None:
    process.import_tensorflow()
    from lstm_cli.train import default_threads

    return cfg.threads if cfg.threads is not None else default_threads(cfg.hidden_size)


def _git_commit() -> str:
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
    process.import_tensorflow()  # lstm_cli.train imports it: muted, out of the collector's way
    from lstm_cli.train import default_threads

    if cfg.threads is not None:
        return cfg.threads
    hc = HydraConfig.get()
    cores = None
    if hc.mode == RunMode.MULTIRUN:
        cores = cores_per_job(hc.launcher, os.cpu_count() or 1)
    return default_threads(cfg.hidden_size, cores)


def _ui_command(uri: str, experiment: str, experiment_id: str, run_id: str) -> str:
    """How to look at the run: the server's page, else the `ui` command for this store."""
    from lstm_cli.tracking.store import default_uri, is_server

    if is_server(uri):
        return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    command = "lstm-digits ui" if uri == default_uri() else f"lstm-digits ui --tracking-uri {uri}"
    if experiment != presets.default("tracking.experiment"):
        command += f" --experiment {experiment}"
    return command
