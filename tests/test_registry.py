"""The model registry (`register`, models:/ references) and lookups done in the store (`best`,
run-id prefixes, sorted and limited `runs`), on SQLite stores and a tracking server."""

from __future__ import annotations

import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from mlflow.tracking import MlflowClient

from lstm_cli.commands import runs
from lstm_cli.tracking import read, store
from lstm_cli.tracking.run_handle import start_run
from lstm_cli.tracking.tags import PARENT_TAG
from tests.helpers import (
    EXPERIMENT,
    assert_one_line_error,
    free_port,
    printed_probabilities,
    run_cli,
    sqlite_uri,
)


@pytest.fixture(scope="module")
def registered(trained_run, tmp_path_factory):
    """A copy of the trained store (the session's stays as it is) whose best run is registered
    as `digits`, version 1, alias `champion`."""
    workdir = tmp_path_factory.mktemp("registry")
    shutil.copy(trained_run.workdir / "mlflow.db", workdir / "mlflow.db")
    uri = sqlite_uri(workdir)
    result = run_cli(
        "register", "best", "digits", "--alias", "champion", "--tracking-uri", uri, cwd=workdir
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and "models:/digits/1" in result.stdout
    return uri, workdir


@pytest.mark.slow
def test_predict_and_evaluate_take_a_registered_model(registered, trained_run):
    uri, workdir = registered
    version = MlflowClient(uri).get_model_version_by_alias("digits", "champion")
    assert (str(version.version), version.run_id) == ("1", trained_run.run_id)
    by_run = run_cli(
        "predict", trained_run.run_id[:8], "--index", "5", "--tracking-uri", uri, cwd=workdir
    )
    by_alias = run_cli(
        "predict", "models:/digits@champion", "--index", "5", "--tracking-uri", uri, cwd=workdir
    )
    assert by_run.returncode == by_alias.returncode == 0, by_alias.stderr
    assert (printed_probabilities(by_alias.stdout) == printed_probabilities(by_run.stdout)).all()
    evaluated = run_cli("evaluate", "models:/digits/1", "--tracking-uri", uri, cwd=workdir)
    assert evaluated.returncode == 0 and "equal" in evaluated.stdout, evaluated.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ("models:/nope@champion", "no registered model 'nope'"),
        ("models:/digits@nope", "model 'digits' has no alias @nope (its aliases: @champion)"),
        ("models:/digits/9", "model 'digits' has no version 9 (its versions: 1)"),
        ("models:/digits", "give models:/NAME/VERSION or models:/NAME@ALIAS"),
    ],
)
def test_an_unknown_model_alias_or_version_is_one_line(registered, ref, fragment):
    uri, workdir = registered
    result = run_cli("predict", ref, "--index", "1", "--tracking-uri", uri, cwd=workdir)
    assert_one_line_error(result, 2, fragment)


@pytest.mark.slow
def test_register_on_a_run_without_a_model_is_one_line_and_registers_nothing(tmp_path):
    uri = sqlite_uri(tmp_path)
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment(EXPERIMENT), run_name="no-model")
    client.set_terminated(run.info.run_id)
    result = run_cli("register", run.info.run_id, "digits", "--tracking-uri", uri, cwd=tmp_path)
    assert_one_line_error(result, 2, f"run {run.info.run_id} has no logged model")
    assert client.search_registered_models() == []


