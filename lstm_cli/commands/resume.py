"""`lstm-digits resume`: a stopped run goes on in its run (the rules: `jobs.resume_rules`), a
stopped sweep goes on as a sweep, under the command line it kept."""

from __future__ import annotations

from typing import Any

import typer

from lstm_cli.commands.options import (
    OVERRIDES,
    Experiment,
    OverridesCommand,
    StoppedRun,
    TrackingUri,
    docs,
    fail,
    where,
)
from lstm_cli.runtime import process, signals
from lstm_cli.runtime.errors import UserError


def resume(
    ctx: typer.Context,
    run_id: StoppedRun,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = None,
) -> None:
    """Go on with a stopped run, or a stopped sweep, in the same MLflow runs.

    A run (KILLED, FAILED, or FINISHED with more epochs) goes on from its latest checkpoint
    (none: from its start, its stored epochs replayed). OVERRIDES (KEY=VALUE) may change only
    epochs, threads, kernel, checkpoint.*, tracking.log_model and tracking.outage_minutes.

    Given a sweep's parent run, finish the sweep on its own launcher: stopped points go on in
    their runs, points never started run, finished and pruned ones stay; OVERRIDES may change
    only the launcher's keys (hydra.launcher.KEY=VALUE).

    \b
    Examples:
      lstm-digits resume 3f2a
      lstm-digits resume best epochs=300
      lstm-digits resume latest
      lstm-digits resume 9c1e hydra.launcher.n_jobs=4    (a sweep)
    """
    process.quiet()
    try:
        with signals.scope():  # SIGTERM, as Ctrl-C, ends the run again, KILLED
            go_on(*where(tracking_uri, experiment), run_id, list(ctx.args))
    except (Exception, KeyboardInterrupt) as ex:
        fail(ex)


def go_on(uri: str, experiment: str, ref: str, overrides: list[str]) -> None:
    """`lstm-digits resume REF OVERRIDES`: a run goes on (`resume_run`), a sweep's parent run
    goes on as a sweep (`resume_sweep`)."""
    process.quiet()
    process.import_tracking()
    from lstm_cli.tracking import read

    found = read.find_run(uri, experiment, ref)
    if found.is_sweep_parent:
        resume_sweep(uri, found, overrides)
    else:
        resume_run(uri, found, overrides)


def resume_run(uri: str, run: Any, overrides: list[str]) -> None:
    """`run` (a `tracking.read.RunRecord` of the store at `uri`) goes on: everything checked
    first (`resume_rules.plan`), then trained as every run is (`jobs.run.train`)."""
    from lstm_cli.jobs import resume_rules
    from lstm_cli.jobs.run import train
    from lstm_cli.runtime import masking
    from lstm_cli.tracking import store
    from lstm_cli.views import console

    cfg, reopening = resume_rules.plan(uri, run, overrides)
    uri = store.resolve_uri(cfg.tracking.uri)
    saved = reopening.checkpoint
    start = f"after epoch {saved.epoch}" if saved else "from its start (it has no checkpoint)"
    console.console.print(f"[bold]resume[/] run {reopening.run_id} {start}")
    tags = {"resume_overrides": " ".join(overrides)}
    result, run_id = train(cfg, False, _threads(cfg), reopening=reopening, tags=tags)
    how = store.ui_command(uri, reopening.experiment, reopening.experiment_id, run_id)
    console.show_result(result, run_id, masking.mask(uri), masking.mask(how))


def _threads(cfg: Any) -> int | None:
    """TensorFlow threads for a resumed run: the config's, else by model size."""
    process.import_tensorflow()
    from lstm_cli.fit.trainer import default_threads

    return cfg.threads if cfg.threads is not None else default_threads(cfg.hidden_size)


def resume_sweep(uri: str, parent: Any, overrides: list[str]) -> None:
    """`lstm-digits resume SWEEP [hydra.launcher.KEY=VALUE]...`: the stopped sweep `parent`
    (a `tracking.read.RunRecord`) goes on under its own command line and launcher, as
    `sweep.start` kept it: its finished and pruned points stay, its stopped ones go on in
    their runs (`jobs.task.run_job` finds them), the ones that never started run; then its
    summary."""
    from lstm_cli.commands.train import launch
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


def add_to(app: typer.Typer) -> None:
    """Register the command."""
    epilog = docs("resume", "Stop and resume")
    app.command(cls=OverridesCommand, context_settings=OVERRIDES, epilog=epilog)(resume)
