"""Figures logged with runs (matplotlib, no display needed).

A run's four fixed-layout figures are kept per process and refilled by the next run (a sweep
worker's or a packed SLURM job's): their axes, ticks and texts are made once, and the same
data gives the same pixels as a new figure (tests/test_figures.py compares them). Making
them new took 0.25-0.4 s of every run, most of it axes and ticks. `close` leaves them open.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lstm_cli.runtime import worker_cache

_SUBPLOT_PARAMS = ("left", "right", "bottom", "top", "wspace", "hspace")


def _kept_figure(kind: str, key: Hashable, make: Callable[[], tuple[Figure, Any]]):
    """The figure of `kind` kept in this process and its parts (axes, artists to refill),
    made by `make` if there is none or its layout `key` differs (the old one is closed)."""
    entry = worker_cache.get(f"figure:{kind}", key)
    if entry is None:
        entry = worker_cache.put(f"figure:{kind}", make(), key, close=lambda e: plt.close(e[0]))
    return entry


def close(fig: Figure) -> None:
    """Done with `fig`: closed, unless it is kept for the next run."""
    if not any(fig is kept for kept, _ in worker_cache.kept("figure:")):
        plt.close(fig)


def close_kept() -> None:
    """Close the kept figures: the next run makes new ones."""
    worker_cache.reset("figure:")


def _tight(fig: Figure) -> None:
    """`tight_layout` from matplotlib's default subplot parameters (as a new figure has them,
    so a refilled one lays out alike), then no layout engine: matplotlib keeps a placeholder
    one after it, and `savefig` then draws the whole figure once more (0.09 s of a run)."""
    fig.subplots_adjust(**{k: matplotlib.rcParams[f"figure.subplot.{k}"] for k in _SUBPLOT_PARAMS})
    fig.tight_layout()
    fig.set_layout_engine(None)


def _rescale(*axes: Any) -> None:
    """Data limits and autoscaled view limits from the artists' new data."""
    for ax in axes:
        ax.relim()
        ax.autoscale_view()


def learning_curves(history: Sequence[dict[str, float]]) -> Figure:
    """Accuracy and val accuracy per epoch (as the article's plot), and the two losses."""

    def make() -> tuple[Figure, Any]:
        fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(10, 4))
        lines = [acc_ax.plot([], [], label=name)[0] for name in ("acc", "val_acc")]
        acc_ax.set(ylim=(0.0, 1.0), xlabel="epoch", ylabel="accuracy", title="Accuracy")
        acc_ax.legend()
        lines += [loss_ax.plot([], [], label=name)[0] for name in ("loss", "val_loss")]
        loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
        loss_ax.legend()
        return fig, (acc_ax, loss_ax, lines)

    keys = ("train_accuracy", "val_accuracy", "train_loss", "val_loss")
    curves = np.array([[h[key] for key in keys] for h in history], dtype=float).reshape(-1, 4)
    # A panel without a finite value (a diverged run's losses) keeps the view limits it had:
    # a new one has matplotlib's defaults, so that panel's state is part of the layout.
    drawn = tuple(bool(np.isfinite(curves[:, k : k + 2]).any()) for k in (0, 2))
    fig, (acc_ax, loss_ax, lines) = _kept_figure("learning_curves", drawn, make)
    epochs = np.arange(1, len(history) + 1)
    for line, values in zip(lines, curves.T, strict=True):  # values: (epochs,)
        line.set_data(epochs, values)
    _rescale(acc_ax, loss_ax)
    _tight(fig)
    return fig


def confusion_matrix(
    matrix: np.ndarray, title: str = "Confusion matrix (held-out split)"
) -> Figure:
    """A counts heatmap, true classes down, predicted classes across."""
    n = matrix.shape[0]

    def make() -> tuple[Figure, Any]:
        fig, ax = plt.subplots(figsize=(6, 5.5))
        image = ax.imshow(matrix, cmap="Blues")
        fig.colorbar(image, ax=ax)
        ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title=title)
        counts = [
            [ax.text(pred, true, "", ha="center", va="center") for pred in range(n)]
            for true in range(n)
        ]
        return fig, (image, counts)

    fig, (image, counts) = _kept_figure("confusion_matrix", (n, title), make)
    image.set_data(matrix)
    image.autoscale()  # the colour scale from the counts, as a new image takes it
    threshold = matrix.max() / 2
    for true in range(n):
        for pred in range(n):
            count = counts[true][pred]
            count.set_text(int(matrix[true, pred]))
            count.set_color("white" if matrix[true, pred] > threshold else "black")
    _tight(fig)
    return fig


