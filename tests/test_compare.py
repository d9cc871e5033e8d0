"""`compare`: which params differ (on plain records), then the command on three real tiny runs."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from lstm_cli.commands.compare import differing, gather
from lstm_cli.tracking.read import RunRecord
from tests.helpers import EXPERIMENT, assert_one_line_error, cli_env, run_cli, sqlite_uri

# The three runs: hidden_size and seed differ between them, every other param is shared.
TRAINED = (
    {"seed": "1", "hidden_size": "8"},
    {"seed": "2", "hidden_size": "8"},
    {"seed": "3", "hidden_size": "12"},
)


def record(run_id: str, params: dict[str, str], metrics: dict[str, float] | None = None):
    return RunRecord(
        run_id=run_id,
        name=f"run-{run_id}",
        status="FINISHED",
        start_ms=0,
        end_ms=1000,
        params=params,
        metrics=metrics or {},
        tags={},
        has_model=False,
    )


# ---------------------------------------------------------------- plain records (fast)


def test_only_the_params_that_differ_are_shown_unless_all():
    shared = {"epochs": "2", "batch_size": "100"}
    runs = [
        record("a" * 32, {**shared, "seed": "1", "hidden_size": "8"}),
        record("b" * 32, {**shared, "seed": "2", "hidden_size": "8", "cell": "article"}),
        record("c" * 32, {**shared, "seed": "3", "hidden_size": "8"}),
    ]
    assert differing(runs) == ["cell", "seed"]  # a param one run lacks differs too
    assert differing(runs[::2]) == ["seed"]
    assert differing([runs[0], runs[0]]) == []
    assert gather(runs, all_params=True).params == [
        "batch_size",
        "cell",
        "epochs",
        "hidden_size",
        "seed",
    ]


def test_metrics_rows_and_the_best_value_of_each():
    runs = [
        record("a" * 32, {"seed": "1"}, {"val_accuracy": 0.5, "val_loss": 1.0, "test_loss": 2.0}),
        record("b" * 32, {"seed": "2"}, {"val_accuracy": 0.7, "val_loss": 1.5}),
    ]
    comparison = gather(runs)
    # every metric has its place (empty where a run from before the test split lacks it)
    assert comparison.metrics == [
        "val_loss",
        "val_accuracy",
        "best_val_accuracy",
        "test_accuracy",
        "test_loss",
    ]
    first, second = comparison.rows()
    assert first["run_id"] == "a" * 32 and first["seed"] == "1" and first["test_loss"] == 2.0
    assert second["test_loss"] is None and second["test_accuracy"] is None
    assert first["duration_s"] == 1.0 and first["status"] == "FINISHED"
    assert comparison.leader("val_accuracy") == "b" * 32  # highest accuracy
    assert comparison.leader("val_loss") == "a" * 32  # lowest loss
    assert comparison.leader("test_loss") is None  # one run has it: nothing to compare


# ---------------------------------------------------------------- the console script


@dataclass(frozen=True)
class Store:
    """Three tiny runs in a temporary store, in the order they were trained."""

    workdir: Path
    uri: str
    run_ids: list[str]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    from mlflow.tracking import MlflowClient

    workdir = tmp_path_factory.mktemp("compare")
    uri = sqlite_uri(workdir)
    for params in TRAINED:
        overrides = [f"{k}={v}" for k, v in params.items()]
        result = run_cli(
            "train",
            "epochs=2",
            *overrides,
            "tracking.log_model=false",
            f"tracking.uri={uri}",
            cwd=workdir,
        )
        assert result.returncode == 0, result.stderr
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.data.params["seed"] for r in runs] == [p["seed"] for p in TRAINED]
    return Store(workdir=workdir, uri=uri, run_ids=[r.info.run_id for r in runs])


def compare(store: Store, *args: str) -> subprocess.CompletedProcess:
    return run_cli("compare", *args, "--tracking-uri", store.uri, cwd=store.workdir)


def sections(table: str) -> list[dict[str, list[str]]]:
    """The table's body: its sections (params, metrics, status), each row label -> cells."""
    found: list[dict[str, list[str]]] = [{}]
    for line in table.splitlines():
        if line.startswith("├"):
            found.append({})
        elif line.startswith("│"):
            label, *cells = [cell.strip() for cell in line.strip("│").split("│")]
            found[-1][label] = cells
    return found


