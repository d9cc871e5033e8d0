"""What the commands of `lstm-digits` share: how each ends (exit codes, one-line errors), how
their help reads (the docs line, `train`'s overrides and keys, --version), and the options and
arguments of the commands that read runs back. Usage errors are the group's, in `app`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand

from lstm_cli.config import files
from lstm_cli.runtime import process, signals
from lstm_cli.runtime.errors import (
    Interrupted,
    StoreUnavailable,
    UserError,
    access_code,
    debugging,
    one_line,
    traceback_text,
)
from lstm_cli.views import console

EXIT_FAILED = 1  # training or a sweep job failed
EXIT_USAGE = 2  # the user asked for something invalid
EXIT_SIGNAL = 128  # + the signal's number: 130 on Ctrl-C, 143 on SIGTERM, as a shell reports


def fail(ex: BaseException) -> NoReturn:
    """Tell `ex` in one line (then its traceback, with --debug) and exit with its code."""
    if isinstance(ex, KeyboardInterrupt):
        signum = ex.signum if isinstance(ex, Interrupted) else Interrupted().signum
        what = "interrupted" if signum == Interrupted().signum else one_line(ex)
        # What the stop left (the runs' handles say it), or that it came before any run.
        console.error(f"{what}: {getattr(ex, 'told', None) or 'no run was made'}")
        code = EXIT_SIGNAL + signum
    else:
        console.error(one_line(ex))
        # who asked, or what they asked: theirs to mend (mid-run, a store fault: exit 1)
        refused = access_code(ex) is not None and not isinstance(ex, StoreUnavailable)
        code = EXIT_USAGE if isinstance(ex, UserError | OSError) or refused else EXIT_FAILED
    if debugging():
        console.errors.print(traceback_text(ex), markup=False, highlight=False, end="")
    raise typer.Exit(code)


HELP_OPTIONS = ["-h", "--help"]  # -h means --help on every command, as in git, gh and uv
OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}  # Hydra's, after it
DOCS = "docs/{page}.md in the repository; `make docs` serves the site"


def docs(page: str, title: str) -> str:
    """The line of a command's help that names its page of the docs."""
    return f"Docs: {title} ({DOCS.format(page=page)})."


class OverridesCommand(TyperCommand):
    """A command whose trailing arguments are Hydra overrides (KEY=VALUE): its usage line
    shows them, and the shell completes them (keys, groups, values)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "[OVERRIDES]..."]

    def shell_complete(self, ctx: Any, incomplete: str) -> list:
        from typer.core import CompletionItem

        found = [CompletionItem(v) for v in files.complete(incomplete)]
        return found + super().shell_complete(ctx, incomplete)


def key_listing() -> str:
    """The config's keys for `train --help`: top-level ones by name, the others by section."""
    names: list[str] = []
    for key in list(files.keys()):
        name = key if "." not in key else f"{key.split('.')[0]}.*"
        if name not in names:
            names.append(name)
    return " ".join(names)


TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        show_envvar=True,
        help="MLflow tracking URI (default: sqlite:///<cwd>/outputs/mlflow.db, as `train`).",
        show_default=False,
    ),
]
Experiment = Annotated[
    str | None,
    typer.Option(
        "--experiment",
        help="MLflow experiment (default: the config's tracking.experiment, as `train`).",
        show_default=False,
    ),
]
RunId = Annotated[
    str,
    typer.Argument(
        help="A run id, a unique prefix of one, or `best` (highest val_accuracy).", metavar="RUN"
    ),
]
StoppedRun = Annotated[
    str,
    typer.Argument(
        help="A run or a sweep (its parent run): an id, a unique prefix of one, `best` (highest "
        "val_accuracy) or `latest` (the newest run or sweep).",
        metavar="RUN|SWEEP",
    ),
]
ModelRef = Annotated[
    str,
    typer.Argument(
        help="A run id, a unique prefix of one, `best` (highest val_accuracy), or a registered "
        "model: models:/NAME/VERSION or models:/NAME@ALIAS.",
        metavar="MODEL",
    ),
]


def where(tracking_uri: str | None, experiment: str | None) -> tuple[str, str]:
    """The tracking URI and experiment name, with the defaults `train` uses."""
    process.import_tracking()  # MLflow, out of the collector's way
    from lstm_cli.tracking.store import resolve_uri

    if experiment is None:
        experiment = str(files.default("tracking.experiment"))
    return resolve_uri(tracking_uri), experiment


@contextmanager
def reading() -> Iterator[None]:
    """Every error of a reading command ends in one line; Ctrl-C (or SIGTERM) just stops."""
    process.quiet()
    try:
        with signals.scope():
            yield
    except typer.Exit:
        raise
    except KeyboardInterrupt as ex:
        console.error("interrupted")
        signum = ex.signum if isinstance(ex, Interrupted) else Interrupted().signum
        raise typer.Exit(EXIT_SIGNAL + signum) from None
    except Exception as ex:
        fail(ex)


def print_version(value: bool) -> None:
    """--version: print it and exit."""
    if value:
        import lstm_cli

        console.console.print(f"lstm-digits {lstm_cli.__version__}")
        raise typer.Exit()


TRAIN_EPILOG = (
    "Config groups (GROUP=OPTION):\n\n"
    + files.listing().replace("\n", "\n\n")
    + f"\n\nKeys (KEY=VALUE): {key_listing()}. Their defaults: `lstm-digits train --cfg job`."
    + "\n\n"
    + docs("configuration", "Configuration; every key in the config reference")
)
