"""The `lstm-digits` command line: parsing, help and exit codes, nothing else.

TensorFlow, MLflow and Hydra are imported inside the commands, so `--help` answers at once.
"""

from __future__ import annotations

from typing import NoReturn

import typer

from lstm_cli import console
from lstm_cli.errors import UserError, one_line

app = typer.Typer(
    name="lstm-digits",
    help="Train, sweep and compare a from-scratch TensorFlow LSTM on the 8x8 digits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_FAILED = 1  # training or a sweep job failed
EXIT_USAGE = 2  # the user asked for something invalid
EXIT_INTERRUPTED = 130  # Ctrl-C


def _fail(ex: BaseException) -> NoReturn:
    if isinstance(ex, KeyboardInterrupt):
        console.error("interrupted: the run was marked KILLED with the metrics logged so far")
        raise typer.Exit(EXIT_INTERRUPTED)
    console.error(one_line(ex))
    usage = isinstance(ex, UserError | OSError)
    raise typer.Exit(EXIT_USAGE if usage else EXIT_FAILED)


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    """Train, sweep and compare a from-scratch TensorFlow LSTM on the 8x8 digits."""
    if version:
        import lstm_cli

        console.console.print(f"lstm-digits {lstm_cli.__version__}")
        raise typer.Exit()


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def train(ctx: typer.Context) -> None:
    """Train the LSTM once, or sweep with -m. Arguments are Hydra overrides and flags.

    \b
    Examples:
      lstm-digits train hidden_size=100
      lstm-digits train epochs=20 batch_size=64 output_activation=linear seed=3
      lstm-digits train -m hidden_size=25,50,100,200
      lstm-digits train --cfg job hidden_size=100
    Keys: hidden_size epochs batch_size learning_rate output_activation cell init seed
    threads data.* tracking.uri tracking.experiment (defaults: conf/config.yaml).
    """
    from lstm_cli import experiment

    try:
        code = experiment.run(list(ctx.args))
    except (Exception, KeyboardInterrupt) as ex:
        _fail(ex)
    if code:
        raise typer.Exit(code)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
