"""What mattered in a sweep: the importance of each swept key and its marginal effects, from
child-run records (no training), the parent's record of them, and `lstm-digits importance`'s
refusals on a store of hand-made runs."""

from __future__ import annotations

import csv
import io
import math
import random
import re
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lstm_cli.commands import app
from lstm_cli.sweeps import importance
from lstm_cli.sweeps.sweep import what_mattered
from lstm_cli.views import figures
from tests.helpers import EXPERIMENT, run_cli, sqlite_uri, sweep_runs

runner = CliRunner()


def record(job, overrides, val, status="FINISHED", pruned=""):
    return {
        "run_id": f"run{job}",
        "job": job,
        "status": status,
        "overrides": overrides,
        "params": dict(o.split("=", 1) for o in overrides.split()),
        "metrics": {"val_accuracy": val} if val is not None else {},
        "error": "",
        "pruned_at_epoch": pruned,
        "output_dir": "",
        "curve": [],
    }


def grid(score, hidden=(8, 16, 32), rates=(0.001, 0.003, 0.01), seeds=(1, 2, 3), more=""):
    """A hidden_size × learning_rate × seed grid whose val_accuracy is `score(h, lr, seed)`."""
    records = []
    for h in hidden:
        for lr in rates:
            for seed in seeds:
                overrides = f"hidden_size={h} learning_rate={lr} seed={seed} epochs=3 {more}"
                records.append(record(len(records), overrides.strip(), score(h, lr, seed)))
    return records


def hidden_matters(h, lr, seed, rng=random.Random(0)):  # noqa: B008 (one stream for a grid)
    """hidden_size moves the number by 0.1 a step; learning_rate not at all; the seed by noise."""
    return 0.5 + 0.1 * (8, 16, 32).index(h) + rng.gauss(0.0, 0.01)


def test_the_key_that_moves_the_number_ranks_first_and_the_one_that_does_not_below_the_seed():
    records = grid(hidden_matters)
    result, effects = importance.analyse(records)
    assert result.reason == "" and result.points == 27 and result.left_out == {}
    by = {r["key"]: r for r in result.rows}
    assert result.rows[0]["key"] == "hidden_size"
    assert by["seed"]["floor"] and result.floor == by["seed"]["importance"]
    assert by["hidden_size"]["importance"] > 10 * by["seed"]["importance"]
    assert by["learning_rate"]["below_floor"] and not by["hidden_size"]["below_floor"]
    assert all(r["std"] >= 0 for r in result.rows)
    assert result.fit_r2 > 0.9
    again, _ = importance.analyse(records)  # the same points give the same numbers
    assert again.rows == result.rows
    roles = {r["key"]: r["role"] for r in importance.table(result)}
    assert roles == {"hidden_size": "", "seed": "floor (seed)", "learning_rate": "≤ floor"}
    assert {e["key"] for e in effects} == {"hidden_size", "learning_rate"}  # the seed: the floor


def test_marginal_effects_are_the_mean_and_sample_std_at_each_value_in_order():
    records = grid(lambda h, lr, seed: h / 100 + seed / 1000, hidden=(16, 8), rates=(0.01,))
    result, effects = importance.analyse(records)
    assert "the forest needs at least 8" in result.reason  # 6 points: no importance, ...
    assert [e["value"] for e in effects] == ["8", "16"]  # ... its effects; numbers ascending
    eight = effects[0]
    assert eight["n"] == 3
    assert eight["val_accuracy_mean"] == pytest.approx(statistics.fmean([0.081, 0.082, 0.083]))
    assert eight["val_accuracy_std"] == pytest.approx(statistics.stdev([0.081, 0.082, 0.083]))


def test_a_cell_keeps_the_order_it_was_swept_in_and_a_search_key_is_binned():
    cells = ["lstm", "gru", "article"]
    records = [
        record(i, f"cell={cells[i % 3]} learning_rate={0.001 * (1 + i)}", 0.5 + 0.01 * i)
        for i in range(30)
    ]
    pts = importance.points(records)
    effects = importance.marginal_effects(pts)
    assert [e["value"] for e in effects if e["key"] == "cell"] == cells
    rates = [e for e in effects if e["key"] == "learning_rate"]
    assert len(rates) == importance.BINS and sum(e["n"] for e in rates) == 30
    assert rates[0]["value"] == "0.001–0.0068" and rates[-1]["value"].endswith("–0.03")
    means = [e["val_accuracy_mean"] for e in rates]
    assert means == sorted(means)  # the number grows with the rate here