def logged(store: Store, run_id: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(store.uri).get_run(run_id).data


@pytest.mark.slow
def test_the_table_shows_the_params_that_differ_then_the_metrics(store):
    result = compare(store, *store.run_ids)
    assert result.returncode == 0, result.stderr
    params, metrics, status = sections(result.stdout)
    assert params == {"hidden_size": ["8", "8", "12"], "seed": ["1", "2", "3"]}
    assert list(metrics) == [
        "val_loss",
        "val_accuracy",
        "best_val_accuracy",
        "test_accuracy",
        "test_loss",
    ]
    for k, run_id in enumerate(store.run_ids):
        data = logged(store, run_id)
        assert metrics["val_accuracy"][k] == f"{data.metrics['val_accuracy']:.4f}"
        assert metrics["val_loss"][k] == f"{data.metrics['val_loss']:.4f}"
        assert metrics["test_accuracy"][k] == f"{data.metrics['test_accuracy']:.4f}"
        assert run_id[:8] in result.stdout
    assert status["status"] == ["FINISHED"] * 3 and len(status["duration"]) == 3
    assert "hidden_size=12" in result.stdout  # the third run's name heads its column
    assert result.stderr == ""


@pytest.mark.slow
def test_all_shows_every_param(store):
    result = compare(store, *store.run_ids[:2], "--all")
    assert result.returncode == 0, result.stderr
    params = sections(result.stdout)[0]
    assert set(params) == set(logged(store, store.run_ids[0]).params)
    assert params["batch_size"] == ["100", "100"] and params["seed"] == ["1", "2"]
    assert params["hidden_size"] == ["8", "8"]


@pytest.mark.slow
@pytest.mark.parametrize("output", ["json", "csv"])
def test_json_and_csv_hold_the_logged_values(store, output):
    result = compare(store, *store.run_ids, "--format", output)
    assert result.returncode == 0, result.stderr
    if output == "json":
        rows = json.loads(result.stdout)
    else:
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["run_id"] for row in rows] == store.run_ids
    for row, run_id in zip(rows, store.run_ids, strict=True):
        data = logged(store, run_id)
        assert {k: row[k] for k in ("hidden_size", "seed")} == {
            k: data.params[k] for k in ("hidden_size", "seed")
        }
        assert "batch_size" not in row  # the same in every run
        for metric in ("val_loss", "val_accuracy", "best_val_accuracy", "test_accuracy"):
            assert float(row[metric]) == data.metrics[metric]
        assert row["status"] == "FINISHED"
        assert float(row["duration_s"]) > 0


@pytest.mark.slow
def test_prefixes_and_best_name_the_runs(store):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store.uri)
    runs = [client.get_run(run_id) for run_id in store.run_ids]
    best = max(runs, key=lambda r: (r.data.metrics["val_accuracy"], r.info.start_time))
    others = [r.info.run_id for r in runs if r is not best]
    result = compare(store, "best", others[0][:6], others[1][:10].upper(), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert [row["run_id"] for row in json.loads(result.stdout)] == [best.info.run_id, *others]


@pytest.mark.slow
def test_plot_writes_the_learning_curves_as_a_png(store, tmp_path):
    from PIL import Image

    path = tmp_path / "curves.png"
    result = compare(store, *store.run_ids, "--plot", str(path))
    assert result.returncode == 0, result.stderr
    assert str(path) in result.stdout
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert 600 <= width <= 3000 and 300 <= height <= 2000


@pytest.mark.slow
def test_plot_with_json_keeps_stdout_for_the_data(store, tmp_path):
    path = tmp_path / "curves.png"
    result = compare(store, *store.run_ids[:2], "--format", "json", "--plot", str(path))
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 2 and path.stat().st_size > 0
    assert str(path) in result.stderr


@pytest.mark.slow
def test_bad_references_are_one_line(store):
    first, second = store.run_ids[:2]
    cases = [
        ([first], "compare needs at least two runs, got 1"),
        ([], "compare needs at least two runs, got 0"),
        ([first, "0123456789abcdef"], "no run '0123456789abcdef' in experiment"),
        ([first[:6], first], f"are the same run {first}"),
        ([first, second, "--format", "xml"], "--format xml is not known: use one of table, json"),
        ([first, second, "--plot", "no/such/dir/x.png"], "cannot write or read no/such/dir/x.png"),
    ]
    for args, fragment in cases:
        assert_one_line_error(compare(store, *args), 2, fragment)


@pytest.mark.slow
def test_compare_does_not_import_tensorflow(store):
    code = (
        "import sys; import lstm_cli.commands.app as c\n"
        f"try:\n    c.app(['compare', *{store.run_ids!r}, '--tracking-uri', {store.uri!r}])\n"
        "except SystemExit as ex:\n    assert not ex.code, ex.code\n"
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=store.workdir,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "False"