def _job_label(job: int, overrides: str, width: int = 36) -> str:
    """`#job key=value ...` for a plot: floats to 3 significant digits (a search's
    learning_rate=0.00037054191817781617 reads 0.000371), wrapped to `width` characters."""

    def short(override: str) -> str:
        key, _, value = override.partition("=")
        try:
            return f"{key}={float(value):.3g}" if "." in value else override
        except ValueError:
            return override

    text = f"#{job} " + " ".join(short(o) for o in overrides.split())
    return textwrap.fill(text, width, break_on_hyphens=False)


def sweep_comparison(records: Sequence[dict], labels: dict[str, str]) -> Figure:
    """Final val accuracy per job (left) and every job's val accuracy curve overlaid (right).

    `labels` names each job by run id (its swept overrides).
    """
    done = sorted(
        (r for r in records if r["status"] == "FINISHED"),
        key=lambda r: r["metrics"]["val_accuracy"],
    )
    names = [_job_label(r["job"], labels[r["run_id"]]) for r in done]
    lines = sum(name.count("\n") + 1 for name in names)
    fig, (bar_ax, curve_ax) = plt.subplots(
        1, 2, figsize=(13, max(4.0, 0.3 * lines + 1.5)), gridspec_kw={"width_ratios": [1, 1.3]}
    )
    bar_ax.barh(names, [r["metrics"]["val_accuracy"] for r in done], color="tab:blue")
    bar_ax.set(xlim=(0.0, 1.0), xlabel="final val accuracy", title="Final val accuracy per job")
    for r in records:
        if r["curve"]:
            epochs = np.arange(1, len(r["curve"]) + 1)
            style = "-" if r["status"] == "FINISHED" else ":"
            name = _job_label(r["job"], labels[r["run_id"]], width=1000)
            short = name if len(name) <= 40 else f"#{r['job']}"  # long: the bars name it
            curve_ax.plot(epochs, r["curve"], style, label=short)
    curve_ax.set(ylim=(0.0, 1.0), xlabel="epoch", ylabel="val accuracy", title="Learning curves")
    if 0 < len(curve_ax.lines) <= 20:
        curve_ax.legend(fontsize="small", ncol=2)
    _tight(fig)
    return fig


LEGEND_CHARS = 64  # a run's legend entry is cut to this (names are overrides, some long)


def compared_curves(
    curves: Sequence[dict[str, Sequence[tuple[int, float]]]], labels: Sequence[str]
) -> Figure:
    """Runs' val accuracy (left) and val loss (right) per epoch, one line per run.

    Args:
        curves: per run, `val_accuracy` and `val_loss` as (epoch, value) pairs.
        labels: per run, its legend entry (short id and name).
    """
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    for curve, label in zip(curves, labels, strict=True):
        for ax, name in ((acc_ax, "val_accuracy"), (loss_ax, "val_loss")):
            points = np.array(curve.get(name, ()), dtype=float).reshape(-1, 2)  # (epochs, 2)
            ax.plot(points[:, 0], points[:, 1], "o-" if len(points) < 3 else "-", label=label)
    acc_ax.set(ylim=(0.0, 1.0), xlabel="epoch", ylabel="val accuracy", title="Val accuracy")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="Val loss")
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
    # Labels are long (a run's name is its overrides): one legend, below the panels.
    handles, names = acc_ax.get_legend_handles_labels()
    names = [n if len(n) <= LEGEND_CHARS else f"{n[: LEGEND_CHARS - 1]}…" for n in names]
    fig.legend(handles, names, loc="lower center", ncol=min(2, len(names)), fontsize="small")
    _tight(fig)
    fig.subplots_adjust(bottom=0.14 + 0.05 * ((len(names) + 1) // 2))
    return fig


def seed_summary(groups: Sequence[dict]) -> Figure:
    """Mean final val accuracy per configuration across seeds, with ±1 std error bars."""
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.45 * len(groups) + 1.5)))
    names = [f"{g['config']} (n={g['n']})" for g in groups][::-1]
    means = [g["val_accuracy_mean"] for g in groups][::-1]
    stds = [g["val_accuracy_std"] for g in groups][::-1]
    ax.barh(names, means, xerr=stds, capsize=4, color="tab:green")
    ax.set(
        xlim=(0.0, 1.0),
        xlabel="final val accuracy (mean ± std over seeds)",
        title="Configurations across seeds",
    )
    _tight(fig)
    return fig


