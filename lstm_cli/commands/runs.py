"""`lstm-digits runs`: the runs of an experiment or of one sweep, sorted and limited, or the
best, as a table or in a machine-readable format."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from lstm_cli.commands.options import Experiment, TrackingUri, docs, reading, where
from lstm_cli.runtime.errors import UserError

if TYPE_CHECKING:
    from lstm_cli.tracking.read import RunRecord

ATTRIBUTES = ("name", "status", "start_time", "duration")  # sort keys besides params and metrics
# The attributes the store sorts by; text always ascending (sorting text backwards helps no one).
STORE_ORDER = {
    "name": "attributes.run_name",
    "status": "attributes.status",
    "start_time": "attributes.start_time",
}
TEXT = ("name", "status")


# ---------------------------------------------------------------- ui


def _sort_key(run: RunRecord, key: str, ascending: bool) -> tuple:
    """For a param or the duration: runs without it last, numbers before text (ascending)."""
    value: int | str | None = run.params.get(key)
    if key == "duration":
        value = (run.end_ms or int(time.time() * 1000)) - run.start_ms
    try:
        number = float(value)
    except (TypeError, ValueError):
        return (2, 0, "") if value is None else (1, 0, value)
    return (0, number if ascending else -number, "")


def _unknown(sort: str, runs: list[RunRecord]) -> UserError:
    known = {k for r in runs for k in (*r.metrics, *r.params)} | set(ATTRIBUTES)
    return UserError(f"cannot sort by '{sort}': use one of {', '.join(sorted(known))}")


def _selected(
    uri: str, experiment: str, parent_id: str | None, sort: str | None, ascending: bool, limit: int
) -> tuple[list[RunRecord], bool]:
    """The first `limit` runs by `sort`, and whether more match.

    The store sorts by metrics and run attributes and stops at the limit. It orders params as
    text ("100" before "50") and knows no durations: for those every run is read and sorted here.
    """
    from lstm_cli.tracking import read

    direction = "ASC" if ascending else "DESC"
    if sort is None or sort in STORE_ORDER:
        order = None
        if sort is not None:
            order = [f"{STORE_ORDER[sort]} {'ASC' if sort in TEXT else direction}"]
        runs = read.search(uri, experiment, parent_id, order, limit + 1)
    else:
        order = [f"metrics.`{sort}` {direction}", *read.NEWEST_FIRST]  # runs without it last
        runs = read.search(uri, experiment, parent_id, order, limit + 1)
        if not (runs and sort in runs[0].metrics):  # not a metric of any run
            if sort != "duration" and not read.has_param(uri, experiment, sort, parent_id):
                raise _unknown(sort, runs)
            runs = read.search(uri, experiment, parent_id)
            runs = sorted(runs, key=lambda r: _sort_key(r, sort, ascending))
    return runs[:limit], len(runs) > limit


def list_runs(
    uri: str,
    experiment: str,
    sweep: str | None,
    sort: str | None,
    ascending: bool,
    limit: int,
    best: bool,
    output: str = "table",
) -> None:
    """Show the runs of `experiment` (or of one sweep), sorted and limited, or only the best,
    as a table or in a machine-readable `output` (tables.FORMATS)."""
    from lstm_cli.tracking import read
    from lstm_cli.views import tables

    if output not in tables.FORMATS:
        raise UserError(f"--format {output} is not known: use one of {', '.join(tables.FORMATS)}")
    if limit < 1:
        raise UserError(f"--limit {limit} is invalid: it must be a positive integer")
    parent = read.find_run(uri, experiment, sweep) if sweep else None
    parent_id = parent.run_id if parent else None
    if parent and not read.search(uri, experiment, parent_id, limit=1):
        raise UserError(f"run {parent.run_id} has no child runs: it is not a sweep's parent run")
    if best:
        runs, more = [read.best(uri, experiment, parent_id)], False
        if sort and sort not in {*runs[0].metrics, *runs[0].params, *ATTRIBUTES}:
            raise _unknown(sort, runs)
    else:
        runs, more = _selected(uri, experiment, parent_id, sort, ascending, limit)
    title = f"Runs of sweep {parent.run_id}" if parent else f"Runs of experiment '{experiment}'"
    if best:
        title = f"Best run of experiment '{experiment}' (highest val_accuracy)"
    if output == "table":
        tables.runs_table(runs, title=title, more=more, extra=sort)
    else:
        tables.runs_data(runs, output, extra=sort)


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
        uri, name = where(tracking_uri, experiment)
        list_runs(uri, name, sweep, sort, ascending, limit, best, output)


def add_to(app: typer.Typer) -> None:
    """Register the command."""
    app.command(epilog=docs("runs", "Runs, models and the registry"))(runs)
