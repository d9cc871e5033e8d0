"""`lstm-digits train --from RUN`: the recorded config, then the new overrides, as a new run
that names where it came from. The keys a command line sets and the recorded config as
overrides (config tier), the refusals in one line on a store of hand-made runs (CLI in
process), and real runs built on a real run (end to end)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from typer.testing import CliRunner

from lstm_cli.commands import app
from lstm_cli.config import compose, schema
from lstm_cli.jobs import built_on
from lstm_cli.runtime.errors import UserError
from lstm_cli.tracking.read import RunRecord
from tests.helpers import EXPERIMENT, assert_one_line_error, run_cli, sqlite_uri, sweep_runs

runner = CliRunner()


@pytest.mark.parametrize(
    ("argv", "set_", "not_set"),
    [
        (["epochs=7"], {"epochs"}, {"hidden_size", "seed"}),
        (["hidden_size=50"], {"hidden_size"}, {"epochs"}),  # named: set, though the default
        (["experiment=debug"], {"experiment", "epochs", "hidden_size"}, {"cell"}),  # a preset
        (["-m", "seed=1,2,3", "--cfg", "job"], {"seed"}, {"epochs"}),
        (["-m", "prune=median,asha"], {"prune", "prune.kind"}, {"epochs"}),  # a group swept
        (["-m", "hparams_search=optuna"], {"hidden_size", "learning_rate"}, {"seed"}),  # searched
        (["-m", "cell=glob(*)"], {"cell"}, {"seed"}),
    ],
)
def test_the_keys_a_command_line_sets(argv, set_, not_set):
    touched = compose.touched(argv)
    assert set_ <= touched.keys
    assert not (not_set & touched.keys)


def test_a_config_as_overrides_composes_back_to_the_same_values():
    values = {
        "hidden_size": 12,
        "learning_rate": 1e-05,
        "forget_bias": None,
        "data.shuffle": False,
        "cell": "gru",
        "tracking.experiment": "it's a 1e3 name",
        "tracking.register": "true",
    }
    overrides = compose.as_overrides(values)
    assert "cell=gru" in overrides and "data.shuffle=false" in overrides  # names as typed
    flat = schema.flatten(compose.compose(overrides))
    assert {k: flat[k] for k in values} == values


def recorded_run(tags: dict[str, str] | None = None) -> RunRecord:
    return RunRecord(
        run_id="ab" * 16,
        name="a run",
        status="FINISHED",
        start_ms=0,
        end_ms=1,
        params={},
        metrics={},
        tags={"mlflow.source.name": "lstm-digits train", **(tags or {})},
        has_model=True,
    )


def test_the_recorded_config_comes_first_without_the_keys_the_command_line_sets(
    defaults, monkeypatch
):
    saved = OmegaConf.to_container(defaults, enum_to_str=True)
    saved |= {"hidden_size": 32, "epochs": 30, "seed": 2, "cell": "gru", "gates": "ops"}
    saved["data"] |= {"reading": "pixels"}
    saved.pop("kernel")  # a run from before `gates` was named kernel
    saved["tracking"] |= {"uri": "sqlite:///***", "parent_run_id": "cd" * 16, "from_run": "x"}
    saved["prune"] |= {"kind": "median", "grace_epochs": 3}  # a point of a pruned sweep
    text = OmegaConf.to_yaml(OmegaConf.create(saved))
    monkeypatch.setattr("lstm_cli.tracking.read.artifact_text", lambda run_id, path: text)
    inherited = built_on.recorded(recorded_run(), compose.touched(["-m", "seed=1,2", "epochs=7"]))
    assert sorted(inherited) == [
        "cell=gru",
        "data.reading=pixels",
        "hidden_size=32",
        "kernel=ops",
    ]  # where it ran (uri, its sweep, what it built on) and how its sweep pruned: not carried


def test_a_run_without_its_config_is_built_on_from_its_overrides(monkeypatch):
    monkeypatch.setattr("lstm_cli.tracking.read.artifact_text", lambda run_id, path: None)
    said = "hidden_size=32 epochs=30 tracking.uri=sqlite:///*** prune=asha +x=1"
    run = recorded_run({"overrides": said})
    assert built_on.recorded(run, compose.touched(["epochs=7"])) == ["hidden_size=32", "+x=1"]
    foreign = recorded_run({"mlflow.source.name": "a notebook"})
    with pytest.raises(UserError, match=r"has no config\.yaml: not an lstm-digits run"):
        built_on.recorded(foreign, compose.touched([]))


# ---------------------------------------------------------------- refusals


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with a sweep's parent and a point pruning stopped, made by hand."""
    from mlflow.tracking import MlflowClient

    uri = sqlite_uri(tmp_path_factory.mktemp("store"))
    client = MlflowClient(uri)
    experiment = client.create_experiment(EXPERIMENT)
    parent = client.create_run(experiment, tags={"lstm_digits.sweep": "parent"}).info.run_id
    tags = {"mlflow.parentRunId": parent, "sweep_job": "0", "pruned_at_epoch": "5"}
    pruned = client.create_run(experiment, tags=tags).info.run_id
    for run_id in (parent, pruned):
        client.set_terminated(run_id, "FINISHED")
    return {"uri": uri, "parent": parent, "pruned": pruned, "runs": 2}


