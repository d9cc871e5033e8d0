"""MLflow-native runs: a logged model that stands alone and serves, the data splits as dataset
inputs, the experiment marked as model training, system metrics, a run that fails to start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from lstm_cli.commands.ui import stop_server
from lstm_cli.data.digits import SOURCE, load_digits
from lstm_cli.tracking import store
from lstm_cli.tracking.dataset import inputs
from lstm_cli.tracking.run_handle import KIND, KIND_TAG, mark_model_training, start_run
from tests.helpers import (
    EXPERIMENT,
    assert_one_line_error,
    cli_env,
    free_port,
    held_out,
    printed_probabilities,
    run_cli,
    sqlite_uri,
    wait_healthy,
)

INDEX = 17  # the held-out digit served and predicted

# A sitecustomize that makes this venv's Python one without lstm_cli: a finder placed first
# refuses the package (the venv's editable install would find it), as if it were not installed.
NO_LSTM_CLI = """
import sys


class NoLstmCli:
    def find_spec(self, name, path=None, target=None):
        if name == "lstm_cli" or name.startswith("lstm_cli."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoLstmCli())
"""


@pytest.fixture(scope="module")
def raw(defaults):
    """The trained run's held-out split, raw 0..16 pixels, float64 as sklearn's images."""
    data = held_out(defaults, scaling="raw")
    return data.x_test.astype(np.float64), data.y_test


@pytest.fixture(scope="module")
def without_lstm_cli(tmp_path_factory, trained_run) -> dict[str, str]:
    """The environment of a Python (this venv's) in which `import lstm_cli` fails."""
    site = tmp_path_factory.mktemp("no_lstm_cli")
    (site / "sitecustomize.py").write_text(NO_LSTM_CLI)
    scripts = str(Path(sys.executable).parent)  # `mlflow models serve` runs uvicorn from PATH
    return cli_env(
        PYTHONPATH=str(site),
        MLFLOW_TRACKING_URI=trained_run.uri,
        PATH=f"{scripts}{os.pathsep}{os.environ['PATH']}",
    )


# ---------------------------------------------------------------- a model that stands alone


@pytest.mark.slow
def test_the_logged_model_names_real_requirements_a_signature_and_an_example(trained_run):
    mlflow.set_tracking_uri(trained_run.uri)
    model_dir = Path(mlflow.artifacts.download_artifacts(f"runs:/{trained_run.run_id}/model"))
    requirements = (model_dir / "requirements.txt").read_text().split()
    assert {r.split("==")[0] for r in requirements} >= {"mlflow", "tensorflow", "numpy"}
    assert all("==" in r for r in requirements) and not any("lstm" in r for r in requirements)
    for path in model_dir.rglob("*"):  # no file of the model names this package
        assert path.is_dir() or b"lstm_cli" not in path.read_bytes(), path
    info = mlflow.models.get_model_info(f"runs:/{trained_run.run_id}/model")
    assert "tensorflow" in info.flavors
    (images,) = info.signature.inputs.inputs
    (probabilities,) = info.signature.outputs.inputs
    assert (images.type, images.shape) == (np.dtype("float64"), (-1, 8, 8))
    assert (probabilities.type, probabilities.shape) == (np.dtype("float32"), (-1, 10))
    example = json.loads((model_dir / info.saved_input_example_info["artifact_path"]).read_text())
    assert np.asarray(example).shape[1:] == (8, 8) and 0 <= np.min(example) <= np.max(example) <= 16
    serving = json.loads((model_dir / "serving_input_example.json").read_text())  # the UI shows it
    assert np.asarray(serving["inputs"]).shape[1:] == (8, 8)


@pytest.mark.slow
def test_the_model_loads_and_predicts_in_a_python_without_lstm_cli(
    trained_run, without_lstm_cli, raw, tmp_path
):
    np.save(tmp_path / "images.npy", raw[0])
    code = (
        "import sys, numpy as np, mlflow\n"
        "try:\n    import lstm_cli\nexcept ImportError:\n    pass\n"
        "else:\n    sys.exit('lstm_cli could be imported')\n"
        f"model = mlflow.pyfunc.load_model('runs:/{trained_run.run_id}/model')\n"
        "np.save('probabilities.npy', model.predict(np.load('images.npy')))\n"
        "print(sorted(m for m in sys.modules if m.startswith('lstm_cli')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=without_lstm_cli,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    probabilities = np.load(tmp_path / "probabilities.npy")  # (n, classes)
    assert probabilities.shape == (len(raw[1]), 10)
    logged = MlflowClient(trained_run.uri).get_run(trained_run.run_id).data.metrics["test_accuracy"]
    assert np.mean(probabilities.argmax(axis=1) == raw[1]) == pytest.approx(logged, abs=1e-6)


@pytest.mark.slow
def test_mlflow_models_serve_answers_as_lstm_digits_predict(
    trained_run, without_lstm_cli, raw, tmp_path
):
    """`mlflow models serve` in a Python without lstm_cli, over HTTP on a free port."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
    with open(tmp_path / "serve.log", "wb") as log:
        server = subprocess.Popen(
            [
                mlflow_cli,
                "models",
                "serve",
                "-m",
                f"runs:/{trained_run.run_id}/model",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=tmp_path,
            env=without_lstm_cli,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_healthy(url, server)
            request = urllib.request.Request(
                f"{url}/invocations",
                data=json.dumps({"inputs": raw[0][[INDEX]].tolist()}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                served = np.array(json.loads(response.read())["predictions"])[0]  # (classes,)
        finally:
            stop_server(server)  # its process group, as `lstm-digits ui` stops its own
    shown = run_cli(
        "predict",
        trained_run.run_id,
        "--index",
        str(INDEX),
        "--tracking-uri",
        trained_run.uri,
        cwd=trained_run.workdir,
    )
    assert shown.returncode == 0, shown.stderr
    assert np.abs(served - printed_probabilities(shown.stdout)).max() <= 5e-5  # 4 decimals shown
    mlflow.set_tracking_uri(trained_run.uri)
    model = mlflow.pyfunc.load_model(f"runs:/{trained_run.run_id}/model")
    assert served == pytest.approx(model.predict(raw[0][[INDEX]])[0], abs=1e-7)


# ---------------------------------------------------------------- datasets and the UI's kind


def test_the_split_digest_changes_with_test_size_split_seed_and_scaling():
    digests = {}
    for test_size, split_seed, scaling in [
        (0.2, 42, "raw"),
        (0.3, 42, "raw"),
        (0.2, 7, "raw"),
        (0.2, 42, "unit"),
    ]:
        data = load_digits(test_size, split_seed, scaling)
        splits = {
            "training": ("digits-train", data.x_train, data.y_train),
            "validation": ("digits-val", data.x_val, data.y_val),
        }
        found = inputs(splits, SOURCE)
        assert [(d.dataset.name, d.tags[0].value) for d in found] == [
            ("digits-train", "training"),
            ("digits-val", "validation"),
        ]
        assert json.loads(found[0].dataset.source) == {"loader": "sklearn.datasets.load_digits"}
        digests[(test_size, split_seed, scaling)] = found[0].dataset.digest
    assert len(set(digests.values())) == len(digests)
    again = load_digits(0.2, 42, "raw")
    same = inputs({"training": ("digits-train", again.x_train, again.y_train)}, SOURCE)
    assert same[0].dataset.digest == digests[(0.2, 42, "raw")]  # from the data alone


@pytest.fixture(scope="module")
def metered_run(tmp_path_factory):
    """A run on another split (data.split_seed=7) with MLflow's system metrics switched on."""
    workdir = tmp_path_factory.mktemp("metered")
    uri = sqlite_uri(workdir)
    result = run_cli(
        "train",
        "epochs=2",
        "hidden_size=8",
        "data.split_seed=7",
        "tracking.log_model=false",
        f"tracking.uri={uri}",
        cwd=workdir,
        MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING="true",
    )
    assert result.returncode == 0, result.stderr
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    return run


@pytest.mark.slow
def test_each_run_logs_its_splits_and_two_splits_differ(trained_run, metered_run):
    run = MlflowClient(trained_run.uri).get_run(trained_run.run_id)
    found = {d.tags[0].value: d.dataset for d in run.inputs.dataset_inputs}
    assert sorted(found) == ["testing", "training", "validation"]
    assert found["training"].name == "digits-train" and found["validation"].name == "digits-val"
    assert found["testing"].name == "digits-test"
    assert found["training"].source_type == "python_loader"
    assert json.loads(found["training"].profile)["features_shape"] == [1257, 8, 8]
    assert json.loads(found["validation"].profile)["features_shape"] == [180, 8, 8]
    assert json.loads(found["testing"].profile)["features_shape"] == [360, 8, 8]
    other = {d.tags[0].value: d.dataset.digest for d in metered_run.inputs.dataset_inputs}
    assert other["training"] != found["training"].digest  # data.split_seed=7
    assert other["validation"] != found["validation"].digest
    assert other["testing"] != found["testing"].digest


@pytest.mark.slow
def test_the_experiment_is_marked_as_model_training(trained_run):
    experiment = MlflowClient(trained_run.uri).get_experiment_by_name(EXPERIMENT)
    assert experiment.tags[KIND_TAG] == KIND == "custom_model_development"
    tags = MlflowClient(trained_run.uri).get_run(trained_run.run_id).data.tags
    assert tags["mlflow.source.name"] == "lstm-digits train"  # the UI's Source column


def test_the_uis_own_guess_of_the_kind_is_replaced_a_users_choice_kept(tmp_path):
    uri = sqlite_uri(tmp_path)
    client = MlflowClient(uri)
    for guess, kept in [
        ("no_inferred_type", KIND),
        ("genai_development_inferred", KIND),
        ("genai_development", "genai_development"),
    ]:
        experiment_id = store.open_experiment(uri, guess)
        client.set_experiment_tag(experiment_id, KIND_TAG, guess)
        mark_model_training(experiment_id)
        assert client.get_experiment(experiment_id).tags[KIND_TAG] == kept


# ---------------------------------------------------------------- system metrics


@pytest.mark.slow
def test_system_metrics_on_the_run_ends_finished_with_them(metered_run):
    assert metered_run.info.status == "FINISHED"
    metrics = metered_run.data.metrics
    assert metrics["system/cpu_utilization_percentage"] >= 0
    assert metrics["system/system_memory_usage_megabytes"] > 0


def test_a_failure_while_the_run_starts_ends_it_failed_in_one_line(tmp_path, monkeypatch):
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    def broken(self):
        raise RuntimeError("no sensors here\nsecond line")

    monkeypatch.setattr(SystemMetricsMonitor, "start", broken)
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true")
    uri = sqlite_uri(tmp_path)
    experiment_id = store.open_experiment(uri, "one")
    with pytest.raises(RuntimeError), start_run(experiment_id, "run", {"a": 1}, {}):
        pytest.fail("the body must not run")
    (run,) = MlflowClient(uri).search_runs([experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: no sensors here"


@pytest.mark.slow
def test_system_metrics_without_psutil_fail_the_run_in_one_line(tmp_path):
    """The case MLflow's own start left RUNNING, with a multi-line message and exit 1."""
    site = tmp_path / "no_psutil"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['psutil'] = None\n")
    uri = sqlite_uri(tmp_path)
    result = run_cli(
        "train",
        "epochs=1",
        "hidden_size=8",
        f"tracking.uri={uri}",
        cwd=tmp_path,
        PYTHONPATH=str(site),
        MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING="true",
    )
    assert_one_line_error(result, 2, "system metrics need psutil")
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert run.info.status == "FAILED" and "psutil" in run.data.tags["error"]


@pytest.mark.slow
def test_the_config_key_switches_system_metrics_on(defaults, tmp_path):
    if "system_metrics" not in defaults.tracking:
        pytest.skip("tracking.system_metrics is not in conf/config.yaml yet")
    uri = sqlite_uri(tmp_path)
    result = run_cli(
        "train",
        "epochs=1",
        "hidden_size=8",
        "tracking.log_model=false",
        "tracking.system_metrics=true",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert run.info.status == "FINISHED" and "system/cpu_utilization_percentage" in run.data.metrics