def test_one_swept_key_with_seeds_is_compared_with_the_floor():
    records = grid(hidden_matters, rates=(0.01,))
    result, _ = importance.analyse(records)
    assert result.reason == ""
    assert [r["key"] for r in result.rows] == ["hidden_size", "seed"]


@pytest.mark.parametrize(
    ("records", "said"),
    [
        (grid(hidden_matters, hidden=(8,), rates=(0.01,)), "only seed is swept"),
        (grid(hidden_matters, hidden=(8,), rates=(0.01,), seeds=(1,)), "no key is swept"),
        (grid(hidden_matters, hidden=(8, 16), rates=(0.01,), seeds=(1,)), "one swept key"),
        (grid(hidden_matters, hidden=(8, 16), rates=(1e-3, 1e-2), seeds=(1,)), "at least 8"),
        (grid(lambda h, lr, seed: 0.9), "every counted point has val_accuracy=0.9000"),
    ],
    ids=["only seed", "nothing swept", "one key", "four points", "constant"],
)
def test_no_importance_is_one_line_saying_why(records, said):
    result, _ = importance.analyse(records)
    assert result.rows == [] and said in result.reason
    assert result.reason.startswith("no importance: ") and "\n" not in result.reason
    logged = what_mattered(result, [])
    assert logged.tags == {"importance": result.reason}
    assert logged.metrics == {} and logged.figures == {} and logged.texts == {}


def test_pruned_failed_and_unfinished_points_are_left_out_and_counted():
    records = grid(hidden_matters)
    # Pruned at epoch 1 with a low number, a failed and a killed job: none of them counts.
    records[0] = record(0, records[0]["overrides"], 0.05, pruned="1")
    records[1] = record(1, records[1]["overrides"], None, status="FAILED")
    records[2] = record(2, records[2]["overrides"], 0.3, status="KILLED")
    records[3] = record(3, records[3]["overrides"], math.nan)
    result, effects = importance.analyse(records)
    assert result.points == 23
    assert result.left_out == {"pruned": 1, "failed": 1, "killed": 1, "no val_accuracy": 1}
    eight = next(e for e in effects if e["key"] == "hidden_size" and e["value"] == "8")
    counted = [r["metrics"]["val_accuracy"] for r in records[4:9]]
    assert eight["n"] == 5 and eight["val_accuracy_mean"] == pytest.approx(
        statistics.fmean(counted)
    )
    too_few = importance.analyse([*records[:4], *records[4:8]])[0]  # 4 counted of 8 jobs
    assert "4 finished point(s) counted (1 failed, 1 killed, 1 no val_accuracy, 1 pruned)" in (
        too_few.reason
    )


def test_where_a_point_was_tracked_is_no_key():
    records = grid(hidden_matters)
    for i, r in enumerate(records):  # a resumed sweep's points name their store otherwise
        r["overrides"] += f" tracking.uri=sqlite:///store{i % 2}.db +tracking.from_run=abc{i}"
    pts = importance.points(records)
    assert pts.keys == ["hidden_size", "learning_rate", "seed"]


def test_the_parent_gets_a_metric_per_key_the_tables_and_both_figures():
    result, effects = importance.analyse(grid(hidden_matters))
    logged = what_mattered(result, effects)
    assert logged.metrics == {f"importance/{r['key']}": r["importance"] for r in result.rows}
    assert set(logged.texts) == {
        "importance.csv",
        "importance.md",
        "marginal_effects.csv",
        "marginal_effects.md",
    }
    assert logged.texts["importance.csv"].splitlines()[0] == "key,importance,std,role"
    assert "| seed |" in logged.texts["importance.md"]
    assert set(logged.figures) == {"importance.png", "marginal_effects.png"}
    bars = logged.figures["importance.png"]
    (ax,) = bars.axes
    assert [t.get_text() for t in ax.get_yticklabels()][::-1][:1] == ["hidden_size"]
    assert "seed (floor)" in [t.get_text() for t in ax.get_yticklabels()]
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert dashed and dashed[0].get_xdata()[0] == pytest.approx(result.floor)
    panels = logged.figures["marginal_effects.png"].axes
    assert [a.get_xlabel() for a in panels] == ["hidden_size", "learning_rate"]
    for fig in logged.figures.values():
        figures.close(fig)


