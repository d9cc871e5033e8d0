"""`lstm-digits register`: a run's model as a new version of a registered model, with an alias
if asked for."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from lstm_cli.commands.options import Experiment, RunId, TrackingUri, docs, reading, where


def new_version(uri: str, experiment: str, ref: str, name: str, alias: str | None) -> Any:
    """Register the model of run `ref` (an id, a prefix or `best`) as a new version of `name`,
    with `alias` if given; show it and return the version."""
    from lstm_cli.tracking import read, registry
    from lstm_cli.views import tables

    run = read.find_run(uri, experiment, ref)
    read.require_model(run)
    version = registry.register(run.run_id, name, alias)
    tables.registered(version, alias)
    return version


def register(
    run_id: RunId,
    name: Annotated[
        str, typer.Argument(help="The registered model's name (created if new).", metavar="NAME")
    ],
    alias: Annotated[
        str | None, typer.Option(help="Point this alias (e.g. champion) at the new version.")
    ] = None,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = None,
) -> None:
    """Register a run's model as a new version of NAME in the MLflow model registry.

    \b
    Examples:
      lstm-digits register best digits --alias champion
      lstm-digits predict models:/digits@champion --index 17
      lstm-digits train tracking.register=digits    (registers at the end of the run)
    """
    with reading():
        new_version(*where(tracking_uri, experiment), run_id, name, alias)


def add_to(app: typer.Typer) -> None:
    """Register the command."""
    app.command(epilog=docs("runs", "Runs, models and the registry"))(register)
