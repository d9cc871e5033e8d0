"""The `lstm-digits` command group: its usage errors, its options, and its commands, one
module each (`commands.train`, ...), registered here. A new command is a module with an
`add_to(app)` and one more name in `COMMANDS`.

TensorFlow, MLflow and Hydra are imported inside the commands, so `--help` answers at once.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from lstm_cli.commands import (
    compare,
    evaluate,
    importance,
    predict,
    register,
    resume,
    runs,
    train,
    ui,
)
from lstm_cli.commands.options import EXIT_USAGE, HELP_OPTIONS, docs, print_version
from lstm_cli.runtime import internals
from lstm_cli.runtime.errors import DEBUG_ENV
from lstm_cli.views import console

# The commands, in the order `lstm-digits -h` lists them: a new one is its module here.
COMMANDS = (train, resume, ui, runs, compare, importance, evaluate, predict, register)


class Root(TyperGroup):
    """The `lstm-digits` group: a usage error (an unknown command, a missing argument, a bad
    option) is one line on stderr, `error: ...`, exit 2, as every other error."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except internals.CLICK_ERRORS as ex:
            if not isinstance(ex, internals.NO_ARGS_IS_HELP):  # no command: the help answered
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


for command in COMMANDS:
    command.add_to(app)


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