# ---------------------------------------------------------------- the command's refusals


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with a single run, and a sweep's parent with one point, made by hand (once:
    the tests only read it)."""
    from mlflow.tracking import MlflowClient

    uri = sqlite_uri(tmp_path_factory.mktemp("store"))
    client = MlflowClient(uri)
    experiment = client.create_experiment(EXPERIMENT)
    single = client.create_run(experiment, tags={"overrides": "hidden_size=8"}).info.run_id
    parent = client.create_run(experiment, tags={"lstm_digits.sweep": "parent"}).info.run_id
    tags = {"mlflow.parentRunId": parent, "sweep_job": "0", "overrides": "hidden_size=8"}
    point = client.create_run(experiment, tags=tags).info.run_id
    for run_id in (single, parent, point):
        client.set_terminated(run_id, "FINISHED")
    return {"uri": uri, "single": single, "parent": parent, "point": point}


@pytest.mark.parametrize(
    ("which", "fragment"),
    [
        ("single", "is a single run, not a sweep"),
        ("point", "is a sweep's point, not a sweep"),
        ("ffff0000", "no run 'ffff0000'"),
    ],
)
def test_importance_refuses_what_is_not_a_sweep_in_one_line(store, which, fragment):
    ref = store.get(which, which)
    result = runner.invoke(app.app, ["importance", ref, "--tracking-uri", store["uri"]])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert fragment in result.stderr


def test_importance_of_a_sweep_too_small_prints_why_and_exits_0(store):
    result = runner.invoke(
        app.app, ["importance", store["parent"][:8], "--tracking-uri", store["uri"]]
    )
    assert result.exit_code == 0, result.output
    assert "no importance: no key is swept among the 0 finished point(s) counted" in result.stdout


# ---------------------------------------------------------------- end to end


def artifact(uri: str, run, path: str) -> str:
    from mlflow.tracking import MlflowClient

    return Path(MlflowClient(uri).download_artifacts(run.info.run_id, path)).read_text()


def printed_importance(stdout: str) -> dict[str, float]:
    """The importance table `train -m` or `lstm-digits importance` printed: key -> importance."""
    table = stdout.split("What mattered for val_accuracy", 1)[1].split("importance: ", 1)[0]
    rows = re.findall(r"^│ (\S+)\s+│\s+(-?\d+\.\d{4}) │", table, re.MULTILINE)
    return {key: float(value) for key, value in rows}


@pytest.mark.slow
def test_a_joblib_grid_with_seeds_logs_what_mattered_and_the_command_prints_it_again(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = sqlite_uri(tmp_path)
    swept = ("hidden_size=8,16,32", "learning_rate=0.001,0.003,0.01", "seed=1,2,3")
    tiny = ("epochs=2", "tracking.log_model=false", "hydra/launcher=joblib")
    result = run_cli("train", "-m", *swept, *tiny, f"tracking.uri={uri}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    parent, children = sweep_runs(uri)
    assert len(children) == 27 and parent.info.status == "FINISHED"
    logged = {
        k.removeprefix("importance/"): v
        for k, v in parent.data.metrics.items()
        if k.startswith("importance/")
    }
    assert set(logged) == {"hidden_size", "learning_rate", "seed"}
    names = {a.path for a in MlflowClient(uri).list_artifacts(parent.info.run_id)}
    assert {"importance.png", "marginal_effects.png", "importance.csv", "importance.md"} <= names
    assert {"marginal_effects.csv", "marginal_effects.md"} <= names
    printed = printed_importance(result.stdout)
    assert printed == {k: round(v, 4) for k, v in logged.items()}
    # The command computes it again from the children in the store: the same numbers.
    again = run_cli("importance", parent.info.run_id[:8], "--tracking-uri", uri, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert printed_importance(again.stdout) == printed
    assert "floor (seed)" in again.stdout and "Marginal effects on val_accuracy" in again.stdout
    marginal = list(csv.DictReader(io.StringIO(artifact(uri, parent, "marginal_effects.csv"))))
    for row in marginal:  # each value's mean is its 9 points' mean
        values = [
            c.data.metrics["val_accuracy"]
            for c in children
            if c.data.params[row["key"]] == row["value"]
        ]
        assert int(row["n"]) == len(values) == 9
        assert float(row["val_accuracy_mean"]) == pytest.approx(statistics.fmean(values))
