"""A run's figures: one kept per process and refilled draws what a new one draws."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib._pylab_helpers import Gcf
from PIL import Image

from lstm_cli.tracking.run_handle import FIGURE_SAVE
from lstm_cli.views import figures


def makers(seed: int, epochs: int, scale: float) -> dict:
    """Each kept figure, made from data that differs with the arguments (lengths, ranges)."""
    rng = np.random.default_rng(seed)
    accuracy = np.linspace(0.1 * seed, 0.99, epochs)
    history = [
        {
            "train_accuracy": a,
            "val_accuracy": a - 0.01 * seed,
            "train_loss": scale * (1 - a),
            "val_loss": scale * (1.1 - a),
        }
        for a in accuracy
    ]
    matrix = rng.integers(0, int(40 * scale), (10, 10))
    states = {name: rng.random((4, 8, 20)) * (scale if name == "c" else 1.0) for name in "ifoc"}
    images = rng.random((4, 8, 8)) * 8 * scale
    return {
        "learning_curves": lambda: figures.learning_curves(history),
        "confusion_matrix": lambda: figures.confusion_matrix(matrix),
        "accuracy_by_step": lambda: figures.accuracy_by_step(np.sort(rng.random(8))),
        "gate_heatmaps": lambda: figures.gate_heatmaps(
            images, np.arange(4), np.arange(4) + seed, states
        ),
    }


def is_open(fig) -> bool:
    """Whether pyplot still holds `fig` (figure numbers are reused, so not by number)."""
    return any(manager.canvas.figure is fig for manager in Gcf.get_all_fig_managers())


def pixels(fig) -> np.ndarray:
    """The figure as a run logs it, decoded: (height, width, 4)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **FIGURE_SAVE)
    figures.close(fig)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())))


@pytest.fixture(autouse=True)
def no_kept_figures():
    figures.close_kept()
    yield
    figures.close_kept()


@pytest.mark.parametrize("kind", list(makers(1, 3, 1.0)))
def test_a_refilled_figure_draws_what_a_new_one_draws(kind):
    new = pixels(makers(3, 25, 7.3)[kind]())
    figures.close_kept()
    pixels(makers(1, 15, 1.0)[kind]())  # kept with other data, other ranges
    refilled = pixels(makers(3, 25, 7.3)[kind]())
    assert refilled.shape == new.shape
    assert np.array_equal(refilled, new)


def test_kept_figures_stay_open_until_released():
    made = [make() for make in makers(1, 5, 1.0).values()]
    for fig in made:
        figures.close(fig)
    assert all(is_open(fig) for fig in made)  # kept for the next run
    again = [make() for make in makers(2, 5, 1.0).values()]
    assert [id(fig) for fig in again] == [id(fig) for fig in made]
    figures.close_kept()
    assert not any(is_open(fig) for fig in made)


def test_a_new_layout_replaces_the_kept_figure():
    old = figures.accuracy_by_step([0.5] * 8)
    new = figures.accuracy_by_step([0.5] * 6)  # 6 rows: other axes
    assert new is not old
    assert not is_open(old) and is_open(new)
    assert len(new.axes[0].lines[0].get_xdata()) == 6


def test_a_diverged_runs_curves_draw_what_a_new_figure_draws():
    """Losses that are never finite leave a panel without data: its limits are matplotlib's
    defaults in a new figure, not the last run's."""
    normal = [{"train_accuracy": 0.5, "val_accuracy": 0.4, "train_loss": 9.0, "val_loss": 8.0}] * 3
    diverged = [h | {"train_loss": float("nan"), "val_loss": float("inf")} for h in normal]
    for first, then in ((normal, diverged), (diverged, normal)):
        figures.close_kept()
        new = pixels(figures.learning_curves(then))
        figures.close_kept()
        pixels(figures.learning_curves(first))
        assert np.array_equal(pixels(figures.learning_curves(then)), new)


def test_accuracy_per_cell_draws_a_panel_per_reading_with_the_chosen_starred():
    rows = [
        {"cell": c, "reading": r, "mean": m, "std": 0.01, "n": 3, "chosen": chosen}
        for c, r, m, chosen in [
            ("lstm", "rows", 0.97, True),
            ("rnn", "rows", 0.90, False),
            ("lstm", "pixels", 0.85, False),
            ("rnn", "pixels", 0.30, False),
            ("gru", "pixels", 0.88, True),
        ]
    ]
    fig = figures.accuracy_per_cell(rows, "test accuracy", ("rows", "pixels"))
    left, right = fig.axes
    assert (left.get_title(), right.get_title()) == ("data.reading=rows", "data.reading=pixels")
    fig.canvas.draw()
    shown = [t.get_text() for t in left.get_yticklabels()]
    assert shown == ["gru", "rnn", "lstm"]  # bottom up: top down, the cells as first given
    texts = [t.get_text() for t in right.texts]
    assert "0.880 ± 0.010 ★" in texts and "0.300 ± 0.010" in texts
    assert left.patches[0].get_width() == 0.0  # gru has no rows run: no bar
    figures.close(fig)


def test_curve_bands_draw_each_configurations_mean_over_its_seeds():
    panels = {"val_accuracy": {"lstm": [[0.2, 0.6, 0.8], [0.4, 0.8, 0.9]], "rnn": [[0.1, 0.2]]}}
    fig = figures.curve_bands(panels)
    (ax,) = fig.axes
    lstm, rnn = ax.get_lines()
    assert list(lstm.get_ydata()) == pytest.approx([0.3, 0.7, 0.85])
    assert list(rnn.get_xdata()) == [1, 2]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "lstm (2 seeds)",
        "rnn (1 seeds)",
    ]
    figures.close(fig)
