"""The `lstm-digits` command line: parsing, help and exit codes, nothing else.

TensorFlow, MLflow and Hydra are imported inside the commands, so `--help` answers at once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from lstm_cli import console, internals, process, signals
from lstm_cli.cli_shared import (
    EXIT_FAILED,
    EXIT_USAGE,
    HELP_OPTIONS,
    TRAIN_EPILOG,
    Experiment,
    ModelRef,
    OverridesCommand,
    RunId,
    StoppedRun,
    TrackingUri,
    docs,
    fail,
    print_version,
    reading,
    store,
)
from lstm_cli.errors import DEBUG_ENV

# Typer (0.29) vendors its own click: its usage errors derive from the one error it exports.
CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class Root(TyperGroup):
    """The `lstm-digits` group: a usage error (an unknown command, a missing argument, a bad
    option) is one line on stderr, `error: ...`, exit 2, as every other error."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except CLICK_ERROR as ex:
            if type(ex).__name__ != "NoArgsIsHelpError":  # no command: the help was the answer
                console.error(usage_error(ex))
            code = EXIT_USAGE
        if not standalone_mode:
            return code
        raise SystemExit(code if isinstance(code, int) else 0)


def usage_error(ex: Any) -> str:
    """Click's message in one line, with the command it is about and where to read its help."""
    message = ex.format_message().strip().rstrip(".").replace("\n", " ")
    message = (message[:1].lower() + message[1:]).replace(". Did you mean", "; did you mean")
    ctx = getattr(ex, "ctx", None)
    path = ctx.command_path if ctx is not None else "lstm-digits"
    return f"{path}: {message} (see: {path} -h)"


app = typer.Typer(
    name="lstm-digits",
    cls=Root,
    help="Train, sweep and compare a from-scratch TensorFlow LSTM on the 8x8 digits.",
    epilog=docs("index", "the home page"),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": HELP_OPTIONS},
)
OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=print_version, help="Print the version and exit."
        ),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar=DEBUG_ENV,
            help=f"After an error, print its full traceback (bug reports; ${DEBUG_ENV}=1).",
        ),
    ] = False,
) -> None:
    """Train, sweep and compare a from-scratch TensorFlow LSTM on the 8x8 digits."""
    if debug:  # sweep jobs in other processes inherit it
        os.environ[DEBUG_ENV] = "1"


