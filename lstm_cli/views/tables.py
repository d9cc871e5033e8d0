"""What the commands that read runs back print (rich): runs, a confusion matrix, a digit."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import datetime
from typing import Any

import numpy as np
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lstm_cli.data.digits import PIXEL_MAX
from lstm_cli.runtime.masking import mask
from lstm_cli.views.console import console, note

KEY_PARAMS = ("hidden_size", "epochs", "batch_size", "learning_rate", "output_activation")
KEY_METRICS = ("val_accuracy", "test_accuracy", "val_loss", "train_accuracy", "train_loss")
SHADES = " ░▒▓█"  # pixel 0 .. 16, each drawn two characters wide
BAR_WIDTH = 40  # characters of a probability of 1
STATUS_COLOURS = {"FINISHED": "green", "RUNNING": "yellow", "FAILED": "red", "KILLED": "red"}
FORMATS = ("table", "json", "csv", "ids")  # `runs --format`


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{hours}h {minutes:02d}m"
        if hours
        else f"{minutes}m {secs:02d}s"
        if minutes
        else f"{secs}s"
    )


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "" if value is None else str(value)


# Columns a narrow terminal drops first, last first: the run id, name and status always stay.
DROP_ORDER = (
    "train_loss",
    "train_accuracy",
    "started",
    "batch_size",
    "epochs",
    "learning_rate",
    "output_activation",
    "val_loss",
    "duration",
    "hidden_size",
)
NAME_MIN = 16  # characters of the run's name kept before columns are dropped


def runs_table(runs: list[Any], title: str, more: bool, extra: str | None = None) -> None:
    """Runs (tracking.RunRecord) with their key params and final metrics, one row each.

    Args:
        runs: the rows to show, in order.
        title: the table's title.
        more: whether more runs matched than are shown (the limit cut them).
        extra: a param or metric to show too (the sort key).
    """
    params, metrics = _shown(runs, extra)
    now_ms = int(datetime.now().timestamp() * 1000)
    columns: dict[str, list[str]] = {"run id": [r.run_id[:8] for r in runs]}
    columns["status"] = [
        f"[{STATUS_COLOURS.get(r.status, 'white')}]{r.shown_status}[/]" for r in runs
    ]
    for name in params:
        columns[name] = [escape(r.params.get(name, "")) for r in runs]
    for name in metrics:
        columns[name] = [_number(r.metrics.get(name)) for r in runs]
    columns["duration"] = [_duration(((r.end_ms or now_ms) - r.start_ms) / 1000) for r in runs]
    columns["started"] = [
        datetime.fromtimestamp(r.start_ms / 1000).strftime("%Y-%m-%d %H:%M") for r in runs
    ]

    def width() -> int:
        cells = [max(len(k), *(len(Text.from_markup(v)) for v in vs)) for k, vs in columns.items()]
        return sum(cells) + 3 * len(cells) + NAME_MIN + 4

    hidden = []
    for name in DROP_ORDER:
        if width() <= console.width:
            break
        if name in columns and name != extra:
            del columns[name]
            hidden.append(name)
    table = Table(title=escape(title), header_style="bold")
    for name in columns:
        numeric = name in metrics or name in params or name == "duration"
        table.add_column(
            name,
            justify="right" if numeric else "left",
            no_wrap=True,
            style="cyan" if name in metrics else None,
        )
        if name == "status":
            table.add_column("name", overflow="fold", min_width=NAME_MIN)
    for k, r in enumerate(runs):
        name = escape(r.name) + (" [dim](sweep)[/]" if r.is_sweep_parent else "")
        row = [values[k] for values in columns.values()]
        table.add_row(row[0], row[1], name, *row[2:])
    console.print(table)
    shown = f"the first {len(runs)} runs (more match: --limit)" if more else f"{len(runs)} run(s)"
    console.print(f"{shown}; RUN_ID: a run id, a unique prefix of one (as shown), or `best`")
    if hidden:
        console.print(f"[dim]hidden to fit the terminal: {', '.join(hidden)}[/]")
    if len(runs) == 1:
        console.print(f"[bold]run id[/]  {runs[0].run_id}")


def _shown(runs: list[Any], extra: str | None) -> tuple[list[str], list[str]]:
    """The params and metrics the runs are shown with: the key ones they have, and `extra`."""
    params = [p for p in (*KEY_PARAMS, extra) if p and any(p in r.params for r in runs)]
    metrics = [m for m in (*KEY_METRICS, extra) if m and any(m in r.metrics for r in runs)]
    return list(dict.fromkeys(params)), [m for m in dict.fromkeys(metrics) if m not in params]


def runs_data(runs: list[Any], output: str, extra: str | None = None) -> None:
    """Runs for scripts: `json` (a list of objects), `csv` (a header, a row each) or `ids`
    (one full run id a line): every column of the table, full run ids, plain values."""
    if output == "ids":
        sys.stdout.write("".join(f"{r.run_id}\n" for r in runs))
        return
    params, metrics = _shown(runs, extra)
    rows = []
    for r in runs:
        row: dict[str, Any] = {
            "run_id": r.run_id,
            "name": r.name,
            "status": r.shown_status,
            "sweep_parent": r.is_sweep_parent,
        }
        row |= {p: r.params.get(p) for p in params}
        row |= {m: r.metrics.get(m) for m in metrics}
        end_ms = r.end_ms or int(datetime.now().timestamp() * 1000)
        row["duration_s"] = round((end_ms - r.start_ms) / 1000, 3)
        row["started"] = datetime.fromtimestamp(r.start_ms / 1000).isoformat(timespec="seconds")
        rows.append(row)
    write_rows(rows, output)


def write_rows(rows: list[dict[str, Any]], output: str) -> None:
    """Flat rows of plain values on stdout: `json` (a list of objects) or `csv` (a header, a
    row each; an empty cell for None)."""
    if output == "json":
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    out = io.StringIO()
    columns = list(rows[0]) if rows else ["run_id", "name", "status"]
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    sys.stdout.write(out.getvalue())


def comparison_table(comparison: Any) -> None:
    """Runs side by side (compare.Comparison), a column each headed by its short id and name:
    the params shown, then the final metrics (the best run's value in bold), status, duration."""
    runs = comparison.runs
    now_ms = int(datetime.now().timestamp() * 1000)
    table = Table(title="Runs compared", header_style="bold")
    table.add_column("", style="bold", no_wrap=True)
    for r in runs:
        table.add_column(
            f"{r.run_id[:8]}\n[dim]{escape(r.name)}[/]", justify="right", overflow="fold"
        )
    if comparison.params:
        for name in comparison.params:
            table.add_row(escape(name), *(escape(r.params.get(name, "")) for r in runs))
    else:
        table.add_row("[dim]params[/]", *(["[dim]all equal[/]"] * len(runs)))
    table.add_section()
    for name in comparison.metrics:
        leader = comparison.leader(name)
        cells = [_number(r.metrics.get(name)) for r in runs]
        cells = [
            f"[bold]{c}[/]" if r.run_id == leader else c for r, c in zip(runs, cells, strict=True)
        ]
        table.add_row(f"[cyan]{name}[/]", *cells)
    table.add_section()
    statuses = [f"[{STATUS_COLOURS.get(r.status, 'white')}]{r.shown_status}[/]" for r in runs]
    table.add_row("status", *statuses)
    table.add_row(
        "duration", *(_duration(((r.end_ms or now_ms) - r.start_ms) / 1000) for r in runs)
    )
    console.print(table)
    shown = "every param" if comparison.all_params else "the params that differ (--all: every one)"
    console.print(f"{len(runs)} runs; {shown}; the best value of a metric in bold")


def plot_written(path: Any, to_stderr: bool) -> None:
    """Where the learning curves went (on stderr when stdout holds json or csv)."""
    if to_stderr:
        note(f"learning curves written to {path}")
    else:
        console.print(f"[bold]learning curves[/]  {escape(str(path))}", soft_wrap=True)


def evaluation(result: Any, run_name: str) -> None:
    """Recomputed and logged accuracy, and the confusion matrix (true classes down)."""
    matrix = result.matrix
    table = Table(title="Confusion matrix (held-out split)", header_style="bold")
    table.add_column("true \\ pred", justify="right", style="bold")
    for pred in range(matrix.shape[1]):
        table.add_column(str(pred), justify="right")
    table.add_column("recall", justify="right", style="cyan")
    for true, row in enumerate(matrix):
        cells = [
            f"[bold green]{n}[/]" if pred == true else f"[red]{n}[/]" if n else "[dim]·[/]"
            for pred, n in enumerate(row)
        ]
        recall = row[true] / row.sum() if row.sum() else float("nan")
        table.add_row(str(true), *cells, f"{recall:.2f}")
    console.print(table)
    logged = "not logged" if result.logged is None else f"{result.logged:.4f}"
    verdict = "[green]equal[/]" if result.agrees else "[bold red]DIFFERENT[/]"
    console.print(f"[bold]run[/]                   {result.run_id}  {escape(run_name)}")
    console.print(
        f"[bold]accuracy (reloaded)[/]   {result.accuracy:.4f}  "
        f"({result.correct} of {result.total} test digits)"
    )
    console.print(f"[bold]{result.logged_name} (logged)[/] {logged}  {verdict}")


def digit(image: np.ndarray) -> Text:
    """A 0..16 image (rows, pixels) as shaded blocks, two characters per pixel."""
    text = Text()
    levels = np.round(np.clip(image / PIXEL_MAX, 0, 1) * (len(SHADES) - 1)).astype(int)
    for row in levels:
        text.append("".join(SHADES[v] * 2 for v in row), style="on grey11")
        text.append("\n")
    return text


def prediction(
    image: np.ndarray, probabilities: np.ndarray, label: int | None, source: str, run_id: str
) -> None:
    """The digit, the predicted class (and the true one if known), a probability bar per class."""
    predicted = int(np.argmax(probabilities))
    console.print(f"[bold]{escape(source)}[/] (8x8, 0..16) and the model of run {run_id}")
    console.print(digit(image))
    if label is not None:
        mark = "[green]correct[/]" if label == predicted else "[red]wrong[/]"
        console.print(f"[bold]true label[/]  {label}")
        console.print(f"[bold]predicted[/]   {predicted}  {mark}")
    else:
        console.print(f"[bold]predicted[/]   {predicted}")
    table = Table(header_style="bold", box=None)
    table.add_column("class", justify="right")
    table.add_column("probability", justify="right")
    table.add_column("")
    for k, p in enumerate(probabilities):
        style = "bold green" if k == predicted else ""
        bar = "█" * round(float(p) * BAR_WIDTH)
        table.add_row(str(k), f"{p:.4f}", f"[{style or 'blue'}]{bar}[/]", style=style)
    console.print(table)


def registered(version: Any, alias: str | None) -> None:
    """A model version just registered (tracking.registry.Version): how to use it."""
    console.print(f"[bold]registered[/]  {version.uri}  (run {version.run_id})")
    if alias:
        console.print(f"[bold]alias[/]       models:/{version.name}@{alias} -> {version.uri}")
    console.print(f"[bold]use it[/]      lstm-digits predict {version.uri} --index 0")


def ui_ready(url: str, experiment_id: str | None, serving: bool) -> None:
    """Where the UI is (and the experiment in it); how to stop it."""
    url = mask(url)
    if not serving:
        console.print(f"The tracking server serves its own UI: [bold]{url}[/]")
        return
    console.print(f"[bold]MLflow UI[/]   {url}")
    if experiment_id is not None:
        console.print(f"[bold]experiment[/]  {experiment_page(url, experiment_id)}")
    console.print("Press Ctrl-C to stop.")


# MLflow 3's UI opens in its GenAI view (traces, agents) unless the page asks for the
# Model-training one; a browser remembers only a choice made with the UI's own switch.
TRAINING_VIEW = "workflowType=machine_learning"


def experiment_page(url: str, experiment_id: str) -> str:
    """The experiment's training runs in the UI at `url`, in the Model-training view."""
    return f"{url}/#/experiments/{experiment_id}/runs?{TRAINING_VIEW}"


def ui_stopped() -> None:
    console.print("MLflow UI stopped.")
