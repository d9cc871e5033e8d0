"""What the LSTM learned: accuracy after k rows, gate traces, mistakes, and their figures."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from lstm_cli.networks import insight
from lstm_cli.networks.model import DigitsRNN
from lstm_cli.networks.serving import predict_proba
from lstm_cli.views import figures
from tests.helpers import held_out, numpy_lstm


@pytest.fixture(scope="module")
def digits(defaults):
    return held_out(defaults, scaling="unit")


@pytest.fixture(scope="module")
def model():
    return DigitsRNN(
        8, 10, hidden_size=12, cell="lstm", init="glorot", output_activation="tanh", seed=3
    ).build()


@pytest.fixture(scope="module")
def seen(model, digits):
    return insight.analyse(model, digits.x_val, digits.y_val)


def test_accuracy_after_k_rows_is_the_model_reading_only_k_rows(model, digits, seen):
    assert seen.accuracy_by_step.shape == (digits.steps,)
    for k in range(1, digits.steps + 1):
        first_rows = predict_proba(model, digits.x_val[:, :k]).argmax(axis=1)  # an 8-row model
        expected = np.mean(first_rows == digits.y_val)  # on a k-row image: what it knows so far
        assert seen.accuracy_by_step[k - 1] == pytest.approx(expected, abs=1e-9)


def test_predictions_and_mistakes_are_the_models(model, digits, seen):
    predicted = predict_proba(model, digits.x_val).argmax(axis=1)
    np.testing.assert_array_equal(seen.predicted, predicted)
    np.testing.assert_array_equal(seen.misclassified, np.flatnonzero(predicted != digits.y_val))
    assert seen.accuracy_by_step[-1] == pytest.approx(np.mean(predicted == digits.y_val))


def test_states_are_the_gates_of_digits_of_different_classes(model, digits, seen):
    picks = seen.examples
    np.testing.assert_array_equal(picks, insight.first_of_each_class(digits.y_val, len(picks)))
    assert len(picks) == insight.EXAMPLES
    assert len(set(digits.y_val[picks])) == len(picks)
    w = model.get_weights()
    # The NumPy reference's states, each (steps, examples, hidden).
    expected = numpy_lstm(digits.x_val[picks], w["W"], w["B"], model.cell)
    for name in model.layers[0].shown:
        assert seen.states[name].shape == (len(picks), digits.steps, 12)
        np.testing.assert_allclose(
            seen.states[name], np.transpose(expected[name], (1, 0, 2)), atol=1e-5
        )


def test_summary_is_json_ready(seen, digits):
    summary = json.loads(json.dumps(seen.as_dict()))
    assert summary == seen.as_dict()  # the round trip loses nothing
    assert summary["steps_read"] == list(range(1, digits.steps + 1))
    assert summary["accuracy_by_step"] == seen.accuracy_by_step.tolist()
    assert summary["misclassified"] == seen.misclassified.tolist()
    assert summary["misclassified_as"] == seen.predicted[seen.misclassified].tolist()


def png_bytes(fig) -> int:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    figures.close(fig)
    return len(buffer.getvalue())


def test_figures_draw_every_panel(seen, digits):
    picks, wrong = seen.examples, seen.misclassified
    accuracy = figures.accuracy_by_step(seen.accuracy_by_step)
    assert len(accuracy.axes[0].lines[0].get_xdata()) == digits.steps
    gates = figures.gate_heatmaps(
        digits.x_val[picks], digits.y_val[picks], seen.predicted[picks], seen.states
    )
    assert len(gates.axes) == len(picks) * (1 + len(seen.states))
    grid = figures.misclassified(
        digits.x_val[wrong], digits.y_val[wrong], seen.predicted[wrong], len(digits.y_val)
    )
    assert len(grid.axes[0].texts) == min(len(wrong), 40)
    assert f"{len(wrong)} of {len(digits.y_val)}" in grid.axes[0].get_title()
    for fig in (accuracy, gates, grid):
        assert png_bytes(fig) > 5_000


def test_no_mistakes_still_draws_a_figure():
    empty = np.zeros((0, 8, 8), np.float32)
    grid = figures.misclassified(empty, np.zeros(0, int), np.zeros(0, int), total=360)
    assert "0 of 360" in grid.axes[0].get_title()
    assert png_bytes(grid) > 1_000


@pytest.mark.slow
def test_every_run_logs_what_the_lstm_learned(trained_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(trained_run.uri)
    run = client.get_run(trained_run.run_id)
    history = sorted(
        client.get_metric_history(trained_run.run_id, "test_accuracy_by_step"), key=lambda m: m.step
    )
    assert [m.step for m in history] == list(range(1, 9))
    assert history[-1].value == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-6)
    artifacts = {a.path for a in client.list_artifacts(trained_run.run_id)}
    assert {"accuracy_by_step.png", "gates.png", "misclassified.png", "insight.json"} <= artifacts
    summary = json.loads(
        Path(client.download_artifacts(trained_run.run_id, "insight.json")).read_text()
    )
    assert summary["accuracy_by_step"] == pytest.approx([m.value for m in history])
    wrong = round((1 - run.data.metrics["test_accuracy"]) * 360)
    assert len(summary["misclassified"]) == wrong