def importance_bars(rows: Sequence[dict], metric: str, points: int) -> Figure:
    """Each swept key's importance for `metric` (mean ± std over the shuffles), most important
    on top; the seed's, the noise floor, as a dashed line and a grey bar.

    Args:
        rows: key, importance, std, floor (the seed's row), as `sweeps.importance` gives them.
        metric: the number explained (the validation split's).
        points: how many points the forest was fitted to.
    """
    shown = list(rows)[::-1]  # barh draws bottom up
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.5 * len(shown) + 1.6)))
    colours = ["tab:gray" if r["floor"] else "tab:blue" for r in shown]
    names = [f"{r['key']} (floor)" if r["floor"] else r["key"] for r in shown]
    values = [r["importance"] for r in shown]
    ax.barh(names, values, xerr=[r["std"] for r in shown], capsize=4, color=colours)
    floor = next((r["importance"] for r in shown if r["floor"]), None)
    if floor is not None:
        ax.axvline(floor, color="tab:red", linestyle="--", label="seed: the noise floor")
        ax.legend(loc="lower right", fontsize="small")
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set(
        xlabel=f"importance for {metric}: mean drop in R² when the key is shuffled",
        title=f"What mattered ({points} finished points)",
    )
    _tight(fig)
    return fig


def _numeric(values: Sequence[Any]) -> bool:
    try:
        [float(v) for v in values]
    except ValueError:
        return False
    return True


def marginal_effects(effects: Sequence[dict], metric: str) -> Figure:
    """One panel per swept key: the mean of `metric` at each of its values, ± its std, with how
    many points each mean has (n, under the value).

    Args:
        effects: key, value, n, `<metric>_mean`, `<metric>_std`, as `sweeps.importance` gives
            them, a key's values in order.
        metric: the number shown (the validation split's).
    """
    keys = list(dict.fromkeys(e["key"] for e in effects))
    widths = [max(2.6, 0.55 * sum(e["key"] == k for e in effects)) for k in keys]
    fig, axes = plt.subplots(
        1,
        len(keys),
        figsize=(min(sum(widths) + 1.0, 18.0), 4.2),
        squeeze=False,
        sharey=True,
        gridspec_kw={"width_ratios": widths},
    )
    for ax, key in zip(axes[0], keys, strict=True):
        mine = [e for e in effects if e["key"] == key]
        x = np.arange(len(mine))
        means = [e[f"{metric}_mean"] for e in mine]
        style = "o-" if _numeric([e["value"] for e in mine]) else "o"  # a line: an order
        ax.errorbar(x, means, yerr=[e[f"{metric}_std"] for e in mine], fmt=style, capsize=4)
        names = [f"{e['value']}\n(n={e['n']})" for e in mine]
        many = len(mine) > 4
        ax.set_xticks(x, names, rotation=45 if many else 0, ha="right" if many else "center")
        ax.set(xlabel=key, xlim=(-0.5, len(mine) - 0.5))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"{metric} (mean ± std)")
    fig.suptitle("Marginal effects: each key's values, the other keys' averaged over")
    _tight(fig)
    return fig