@app.command(cls=OverridesCommand, context_settings=OVERRIDES, epilog=TRAIN_EPILOG)
def train(ctx: typer.Context) -> None:
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
    """
    from lstm_cli import job

    try:
        with signals.scope():  # SIGTERM, as Ctrl-C, ends the runs it interrupts
            job.launch(list(ctx.args))
    except (Exception, KeyboardInterrupt) as ex:  # every error ends in one line
        fail(ex)


@app.command(epilog=docs("runs", "Runs, models and the registry"))
def ui(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5000,
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0: every interface).")] = (
        "127.0.0.1"
    ),
    tracking_uri: TrackingUri = None,
    experiment: Experiment = None,
) -> None:
    """Open the MLflow UI on the store `train` uses; print its URL; stop with Ctrl-C.

    \b
    Examples:
      lstm-digits ui
      lstm-digits ui --port 5001 --host 127.0.0.1
    """
    with reading():
        from lstm_cli import browse

        browse.serve_ui(*store(tracking_uri, experiment), host=host, port=port)


@app.command(epilog=docs("runs", "Runs, models and the registry"))
def runs(
    sweep: Annotated[
        str | None, typer.Option(help="Only the runs of this sweep (its parent run id).")
    ] = None,
    sort: Annotated[
        str | None,
        typer.Option(
            help="Sort by a metric or param (highest first), or by name, status or duration.",
            metavar="[METRIC|PARAM|name|status|duration]",
        ),
    ] = None,
    ascending: Annotated[bool, typer.Option("--ascending", help="Lowest first.")] = False,
    limit: Annotated[int, typer.Option(help="Show at most this many runs.")] = 20,
    best: Annotated[
        bool, typer.Option("--best", help="Only the finished run with the highest val_accuracy.")
    ] = False,
    output: Annotated[
        str,
        typer.Option(
            "--format",
            help="table, json or csv (every column, full run ids), or ids (one run id a line).",
            metavar="[table|json|csv|ids]",
        ),
    ] = "table",
    tracking_uri: TrackingUri = None,
    experiment: Experiment = None,
) -> None:
    """List recent runs: name, status, key params, final metrics, duration.

    \b
    Examples:
      lstm-digits runs
      lstm-digits runs --sweep 3f2a --sort val_accuracy --limit 10
      lstm-digits runs --best
      lstm-digits runs --format json | jq '.[0].run_id'
      lstm-digits runs --sweep 3f2a --format ids
    """
    with reading():
        from lstm_cli import browse

        uri, name = store(tracking_uri, experiment)
        browse.list_runs(uri, name, sweep, sort, ascending, limit, best, output)


@app.command(epilog=docs("runs", "Runs, models and the registry"))
def compare(
    refs: Annotated[
        list[str] | None,  # optional here: too few runs is compare's one-line error
        typer.Argument(
            help="Two or more runs: run ids, unique prefixes of them, or `best`.",
            metavar="RUN",
            show_default=False,
        ),
    ] = None,
    all_params: Annotated[
        bool, typer.Option("--all", help="Every param, not only those that differ.")
    ] = False,
    output: Annotated[
        str,
        typer.Option(
            "--format",
            help="table, json or csv (a row per run, full run ids).",
            metavar="[table|json|csv]",
        ),
    ] = "table",
    plot: Annotated[
        Path | None,
        typer.Option(help="Write the runs' learning curves (val accuracy and loss) to this PNG."),
    ] = None,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = None,
) -> None:
    """Put two or more runs side by side: differing params, final metrics, status, duration.

    A column per run; --all shows every param, --plot draws their learning curves.

    \b
    Examples:
      lstm-digits compare 3f2a 9c1e
      lstm-digits compare best 3f2a 9c1e --all
      lstm-digits compare 3f2a 9c1e --plot curves.png
      lstm-digits compare 3f2a 9c1e --format json | jq '.[].val_accuracy'
    """
    with reading():
        from lstm_cli import compare

        compare.show(*store(tracking_uri, experiment), refs or [], all_params, output, plot)


@app.command(epilog=docs("runs", "Runs, models and the registry"))
def evaluate(
    run_id: ModelRef, tracking_uri: TrackingUri = None, experiment: Experiment = None
) -> None:
    """Reload a run's model; recompute its accuracy on the test split; show the confusion matrix.

    Exits 1 if the accuracy differs from the test_accuracy the run logged.

    \b
    Examples:
      lstm-digits evaluate best
      lstm-digits evaluate models:/digits@champion
    """
    with reading():
        from lstm_cli import browse

        result = browse.evaluate(*store(tracking_uri, experiment), run_id)
        if not result.agrees:
            console.error("the reloaded model's accuracy differs from the test_accuracy logged")
            raise typer.Exit(EXIT_FAILED)


@app.command(epilog=docs("runs", "Runs, models and the registry"))
def predict(
    run_id: ModelRef,
    index: Annotated[
        int | None, typer.Option(help="A digit of the run's test split (held out), by position.")
    ] = None,
    image: Annotated[
        Path | None,
        typer.Option(help="An image file (any size; dark-on-light or light-on-dark)."),
    ] = None,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = None,
) -> None:
    """Predict one digit with a run's model: draw it, print the class and the probabilities.

    \b
    Examples:
      lstm-digits predict best --index 17
      lstm-digits predict 3f2a --image my_digit.png
      lstm-digits predict models:/digits/2 --index 17
    """
    with reading():
        from lstm_cli import browse

        browse.predict(*store(tracking_uri, experiment), run_id, index, image)


@app.command(epilog=docs("runs", "Runs, models and the registry"))
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
        from lstm_cli import browse

        browse.register(*store(tracking_uri, experiment), run_id, name, alias)


@app.command(
    cls=OverridesCommand, context_settings=OVERRIDES, epilog=docs("resume", "Stop and resume")
)
def resume(
    ctx: typer.Context,
    run_id: StoppedRun,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = None,
) -> None:
    """Go on with a stopped run (KILLED, FAILED, or FINISHED with more epochs) in the same
    MLflow run, from its latest checkpoint (none: from its start, its stored epochs replayed).
    OVERRIDES (KEY=VALUE) may change only epochs, threads, gates, checkpoint.*,
    tracking.log_model and tracking.outage_minutes.

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
    from lstm_cli import job

    process.quiet()
    try:
        with signals.scope():  # SIGTERM, as Ctrl-C, ends the run again, KILLED
            job.go_on(*store(tracking_uri, experiment), run_id, list(ctx.args))
    except (Exception, KeyboardInterrupt) as ex:
        fail(ex)


def main() -> None:
    """Console-script entry point: the command, then a fast exit (see `internals.finish`)."""
    try:
        app()
        code = 0
    except SystemExit as ex:
        code = ex.code if isinstance(ex.code, int) else (0 if ex.code is None else 1)
        if isinstance(ex.code, str):
            console.error(ex.code)
    internals.finish(code)
