"""`lstm-digits compare`: which runs, which of their params differ, their final metrics, and
their curves.

The store is read through `tracking.read`, the terminal reached through `views.tables`, the
figure drawn by `views.figures`; this module decides what goes in them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lstm_cli.commands.options import Experiment, TrackingUri, docs, reading, where
from lstm_cli.runtime.errors import UserError

if TYPE_CHECKING:
    from lstm_cli.tracking.read import RunRecord

# The final metrics shown, in order: validation (what chose), then test (what is reported).
# A run without one (from before the test split) has an empty cell.
METRICS = ("val_loss", "val_accuracy", "best_val_accuracy", "test_accuracy", "test_loss")
CURVES = ("val_accuracy", "val_loss")  # the per-epoch metrics `--plot` draws
FORMATS = ("table", "json", "csv")  # `compare --format`


@dataclass(frozen=True)
class Comparison:
    """Runs side by side: the params shown (those that differ, or all) and the metrics."""

    runs: list[RunRecord]
    params: list[str]
    metrics: list[str]
    all_params: bool

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per run, plain values: run_id, name, status, the params (as logged,
        None where a run lacks one), the metrics (None where missing), duration_s."""
        now_ms = int(time.time() * 1000)
        rows = []
        for r in self.runs:
            row: dict[str, Any] = {"run_id": r.run_id, "name": r.name, "status": r.shown_status}
            row |= {p: r.params.get(p) for p in self.params}
            row |= {m: r.metrics.get(m) for m in self.metrics}
            row["duration_s"] = round(((r.end_ms or now_ms) - r.start_ms) / 1000, 3)
            rows.append(row)
        return rows

    def leader(self, metric: str) -> str | None:
        """The id of the run with the best value of `metric` (lowest loss, else highest);
        None if fewer than two runs have it or they tie."""
        values = {r.run_id: r.metrics[metric] for r in self.runs if metric in r.metrics}
        if len(values) < 2 or len(set(values.values())) == 1:
            return None
        pick = min if metric.endswith("loss") else max
        return pick(values, key=values.__getitem__)


def differing(runs: list[RunRecord]) -> list[str]:
    """The params whose logged values are not the same in every run (a param a run lacks
    differs from any value), sorted by name."""
    keys = sorted({k for r in runs for k in r.params})
    return [k for k in keys if len({r.params.get(k) for r in runs}) > 1]


def resolve(uri: str, experiment: str, refs: list[str]) -> list[RunRecord]:
    """The runs `refs` name (ids, unique prefixes, `best`), in order; a UserError for fewer
    than two, or for two references to one run."""
    if len(refs) < 2:
        raise UserError(
            f"compare needs at least two runs, got {len(refs)}: give run ids, prefixes or `best`"
        )
    from lstm_cli.tracking import read

    runs: list[RunRecord] = []
    seen: dict[str, str] = {}  # run id -> the reference that named it
    for ref in refs:
        run = read.find_run(uri, experiment, ref)
        if run.run_id in seen:
            raise UserError(
                f"'{seen[run.run_id]}' and '{ref}' are the same run {run.run_id}: "
                "give different runs"
            )
        seen[run.run_id] = ref
        runs.append(run)
    return runs


def gather(runs: list[RunRecord], all_params: bool = False) -> Comparison:
    """The comparison of `runs`: the params that differ (every param with `all_params`)."""
    params = sorted({k for r in runs for k in r.params}) if all_params else differing(runs)
    metrics = list(METRICS)
    return Comparison(runs=runs, params=params, metrics=metrics, all_params=all_params)


def curves(uri: str, runs: list[RunRecord]) -> list[dict[str, list[tuple[int, float]]]]:
    """Per run, each of CURVES as (epoch, value) pairs in epoch order, from the store."""
    from lstm_cli.tracking import read

    found = []
    for run in runs:
        history, _ = read.epoch_history(run.run_id, CURVES, uri=uri)
        epochs = sorted(history)
        found.append({n: [(e, history[e][n]) for e in epochs if n in history[e]] for n in CURVES})
    return found


def label(run: RunRecord) -> str:
    """A run as the figure's legend names it: short id and name."""
    return f"{run.run_id[:8]} {run.name}".strip()


def show(
    uri: str,
    experiment: str,
    refs: list[str],
    all_params: bool = False,
    output: str = "table",
    plot: Path | None = None,
) -> Comparison:
    """Compare the runs `refs` name: print them in `output` (FORMATS); with `plot`, write
    their learning curves there as a PNG and say where. Returns what was shown."""
    from lstm_cli.views import figures, tables

    if output not in FORMATS:
        raise UserError(f"--format {output} is not known: use one of {', '.join(FORMATS)}")
    comparison = gather(resolve(uri, experiment, refs), all_params)
    if plot is not None:  # first: a path it cannot write is the one line the user sees
        fig = figures.compared_curves(
            curves(uri, comparison.runs), [label(r) for r in comparison.runs]
        )
        try:
            fig.savefig(plot, format="png")
        finally:
            figures.close(fig)
    if output == "table":
        tables.comparison_table(comparison)
    else:
        tables.write_rows(comparison.rows(), output)
    if plot is not None:
        tables.plot_written(plot, to_stderr=output != "table")
    return comparison


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
        show(*where(tracking_uri, experiment), refs or [], all_params, output, plot)


def add_to(app: typer.Typer) -> None:
    """Register the command."""
    app.command(epilog=docs("runs", "Runs, models and the registry"))(compare)
