"""`lstm-digits importance`: what mattered in a finished sweep, computed again from its jobs in
the store: each swept key's importance for the validation accuracy, the seed as the noise
floor, each key's marginal effect. It reads and never writes: a sweep from before this command
keeps its record as it was."""

from __future__ import annotations

from typing import Annotated

import typer

from lstm_cli.commands.options import Experiment, TrackingUri, docs, reading, where


def show(uri: str, experiment: str, ref: str) -> None:
    """Print what mattered in sweep `ref` (its parent run: an id, a prefix, or `latest`)."""
    from lstm_cli.runtime import masking
    from lstm_cli.sweeps import importance as what_mattered
    from lstm_cli.tracking import read
    from lstm_cli.views import console

    parent = read.find_run(uri, experiment, ref)
    jobs = read.sweep_jobs(uri, parent)
    if parent.status == "RUNNING":
        console.note(f"sweep {parent.run_id} is still running: its jobs so far")
    result, effects = what_mattered.analyse(jobs)
    console.console.print(f"[bold]sweep[/] {parent.run_id} ({len(jobs)} jobs)")
    console.show_importance(result, effects)
    console.console.print(f"[bold]tracking URI[/]  {masking.mask(uri)}")


def importance(
    sweep: Annotated[
        str,
        typer.Argument(
            help="A sweep's parent run: an id, a unique prefix of one, or `latest` (the newest "
            "run or sweep).",
            metavar="SWEEP",
        ),
    ],
    tracking_uri: TrackingUri = None,
    experiment: Experiment = None,
) -> None:
    """Print what mattered in a sweep: each swept key's importance for the validation accuracy
    (the seed's as the noise floor) and each key's marginal effect, from its jobs in the store.

    Computed as the sweep's summary computes it, so a sweep from before that summary had it
    gets it too; nothing is written to the store.

    \b
    Examples:
      lstm-digits importance 9c1e
      lstm-digits importance latest --experiment lstm-digits-study
    """
    with reading():
        show(*where(tracking_uri, experiment), sweep)


def add_to(app: typer.Typer) -> None:
    """Register the command."""
    app.command(epilog=docs("sweeps", "Sweeps, optuna and pruning"))(importance)
