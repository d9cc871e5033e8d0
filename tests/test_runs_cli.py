"""`runs`, `evaluate` and `predict` through the console script, on the session's trained store."""

from __future__ import annotations

import re

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from lstm_cli.data.digits import read_digit_image
from lstm_cli.runtime.errors import UserError
from tests.helpers import EXPERIMENT, assert_one_line_error, held_out, run_cli, sqlite_uri


@pytest.fixture(scope="module")
def raw(defaults):
    """The held-out split the trained run used, as raw 0..16 images (what the model takes)."""
    return held_out(defaults, scaling="raw")


def save_digit(image: np.ndarray, path, dark_on_light: bool, scale: int = 12) -> None:
    """A 0..16 digit drawn large, off-centre on a wide canvas, as someone's PNG would be."""
    big = np.kron(image, np.ones((scale, scale)))  # (8*scale, 8*scale)
    canvas = np.zeros((8 * scale + 40, 8 * scale + 90))
    canvas[25 : 25 + 8 * scale, 60 : 60 + 8 * scale] = big
    ink = canvas / 16 * 255
    Image.fromarray((255 - ink if dark_on_light else ink).astype(np.uint8)).save(path)


# ---------------------------------------------------------------- image conversion (fast)


@pytest.mark.parametrize("dark_on_light", [True, False])
def test_an_image_becomes_a_digit_of_the_dataset(tmp_path, dark_on_light, raw):
    digit = raw.x_val[17]
    save_digit(digit, tmp_path / "digit.png", dark_on_light)
    converted = read_digit_image(tmp_path / "digit.png", (8, 8))
    assert converted.shape == (8, 8) and converted.min() == 0 and converted.max() == 16
    assert np.all(converted == np.round(converted))
    # cropped to the ink and re-centred: the same shape of ink, close to the original pixels
    assert np.corrcoef(converted.ravel(), digit.ravel())[0, 1] > 0.8


def test_a_blank_or_unreadable_image_is_a_user_error(tmp_path):
    Image.new("L", (40, 40), 255).save(tmp_path / "blank.png")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(UserError, match="no ink"):
        read_digit_image(tmp_path / "blank.png", (8, 8))
    with pytest.raises(UserError, match="not an image"):
        read_digit_image(tmp_path / "notes.txt", (8, 8))
    with pytest.raises(UserError, match="No such file"):
        read_digit_image(tmp_path / "missing.png", (8, 8))


# ---------------------------------------------------------------- the console script


@pytest.mark.slow
def test_runs_lists_the_run_with_its_params_and_final_metrics(trained_run):
    run = MlflowClient(trained_run.uri).get_run(trained_run.run_id)
    result = run_cli("runs", "--tracking-uri", trained_run.uri, cwd=trained_run.workdir)
    assert result.returncode == 0, result.stderr
    (row,) = [line for line in result.stdout.splitlines() if "FINISHED" in line]
    assert trained_run.run_id[:8] in row and " 16 " in row  # hidden_size
    assert f"{run.data.metrics['val_accuracy']:.4f}" in row
    assert f"{run.data.metrics['val_loss']:.4f}" in row


@pytest.mark.slow
def test_runs_best_sorted_and_limited_names_the_best_run(trained_run):
    result = run_cli(
        "runs",
        "--best",
        "--sort",
        "val_accuracy",
        "--limit",
        "1",
        "--tracking-uri",
        trained_run.uri,
        cwd=trained_run.workdir,
    )
    assert result.returncode == 0, result.stderr
    assert f"run id  {trained_run.run_id}" in result.stdout


@pytest.mark.slow
def test_evaluate_reproduces_the_logged_test_accuracy(trained_run):
    logged = MlflowClient(trained_run.uri).get_run(trained_run.run_id).data.metrics["test_accuracy"]
    prefix = trained_run.run_id[:6]  # a unique prefix works as the id
    result = run_cli("evaluate", prefix, "--tracking-uri", trained_run.uri, cwd=trained_run.workdir)
    assert result.returncode == 0, result.stderr
    reloaded = re.search(r"accuracy \(reloaded\)\s+([\d.]+)\s+\((\d+) of (\d+)", result.stdout)
    assert reloaded, result.stdout
    assert int(reloaded[2]) / int(reloaded[3]) == pytest.approx(logged, abs=1e-6)
    assert "test_accuracy (logged)" in result.stdout
    assert "equal" in result.stdout and "true \\ pred" in result.stdout
    assert result.stderr == ""


