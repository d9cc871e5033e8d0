"""`lstm-digits train`: a checked command line, handed to Hydra's real entry point.

    argv -> config.preflight -> [sweep.start: the parent run] -> hydra.main(TrainJob) -> jobs
                                [watch.watching: a live line] -> [Sweep.summarise]

`hydra.main` runs the jobs, so `-m`, `--cfg`, launchers and sweepers behave as in any Hydra
app. Information flows one way: a job learns everything from its config (a sweep's parent run
is `tracking.parent_run_id`), save whether a sweep's live line shows its start and end (its
environment: see `watch`); what jobs did is read back from the store.
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext

from lstm_cli import config, console, process, slurm_output, watch
from lstm_cli.errors import TrainingFailed, UserError
from lstm_cli.job import TrainJob
from lstm_cli.presets import CONF_DIR, CONFIG_NAME

PROGRAM = "lstm-digits train"


def run(argv: list[str]) -> None:
    """Run `lstm-digits train ARGV`; raise what went wrong, as `cli` reports it."""
    process.quiet()
    request = config.preflight(argv)
    # First, before any job or worker starts: on a terminal, the jobs leave their start and
    # end to the sweep's live line.
    with process.environment(watch.job_environment(request)):
        _run(argv, request)


def _run(argv: list[str], request: config.Request) -> None:
    if request.launcher is not None:  # first: the workers take seconds to start
        process.warm_up_workers(request.launcher)
    if request.cfg is None:  # Hydra prints help or the config; nothing is tracked
        _launch(argv, TrainJob())
        return
    process.import_tracking()
    from lstm_cli.tracking import store

    uri = store.resolve_uri(request.cfg.tracking.uri)
    if not request.multirun:
        store.check_store(uri)  # before Hydra makes an output directory
        job = TrainJob()
        _launch(argv, job)
        if job.error is not None:
            raise job.error
        return
    _check_shared_store(request, uri)
    from lstm_cli import sweep

    remote = _is_remote(request.launcher)
    if remote:
        _register_launcher()
    with sweep.start(uri, request.cfg.tracking.experiment, request.overrides) as running:
        with (
            watch.watching(request, uri, running.parent_id),
            slurm_output.quiet_slurm(console.accounting_note) if remote else nullcontext(),
        ):
            _launch([*argv, f"{config.PARENT_KEY}={running.parent_id}"], TrainJob())
        failed = running.summarise()
    if failed:
        jobs = ", ".join(failed)
        raise TrainingFailed(f"{len(failed)} sweep job(s) failed (job {jobs}): see above")


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


def resume(uri: str, experiment: str, ref: str, overrides: list[str]) -> None:
    """`lstm-digits resume REF OVERRIDES`: check everything, then go on with the run."""
    from lstm_cli import resume as resuming
    from lstm_cli.job import resume_run

    process.quiet()
    process.import_tracking()
    cfg, reopening = resuming.plan(uri, experiment, ref, overrides)
    resume_run(cfg, reopening, overrides)


def _launch(argv: list[str], task: TrainJob) -> None:
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
