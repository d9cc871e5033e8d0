"""What a run shows in the terminal (rich): the config, a progress bar, the final table.

The rule for every command: what it shows (progress included) goes to stdout, errors to
stderr. On a terminal, progress is a live bar; otherwise (a file, a pipe, CI, an sbatch log,
TERM=dumb) plain lines at a steady pace. NO_COLOR and FORCE_COLOR are rich's, respected.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.control import Control
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.segment import ControlType
from rich.table import Column, Table
from rich.text import Text

LIVE_ENV = "LSTM_DIGITS_SWEEP_LIVE"  # "1" in the jobs of a sweep whose live line is on
PLAIN_EVERY = 10  # plain progress lines: every 10th of the epochs ...
PLAIN_AT_LEAST_S = 30.0  # ... and at least this often
PIPED_WIDTH = 1000  # not a terminal: lines as wide as their data, tables not cut to 80
PRUNED = "PRUNED"  # a sweep's point's status in its summaries when pruning stopped it
BAR_WIDTH = 12  # the progress bar's columns: the rest of a line is for the numbers


def _width() -> int | None:
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return PIPED_WIDTH if piped else None  # None: the terminal's (or $COLUMNS)


console = Console(highlight=False, width=_width())
errors = Console(stderr=True, highlight=False)


def error(message: str) -> None:
    """The one line a user sees when something they asked for cannot be done."""
    errors.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def note(message: str) -> None:
    """One line about something the user should know that did not stop the command."""
    errors.print(f"[bold yellow]note:[/] {escape(message)}", soft_wrap=True)


def warning(message: str) -> None:
    """One line about a risk the user takes with what they asked for, which goes on."""
    errors.print(f"[bold yellow]warning:[/] {escape(message)}", soft_wrap=True)


def _as_typed(value: Any) -> str:
    """A value as users type it in an override: null, true, 0.001."""
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def show_config(params: dict[str, Any]) -> None:
    """The resolved config as a compact three-column grid of key=value."""
    grid = Table.grid(padding=(0, 3))
    cells = [f"[cyan]{k}[/]=[bold]{escape(_as_typed(v))}[/]" for k, v in params.items()]
    columns = 3 if console.width >= 120 else 2
    for _ in range(columns):
        grid.add_column(overflow="fold")
    for start in range(0, len(cells), columns):
        row = cells[start : start + columns]
        grid.add_row(*row, *[""] * (columns - len(row)))
    console.print("[bold]lstm-digits train[/] with", grid)


def _stats(m: Any) -> str:
    return (
        f"loss {m.train_loss:.4f}  acc {m.train_accuracy:.4f}  "
        f"val_loss {m.val_loss:.4f}  val_acc {m.val_accuracy:.4f}"
    )


def _plain_progress(epochs: int) -> Any:
    """`update(metrics)` printing a plain line every 10th of the epochs, at least every 30 s,
    and at the last epoch."""
    start = last = time.monotonic()
    every = max(1, epochs // PLAIN_EVERY)

    def update(m: Any) -> None:
        nonlocal last
        now = time.monotonic()
        if m.epoch % every and m.epoch != epochs and now - last < PLAIN_AT_LEAST_S:
            return
        last = now
        elapsed = time.strftime("%H:%M:%S", time.gmtime(now - start))
        width = len(str(epochs))
        console.print(f"epoch {m.epoch:>{width}}/{epochs}  {_stats(m)}  {elapsed}", markup=False)

    return update


@contextmanager
def epoch_progress(epochs: int) -> Iterator[Any]:
    """A live bar over epochs on a terminal, plain lines elsewhere; yields
    `update(metrics: EpochMetrics)`."""
    if not console.is_interactive:
        yield _plain_progress(epochs)
        return
    # The count and the time first, then the numbers, validation's first: the one column a
    # narrow terminal cuts (80 columns show the bar, 100/100, the time and val_acc, val_loss).
    whole = Column(no_wrap=True)
    progress = Progress(
        TextColumn("[bold]epoch"),
        BarColumn(bar_width=BAR_WIDTH),
        MofNCompleteColumn(table_column=whole),
        TimeElapsedColumn(table_column=whole),
        TextColumn(
            "{task.fields[stats]}",
            table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1),
        ),
        console=console,
        transient=False,
        expand=True,
    )
    with progress:
        task = progress.add_task("train", total=epochs, stats="")

        def update(m: Any) -> None:
            stats = (
                f"val_acc {m.val_accuracy:.4f}  val_loss {m.val_loss:.4f}  "
                f"acc {m.train_accuracy:.4f}  loss {m.train_loss:.4f}"
            )
            progress.update(task, completed=m.epoch, stats=stats)

        yield update


def accounting_note() -> None:
    """Once per SLURM sweep on a cluster without accounting (sacct answers nothing)."""
    console.print(
        "[dim]SLURM accounting is off: the sweep follows its jobs through their result files[/]"
    )


# Back to the start of the line the cursor is on, cleared (written to terminals only).
_CLEAR_LINE = Control(ControlType.CARRIAGE_RETURN, (ControlType.ERASE_IN_LINE, 2))


def shows_jobs() -> bool:
    """In a job sharing a sweep's terminal: whether the sweep's live line (`sweeps.live_line`)
    shows its start and end (then it prints neither). A job SLURM or submitit runs logs to its
    own file: never."""
    return os.environ.get(LIVE_ENV) == "1" and not os.environ.get("SUBMITIT_EXECUTOR")


def job_line(job: str, text: str) -> None:
    """One line per sweep job event, so parallel jobs never garble each other's output.

    On a terminal it first clears the line the cursor is on: a sweep's live line, which the
    main process draws there (see `live_line`), then reappears below it at its next redraw.
    Anywhere else the cursor is at the start of an empty line, and this changes nothing.
    """
    line = Text.from_markup(f"[bold]\\[job {job}][/] {text}")  # text may hold markup
    console.print(_CLEAR_LINE, line, sep="", soft_wrap=True)


@contextmanager
def live_line() -> Iterator[Callable[[str], None]]:
    """One line redrawn in place at the bottom of the terminal (a sweep's progress); yields
    `show(text)`, which redraws it. What this process prints meanwhile (stdout and stderr)
    appears above it; it stays printed as it was last shown. Cut to the terminal's width: a
    line that wrapped could not be cleared by another process's `job_line`."""
    from rich.live import Live

    with Live(console=console, auto_refresh=False, transient=False) as live:

        def show(text: str) -> None:
            live.update(Text(text, no_wrap=True, overflow="ellipsis"), refresh=True)

        yield show


def show_result(metrics: dict[str, float], run_id: str, uri: str, ui_command: str) -> None:
    """The end of a run: final metrics, where they are stored, and how to look at them."""
    table = Table(title="Final metrics", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}")
    console.print(table)
    console.print(f"[bold]run id[/]        {run_id}")
    console.print(f"[bold]tracking URI[/]  {uri}")
    console.print(f"[bold]open the UI[/]   {ui_command}")


def _number(value: float) -> str:
    return "—" if value != value else f"{value:.4f}"  # NaN: the job has no such metric


def show_sweep(
    rows: list[dict],
    groups: list[dict],
    parent_id: str,
    uri: str | None,
    mattered: Callable[[], None] | None = None,
) -> None:
    """The end of a sweep: every job by val accuracy (best starred; the validation split
    chooses, the test split is reported beside it), failures with their error; then what
    mattered (`mattered` prints it), and where the sweep is."""
    table = Table(title="Sweep results", header_style="bold")
    for name, justify in (
        ("", "left"),
        ("job", "right"),
        ("overrides", "left"),
        ("status", "left"),
        ("val_accuracy", "right"),
        ("test_accuracy", "right"),
        ("val_loss", "right"),
        ("run id", "left"),
    ):
        # the overrides fold in a narrow terminal (cut, `data.reading=` lost its value)
        wrap = {"overflow": "fold"} if name == "overrides" else {}
        table.add_column(name, justify=justify, **wrap)  # type: ignore[arg-type]
    for i, r in enumerate(rows):
        best = i == 0 and r["status"] == "FINISHED"
        colour = {"FINISHED": "green", PRUNED: "yellow"}.get(r["status"], "red")
        shown = r["status"]
        if r.get("pruned_at_epoch"):
            shown += f" @{r['pruned_at_epoch']}"
        table.add_row(
            "★" if best else "",
            str(r["job"]),
            escape(r["overrides"]),
            f"[{colour}]{shown}[/]",
            _number(r["val_accuracy"]),
            _number(r["test_accuracy"]),
            _number(r["val_loss"]),
            r["run_id"][:12],
        )
    console.print(table)
    if groups:
        seeds = Table(title="Across seeds", header_style="bold")
        for name in ("config", "seeds", "n", "val_accuracy mean ± std"):
            seeds.add_column(name)
        for g in groups:
            spread = f"{g['val_accuracy_mean']:.4f} ± {g['val_accuracy_std']:.4f}"
            seeds.add_row(escape(g["config"]), g["seeds"], str(g["n"]), spread)
        console.print(seeds)
    pruned = sum(r["status"] == PRUNED for r in rows)
    if pruned:
        console.print(f"{pruned} of {len(rows)} points pruned (@k: stopped after epoch k)")
    for r in rows:
        if r["status"] not in ("FINISHED", PRUNED):
            console.print(f"[red]job {r['job']} {r['status']}[/]: {escape(r['error'] or '?')}")
    if mattered is not None:
        mattered()
    console.print(f"[bold]parent run[/]    {parent_id}")
    console.print(f"[bold]tracking URI[/]  {uri}")


def show_importance(result: Any, effects: list[dict]) -> None:
    """What mattered in a sweep (`sweeps.importance.Importance` and its marginal effects): each
    key's importance for the validation number, the seed's row as the noise floor, or the one
    line that says why there is none; then each key's values' mean ± std."""
    metric = result.metric
    if result.reason:
        console.print(escape(result.reason))
    else:
        table = Table(title=f"What mattered for {metric}", header_style="bold")
        for name, justify in (("key", "left"), ("importance", "right"), ("± std", "right")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        table.add_column("")
        for r in result.rows:
            table.add_row(
                escape(r["key"]),
                f"{r['importance']:.4f}",
                f"{r['std']:.4f}",
                r["role"],
                style="dim" if r["role"] else "",
            )
        console.print(table)
        left = ", ".join(f"{n} {why}" for why, n in sorted(result.left_out.items()))
        console.print(
            f"importance: the mean drop in R² of a random forest fitted to {result.points} "
            f"finished points (R² {result.fit_r2:.2f}) when the key's values are shuffled"
            + (f"; left out: {left}" if left else "")
        )
    if effects:
        table = Table(title=f"Marginal effects on {metric}", header_style="bold")
        for name in ("key", "value", "n", f"{metric} mean ± std"):
            table.add_column(name)
        for e in effects:
            spread = f"{e[f'{metric}_mean']:.4f} ± {e[f'{metric}_std']:.4f}"
            table.add_row(escape(e["key"]), escape(str(e["value"])), str(e["n"]), spread)
        console.print(table)