@pytest.mark.slow
def test_predict_a_held_out_digit_draws_it_and_gives_probabilities(trained_run, raw):
    data = raw
    result = run_cli(
        "predict",
        "best",
        "--index",
        "17",
        "--tracking-uri",
        trained_run.uri,
        cwd=trained_run.workdir,
    )
    assert result.returncode == 0, result.stderr
    assert f"true label  {data.y_val[17]}" in result.stdout
    assert "█" in result.stdout or "▓" in result.stdout  # the digit, drawn
    rows = re.findall(r"^\s+(\d)\s+(0\.\d{4}|1\.0000)", result.stdout, re.MULTILINE)
    assert [int(k) for k, _ in rows] == list(range(10))
    probabilities = np.array([float(p) for _, p in rows])
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-3)
    predicted = int(re.search(r"predicted\s+(\d)", result.stdout)[1])
    assert predicted == int(probabilities.argmax())


@pytest.mark.slow
def test_predict_an_image_file(trained_run, tmp_path, raw):
    save_digit(raw.x_val[17], tmp_path / "my_digit.png", dark_on_light=True)
    result = run_cli(
        "predict",
        trained_run.run_id,
        "--image",
        str(tmp_path / "my_digit.png"),
        "--tracking-uri",
        trained_run.uri,
        cwd=trained_run.workdir,
    )
    assert result.returncode == 0, result.stderr
    assert "my_digit.png" in result.stdout and re.search(r"predicted\s+\d", result.stdout)


# ---------------------------------------------------------------- bad input: one line each


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["evaluate", "0123456789abcdef"], "no run '0123456789abcdef' in experiment 'lstm-digits'"),
        (["predict", "best", "--index", "360"], "--index 360 is out of range"),
        (["predict", "best", "--image", "README.none"], "cannot read image README.none"),
        (["predict", "best"], "give exactly one of --index"),
        (["runs", "--sort", "bogus"], "cannot sort by 'bogus'"),
    ],
)
def test_bad_input_is_one_line(trained_run, args, fragment):
    result = run_cli(*args, "--tracking-uri", trained_run.uri, cwd=trained_run.workdir)
    assert_one_line_error(result, 2, fragment)


@pytest.mark.slow
def test_an_unreadable_image_is_one_line(trained_run, tmp_path):
    (tmp_path / "digit.png").write_text("not a PNG")
    result = run_cli(
        "predict",
        "best",
        "--image",
        str(tmp_path / "digit.png"),
        "--tracking-uri",
        trained_run.uri,
        cwd=trained_run.workdir,
    )
    assert_one_line_error(result, 2, "not an image Pillow can read")


@pytest.mark.slow
def test_a_run_without_a_model_is_one_line(tmp_path):
    uri = sqlite_uri(tmp_path)
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(EXPERIMENT)
    run = client.create_run(experiment_id, run_name="no-model")
    for key, value in {"data.test_size": "0.2", "data.split_seed": "42"}.items():
        client.log_param(run.info.run_id, key, value)
    client.log_metric(run.info.run_id, "val_accuracy", 0.5)
    client.set_terminated(run.info.run_id)
    result = run_cli("evaluate", "best", "--tracking-uri", uri, cwd=tmp_path)
    assert_one_line_error(result, 2, f"run {run.info.run_id} has no logged model")


@pytest.mark.slow
@pytest.mark.parametrize(
    "command", [["runs"], ["evaluate", "best"], ["predict", "x", "--index", "1"]]
)
def test_an_empty_store_is_one_line_and_stays_empty(tmp_path, command):
    result = run_cli(*command, cwd=tmp_path)  # the default store: <cwd>/outputs/mlflow.db
    assert_one_line_error(result, 2, "no runs yet: run `lstm-digits train` first")
    assert not (tmp_path / "outputs").exists()