def accuracy_per_cell(rows: Sequence[dict], metric: str, panels: Sequence[str]) -> Figure:
    """One panel per reading: each cell's mean `metric` over its seeds, ± the std, the cell
    its panel chose (on validation) starred.

    Args:
        rows: cell, reading, mean, std, n, chosen (bool), the cells in the order to draw.
        metric: what the bars are, for the axis (a test number: say so).
        panels: the readings, a panel each, in order.
    """
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.2 * len(panels), 0.42 * len(cells) + 1.8), sharey=True
    )
    for ax, reading in zip(np.atleast_1d(axes), panels, strict=True):
        by = {r["cell"]: r for r in rows if r["reading"] == reading}
        shown = cells[::-1]  # barh draws bottom up
        means = [by[c]["mean"] if c in by else 0.0 for c in shown]
        stds = [by[c]["std"] if c in by else 0.0 for c in shown]
        colours = ["tab:orange" if c in by and by[c]["chosen"] else "tab:blue" for c in shown]
        ax.barh(shown, means, xerr=stds, capsize=3, color=colours)
        for y, c in enumerate(shown):
            if c in by:  # inside a long bar, else beyond its error bar
                r = by[c]
                text = f"{r['mean']:.3f} ± {r['std']:.3f}{' ★' if r['chosen'] else ''}"
                inside = r["mean"] > 0.4
                x, colour = (0.02, "white") if inside else (r["mean"] + r["std"] + 0.02, "black")
                ax.text(x, y, text, va="center", fontsize=8, color=colour)
        ax.set(xlim=(0.0, 1.0), xlabel=metric, title=f"data.reading={reading}")
        ax.grid(axis="x", alpha=0.3)
    _tight(fig)
    return fig