@pytest.mark.parametrize(
    ("which", "fragment"),
    [
        ("parent", "is a sweep's parent run, not a run: build on one of its points"),
        ("pruned", "was pruned at epoch 5 (its sweep's other points did better)"),
        ("best", "no finished run with a val_accuracy"),
        ("0123abcd", "no run '0123abcd' in experiment 'lstm-digits'"),
    ],
)
def test_from_what_cannot_be_built_on_is_one_line_exit_2(store, which, fragment, tmp_path):
    from mlflow.tracking import MlflowClient

    ref = store.get(which, which)
    args = ["train", "--from", ref, "epochs=2", f"tracking.uri={store['uri']}"]
    result = runner.invoke(app.app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert fragment in result.stderr
    client = MlflowClient(store["uri"])
    found = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert len(found) == store["runs"]  # nothing trained, nothing tracked


def test_from_an_empty_store_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app.app, ["train", "--from", "best", f"tracking.uri={sqlite_uri(tmp_path)}"]
    )
    assert result.exit_code == 2 and "no runs yet" in result.stderr
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- end to end


@pytest.mark.slow
def test_train_from_best_trains_its_config_with_the_new_overrides_and_names_it(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = sqlite_uri(tmp_path)
    first = run_cli(
        "train",
        "epochs=2",
        "hidden_size=12",
        "seed=3",
        "cell=gru",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    (source,) = client.search_runs([experiment])
    client.set_tag(source.info.run_id, "git_commit", "0" * 40)  # as if an older commit trained it

    built = run_cli("train", "--from", "best", "epochs=3", f"tracking.uri={uri}", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    note = [line for line in built.stderr.splitlines() if line.startswith("note: ")]
    assert note == [
        f"note: run {source.info.run_id[:8]} was trained by commit 0000000000, this code is "
        f"{source.data.tags['git_commit'][:10]}: the same config may train otherwise"
    ]
    new = next(r for r in client.search_runs([experiment]) if r.info.run_id != source.info.run_id)
    assert new.info.status == "FINISHED"
    assert new.data.tags["from_run"] == source.info.run_id
    link = f"(#/experiments/{experiment}/runs/{source.info.run_id})"
    assert link in new.data.tags["mlflow.note.content"]
    params, before = new.data.params, source.data.params
    assert (params["hidden_size"], params["seed"], params["cell"]) == ("12", "3", "gru")
    assert params["epochs"] == "3" and before["epochs"] == "2"
    assert {k: v for k, v in params.items() if k not in ("epochs", "tracking.from_run")} == {
        k: v for k, v in before.items() if k not in ("epochs", "tracking.from_run")
    }
    history = client.get_metric_history(new.info.run_id, "val_accuracy")
    assert sorted(m.step for m in history) == [1, 2, 3]

    swept = run_cli(
        "train",
        "--from",
        new.info.run_id[:8],
        "-m",
        "seed=1,2",
        "epochs=2",
        "tracking.log_model=false",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert swept.returncode == 0, swept.stderr
    assert "note: " not in swept.stderr  # the same commit trained it
    parents = [r for r in client.search_runs([experiment]) if r.data.tags.get("lstm_digits.sweep")]
    (parent,) = parents
    assert parent.data.tags["from_run"] == new.info.run_id
    points = [
        r
        for r in client.search_runs([experiment])
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    ]
    assert sorted(p.data.params["seed"] for p in points) == ["1", "2"]
    for point in points:
        assert point.data.tags["from_run"] == new.info.run_id
        assert (point.data.params["hidden_size"], point.data.params["cell"]) == ("12", "gru")


@pytest.mark.slow
def test_from_a_sweep_parent_is_one_line_and_trains_nothing(tmp_path):
    uri = sqlite_uri(tmp_path)
    sweep = run_cli(
        "train",
        "-m",
        "hidden_size=8,12",
        "epochs=1",
        "tracking.log_model=false",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert sweep.returncode == 0, sweep.stderr
    parent, children = sweep_runs(uri)
    result = run_cli("train", "--from", parent.info.run_id, f"tracking.uri={uri}", cwd=tmp_path)
    assert_one_line_error(result, 2, "is a sweep's parent run, not a run")
    assert len(sweep_runs(uri)[1]) == len(children)
