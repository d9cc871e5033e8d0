"""`lstm-digits train`: Hydra's command line checked, then `hydra.main` runs the jobs.

    argv -> compose.preflight -> [sweep.start: the parent run] -> hydra.main(jobs.task.Task)
                                 [live_line.watching: a live line] -> [Sweep.summarise]

`hydra.main` runs the jobs, so `-m`, `--cfg`, launchers and sweepers behave as in any Hydra
app; each job is `jobs.task.Task`, which learns all it needs from its config. What jobs did is
read back from the store. Hydra, MLflow and TensorFlow are imported inside: `--help` answers
at once.
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from typing import TYPE_CHECKING, Annotated

import typer

from lstm_cli.commands.options import OVERRIDES, TRAIN_EPILOG, OverridesCommand, fail
from lstm_cli.runtime import signals
from lstm_cli.runtime.errors import TrainingFailed, UserError

if TYPE_CHECKING:
    from lstm_cli.config.compose import Request
    from lstm_cli.jobs.task import Task

PROGRAM = "lstm-digits train"


def train(
    ctx: typer.Context,
    from_run: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Build on this run: its recorded config, then OVERRIDES, as a new run (a run "
            "id, a unique prefix of one, `best` or `latest`).",
            metavar="RUN",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train the LSTM once, or sweep with -m. OVERRIDES are Hydra's: KEY=VALUE, GROUP=OPTION.

    \b
    Hydra's flags, given among the overrides:
      -m, --multirun       sweep: one job per combination (hidden_size=25,50,100)
      --cfg job            print the resolved config and run nothing
      -cd, --config-dir D  also search D for configs (presets of your own)
      -cn, --config-name N start from config N (of -cd D), not config.yaml
    \b
    Examples:
      lstm-digits train hidden_size=100
      lstm-digits train epochs=20 batch_size=64 output_activation=linear seed=3
      lstm-digits train -m hidden_size=25,50,100,200
      lstm-digits train --cfg job hidden_size=100
      lstm-digits train experiment=keras
      lstm-digits train -cd my_configs experiment=mine
      lstm-digits train --from best epochs=300
      lstm-digits train --from 3f2a -m seed=1,2,3
    """
    try:
        with signals.scope():  # SIGTERM, as Ctrl-C, ends the runs it interrupts
            argv = list(ctx.args)
            launch(argv if from_run is None else built_on(from_run, argv))
    except (Exception, KeyboardInterrupt) as ex:  # every error ends in one line
        fail(ex)


def built_on(ref: str, argv: list[str]) -> list[str]:
    """`train --from REF ARGV`: the command line that trains run REF's recorded config, then
    ARGV (see `jobs.built_on`)."""
    from lstm_cli.jobs.built_on import argv_from
    from lstm_cli.runtime import process

    process.quiet()
    return argv_from(ref, argv)


def launch(argv: list[str], reopen: str | None = None) -> None:
    """Run `lstm-digits train ARGV`; raise what went wrong, as `train` reports it. `reopen`: the
    stopped sweep whose command line `argv` is, to go on with (`resume SWEEP`)."""
    from lstm_cli.config import compose
    from lstm_cli.runtime import process
    from lstm_cli.sweeps import live_line

    process.quiet()
    request = compose.preflight(argv)
    if reopen and not request.multirun:
        raise UserError(f"run {reopen}'s command line runs no sweep: {' '.join(argv)}")
    # First, before any job or worker starts: on a terminal, the jobs leave their start and
    # end to the sweep's live line.
    with process.environment(live_line.job_environment(request)):
        _run(request.argv, request, reopen)  # as preflight wrote it out (a key's glob)


def _run(argv: list[str], request: Request, reopen: str | None = None) -> None:
    from lstm_cli.config import compose
    from lstm_cli.jobs.task import Task
    from lstm_cli.runtime import internals, process
    from lstm_cli.sweeps import live_line, slurm_output
    from lstm_cli.views import console

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
    from lstm_cli.sweeps import sweep

    remote = _is_remote(request.launcher)
    if remote:
        _register_launcher()
    experiment = request.cfg.tracking.experiment
    kept = compose.portable_argv(request)  # what `resume SWEEP` runs again
    built_on = request.cfg.tracking.from_run
    with sweep.start(uri, experiment, request.overrides, kept, reopen, built_on) as running:
        with (
            live_line.watching(request, uri, running.parent_id),
            slurm_output.quiet_slurm(console.accounting_note) if remote else nullcontext(),
        ):
            _launch([*argv, f"{compose.PARENT_KEY}={running.parent_id}"], Task())
        failed = running.summarise()
        said = running.told() if failed else ""
    if failed:
        jobs = ", ".join(failed)
        raise TrainingFailed(f"{len(failed)} sweep job(s) failed (job {jobs}): see above; {said}")


REMOTE_LAUNCHERS = ("SlurmLauncher",)  # launchers whose jobs may run on other machines


def _is_remote(launcher) -> bool:
    return str(launcher.get("_target_", "")).endswith(REMOTE_LAUNCHERS)


def _register_launcher() -> None:
    """Make our SLURM launcher known to Hydra, which finds plugins by scanning the
    `hydra_plugins` folders: an editable install's folder is not one it can scan."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.lstm_digits.launcher import PackedSlurmLauncher

    Plugins.instance().register(PackedSlurmLauncher)


def _check_shared_store(request: Request, uri: str) -> None:
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

    from lstm_cli.config.files import CONF_DIR, CONFIG_NAME
    from lstm_cli.runtime import internals

    # hydra.main reads its command line from sys.argv: the one channel Hydra forces on us.
    sys.argv = [PROGRAM, *argv]
    # Hydra's own errors (a launcher failing, an unwritable output directory) then raise
    # rather than print a traceback and exit 1: the CLI tells them in one line.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    main = hydra.main(config_path=str(CONF_DIR), config_name=CONFIG_NAME, version_base="1.3")
    try:
        main(task)()
    except Exception as ex:
        refusal = internals.sbatch_refusal(ex)
        if refusal is None:
            raise
        raise UserError(f"SLURM refused the sweep's jobs: {refusal}") from None


def add_to(app: typer.Typer) -> None:
    """Register the command."""
    app.command(cls=OverridesCommand, context_settings=OVERRIDES, epilog=TRAIN_EPILOG)(train)