def curve_bands(panels: dict[str, dict[str, Sequence[Sequence[float]]]]) -> Figure:
    """Per-epoch curves of a few configurations over their seeds: one panel per metric, a line
    per configuration (the seeds' mean) in a band (their min to max).

    Args:
        panels: metric -> configuration -> one curve per seed (values of epochs 1..n).
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (metric, curves) in zip(axes[0], panels.items(), strict=True):
        for name, seeds in curves.items():
            length = min(len(c) for c in seeds)
            values = np.array([c[:length] for c in seeds], dtype=float)  # (seeds, epochs)
            epochs = np.arange(1, length + 1)
            (line,) = ax.plot(epochs, values.mean(axis=0), label=f"{name} ({len(seeds)} seeds)")
            ax.fill_between(
                epochs, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2
            )
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    _tight(fig)
    return fig


# ---------------------------------------------------------------- what the LSTM learned


def accuracy_by_step(accuracy: Sequence[float]) -> Figure:
    """Held-out accuracy when the head reads h after only the first k steps of each image (a
    row, a column or a pixel each, by the reading)."""
    steps = np.arange(1, len(accuracy) + 1)
    few = len(steps) <= 16  # each point labelled; 64 steps are a curve

    def make() -> tuple[Figure, Any]:
        fig, ax = plt.subplots(figsize=(6, 4))
        (line,) = ax.plot([], [], "o-" if few else "-")
        notes = [
            ax.annotate("", (k, 0.0), textcoords="offset points", xytext=(0, 6), ha="center")
            for k in (steps if few else [])
        ]
        ticks = steps if few else np.arange(8, len(steps) + 1, 8)
        ax.set(xticks=ticks, ylim=(0.0, 1.05), xlabel="steps read (k)", ylabel="accuracy")
        ax.set_title("How early the network knows the digit")
        ax.grid(alpha=0.3)
        return fig, (ax, line, notes)

    fig, (ax, line, notes) = _kept_figure("accuracy_by_step", len(steps), make)
    line.set_data(steps, accuracy)
    for note, k, a in zip(notes, steps, accuracy, strict=False):
        note.xy = (k, a)
        note.set_text(f"{a:.2f}")
    _rescale(ax)
    _tight(fig)
    return fig


def gate_heatmaps(
    images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, states: dict[str, np.ndarray]
) -> Figure:
    """Per digit: the image beside its cell's gates (and an LSTM's cell state c) over the steps
    (a row, a column or a pixel each, by the reading).

    Args:
        images: (examples, 8, 8) the digits.
        labels: (examples,) true classes.
        predicted: (examples,) predicted classes.
        states: the cell's gates ("i", "f", "o"; "u", "r") and "c" -> (examples, steps, hidden).
    """
    names = list(states)
    c_max = float(np.abs(states["c"]).max()) if "c" in states else 1.0
    c_max = c_max or 1.0  # a symmetric colour scale for c

    def scale(name: str) -> dict[str, Any]:
        gate = name != "c"  # gates are in [0, 1]; the cell state is signed and unbounded
        return {
            "cmap": "viridis" if gate else "RdBu_r",
            "vmin": 0.0 if gate else -c_max,
            "vmax": 1.0 if gate else c_max,
        }

    def make() -> tuple[Figure, Any]:
        fig, axes = plt.subplots(
            len(images),
            1 + len(names),
            figsize=(2.2 * (1 + len(names)), 2.0 * len(images)),
            squeeze=False,
            gridspec_kw={"width_ratios": [1] + [2] * len(names)},
        )
        for row, image in enumerate(images):
            axes[row, 0].imshow(image, cmap="gray", vmin=0)
            for col, name in enumerate(names, start=1):
                axes[row, col].imshow(states[name][row], aspect="auto", **scale(name))
                if row == 0 and name != "c":
                    axes[row, col].set_title(name, fontsize=10)
            for ax in axes[row]:
                ax.set(xticks=[], yticks=[])
            axes[row, 1].set_ylabel("step")
        axes[-1, 1].set_xlabel("hidden unit")
        fig.suptitle("Gates (0 to 1) and cell state over the steps", fontsize=11)
        fig.subplots_adjust(left=0.05, right=0.98, bottom=0.06, top=0.88, wspace=0.15, hspace=0.4)
        return fig, axes

    layout = (images.shape, tuple((name, states[name].shape) for name in names))
    fig, axes = _kept_figure("gate_heatmaps", layout, make)
    for row, image in enumerate(images):
        digit = axes[row, 0].images[0]
        digit.set_data(image)
        digit.set_clim(0, image.max())  # as imshow(vmin=0), which takes the top from the image
        axes[row, 0].set_title(f"true {labels[row]}, pred {predicted[row]}", fontsize=9)
        for col, name in enumerate(names, start=1):
            shown, colours = axes[row, col].images[0], scale(name)  # shown: (steps, hidden)
            shown.set_data(states[name][row])
            shown.set_clim(colours["vmin"], colours["vmax"])
    if "c" in names:
        axes[0, 1 + names.index("c")].set_title(f"c (±{c_max:.2g})", fontsize=10)
    return fig


def misclassified(
    images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, total: int, limit: int = 40
) -> Figure:
    """A grid of held-out digits the model gets wrong, each labelled true→predicted.

    The grid is one mosaic image on one axes: a figure with an axes per digit costs more to
    lay out and draw than the rest of a run's figures together.

    Args:
        images: (m, rows, pixels) the misclassified digits.
        labels: (m,) their true classes.
        predicted: (m,) the classes predicted.
        total: the size of the held-out split (for the title).
        limit: at most this many digits are drawn.
    """
    shown = min(len(images), limit)
    cols = min(10, max(shown, 1))
    grid_rows = max(1, -(-shown // cols))
    height, width = images.shape[1:] if len(images) else (8, 8)
    cell_h, cell_w = height + 3, width + 1  # a gap beside each digit and room for its label
    mosaic = np.full((grid_rows * cell_h, cols * cell_w), np.nan)  # (grid rows*cell, cols*cell)
    fig, ax = plt.subplots(figsize=(0.75 * cols + 0.4, 1.0 * grid_rows + 0.7))
    for k in range(shown):
        top, left = (k // cols) * cell_h + 2, (k % cols) * cell_w
        mosaic[top : top + height, left : left + width] = images[k]
        ax.text(
            left + width / 2 - 0.5,
            top - 1.2,
            f"{labels[k]}→{predicted[k]}",
            ha="center",
            va="center",
            fontsize=8,
            color="tab:red",
        )
    ax.imshow(np.ma.masked_invalid(mosaic), cmap="gray", vmin=0, interpolation="nearest")
    ax.set_facecolor("white")
    ax.axis("off")
    more = f", first {shown} shown" if shown < len(images) else ""
    ax.set_title(f"Misclassified: {len(images)} of {total} held-out digits{more}", fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.9)
    return fig