class _OnlyHealth(BaseHTTPRequestHandler):
    """A tracking endpoint without a model registry: /health answers, the rest is 404."""

    def do_GET(self):  # http.server's name for it
        found = self.path == "/health"
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"OK" if found else b"Not Found")

    do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_a_models_uri_on_a_store_without_a_registry_is_one_line(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _OnlyHealth)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        result = run_cli(
            "predict",
            "models:/digits@champion",
            "--index",
            "1",
            "--tracking-uri",
            url,
            cwd=tmp_path,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert_one_line_error(result, 2, f"the tracking store {url} has no model registry")


@pytest.mark.slow
def test_train_registers_its_model_at_the_end(defaults, tmp_path):
    if "register" not in defaults.tracking:
        pytest.skip("tracking.register is not in conf/config.yaml yet")
    uri = sqlite_uri(tmp_path)
    result = run_cli(
        "train",
        "epochs=1",
        "hidden_size=8",
        "tracking.register=digits",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"registered\s+models:/digits/1", result.stdout)
    predicted = run_cli(
        "predict", "models:/digits/1", "--index", "3", "--tracking-uri", uri, cwd=tmp_path
    )
    assert predicted.returncode == 0, predicted.stderr
    refused = run_cli(
        "train",
        "epochs=1",
        "tracking.register=digits",
        "tracking.log_model=false",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert_one_line_error(refused, 2, "tracking.register=digits needs the model")


@pytest.mark.slow
def test_register_and_predict_through_a_tracking_server(tmp_path, mlflow_server):
    url = mlflow_server.url
    trained = run_cli("train", "epochs=2", "hidden_size=8", f"tracking.uri={url}", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    result = run_cli(
        "register",
        "best",
        "served-digits",
        "--alias",
        "champion",
        "--tracking-uri",
        url,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    predicted = run_cli(
        "predict",
        "models:/served-digits@champion",
        "--index",
        "3",
        "--tracking-uri",
        url,
        cwd=tmp_path,
    )
    assert predicted.returncode == 0, predicted.stderr
    assert printed_probabilities(predicted.stdout).sum() == pytest.approx(1.0, abs=1e-3)


# ---------------------------------------------------------------- lookups in the store


@pytest.fixture
def searches(monkeypatch) -> list[dict]:
    """Every search_runs call's keyword arguments (max_results, order_by, filter)."""
    calls: list[dict] = []
    original = MlflowClient.search_runs

    def recorded(self, experiment_ids, filter_string="", *args, **kwargs):
        calls.append({"filter": filter_string, **kwargs})
        return original(self, experiment_ids, filter_string, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "search_runs", recorded)
    return calls


@pytest.fixture
def small_store(tmp_path):
    """Five finished runs (val_accuracy 0.1 .. 0.5, hidden_size 100, 50, ...) and a sweep parent
    with two of them as children."""
    uri = sqlite_uri(tmp_path)
    experiment_id = store.open_experiment(uri, EXPERIMENT)
    client = MlflowClient(uri)
    parent = client.create_run(experiment_id, tags={"lstm_digits.sweep": "parent"})
    client.log_metric(parent.info.run_id, "best_val_accuracy", 0.9)
    ids = []
    for k, hidden in enumerate(["100", "50", "8", "200", "25"]):
        owner = parent.info.run_id if k < 2 else None
        with start_run(experiment_id, f"run{k}", {"hidden_size": hidden}, {}, owner) as run:
            run.log_metrics({"val_accuracy": (k + 1) / 10})
        ids.append(run.run_id)
    return uri, parent.info.run_id, ids


def test_the_parent_link_is_mlflows(small_store):
    uri, parent_id, ids = small_store
    tags = MlflowClient(uri).get_run(ids[0]).data.tags
    assert PARENT_TAG == "mlflow.parentRunId" and tags[PARENT_TAG] == parent_id


def test_best_and_prefixes_are_found_by_the_store(small_store, searches):
    uri, parent_id, ids = small_store
    assert read.best(uri, EXPERIMENT).run_id == ids[4]  # the parent's 0.9 is not val_accuracy
    assert read.best(uri, EXPERIMENT, parent_id).run_id == ids[1]
    assert read.find_run(uri, EXPERIMENT, ids[2][:12]).run_id == ids[2]
    assert all(call["max_results"] <= read.BEST_PAGE for call in searches), searches
    assert any("LIKE" in call["filter"] for call in searches)


def test_runs_sort_and_limit_in_the_store_params_as_numbers(small_store, searches):
    uri, parent_id, ids = small_store
    found, more = runs._selected(uri, EXPERIMENT, None, "val_accuracy", False, 2)
    assert [r.run_id for r in found] == [ids[4], ids[3]] and more
    assert searches[-1]["max_results"] == 3 and "val_accuracy" in searches[-1]["order_by"][0]
    found, more = runs._selected(uri, EXPERIMENT, None, "hidden_size", False, 3)
    assert [r.params["hidden_size"] for r in found] == ["200", "100", "50"] and more
    found, more = runs._selected(uri, EXPERIMENT, parent_id, "name", False, 5)
    assert [r.name for r in found] == ["run0", "run1"] and not more


def test_best_is_never_a_pruned_point(small_store):
    uri, parent_id, ids = small_store
    client = MlflowClient(uri)
    tags = {"mlflow.parentRunId": parent_id, "pruned_at_epoch": "10"}
    pruned = client.create_run(client.get_run(ids[0]).info.experiment_id, tags=tags)
    client.log_metric(pruned.info.run_id, "val_accuracy", 0.99)  # at epoch 10, but it stopped
    client.set_terminated(pruned.info.run_id, "FINISHED")
    assert read.best(uri, EXPERIMENT).run_id == ids[4]
    assert read.best(uri, EXPERIMENT, parent_id).run_id == ids[1]
