"""Hydra multirun end to end: real launchers and sweepers, a real MLflow server."""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import (
    CLI,
    EXPERIMENT,
    alive,
    cli_env,
    descendant_pids,
    run_cli,
    runs_so_far,
    sqlite_uri,
    stop,
    sweep_runs,
)

TINY = ("epochs=2", "tracking.log_model=false")  # jobs that train for real, in a second


def artifact_text(uri: str, run_id: str, path: str) -> str:
    return Path(MlflowClient(uri).download_artifacts(run_id, path)).read_text()


@pytest.mark.slow
def test_grid_sweep_with_seeds_is_summarised_on_the_parent(tmp_path):
    uri = sqlite_uri(tmp_path)
    result = run_cli(
        "train", "-m", "hidden_size=8,16", "seed=1,2", *TINY, f"tracking.uri={uri}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    parent, children = sweep_runs(uri)
    assert parent.info.status == "FINISHED"
    assert [(c.data.params["hidden_size"], c.data.params["seed"]) for c in children] == [
        ("8", "1"),
        ("8", "2"),
        ("16", "1"),
        ("16", "2"),
    ]
    for child in children:
        assert child.info.status == "FINISHED"
        history = MlflowClient(uri).get_metric_history(child.info.run_id, "val_accuracy")
        assert sorted(m.step for m in history) == [1, 2]

    best = max(children, key=lambda c: c.data.metrics["val_accuracy"])
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert parent.data.tags["best.hidden_size"] == best.data.params["hidden_size"]
    assert parent.data.metrics["best_val_accuracy"] == best.data.metrics["val_accuracy"]

    table = list(
        csv.DictReader(io.StringIO(artifact_text(uri, parent.info.run_id, "sweep_results.csv")))
    )
    assert {row["run_id"] for row in table} == {c.info.run_id for c in children}
    assert table[0]["run_id"] == best.info.run_id
    assert "| job | overrides |" in artifact_text(uri, parent.info.run_id, "sweep_results.md")

    seeds = list(
        csv.DictReader(io.StringIO(artifact_text(uri, parent.info.run_id, "seed_summary.csv")))
    )
    for row in seeds:
        hidden = row["config"].removeprefix("hidden_size=")
        values = [
            c.data.metrics["val_accuracy"]
            for c in children
            if c.data.params["hidden_size"] == hidden
        ]
        assert float(row["val_accuracy_mean"]) == pytest.approx(statistics.fmean(values))
        assert float(row["val_accuracy_std"]) == pytest.approx(statistics.stdev(values))
    names = {a.path for a in MlflowClient(uri).list_artifacts(parent.info.run_id)}
    assert {"sweep_comparison.png", "seed_summary.png", "seed_summary.md"} <= names

    assert result.stdout.count("start ") == 4 and "Sweep results" in result.stdout
    assert "Across seeds" in result.stdout and "━━━━━━ 2/2" not in result.stdout  # no bars


@pytest.mark.slow
def test_a_sweep_over_presets_keeps_its_points_in_its_own_experiment(tmp_path):
    # experiment=debug asks for the MLflow experiment lstm-digits-debug; a sweep's point goes
    # into its sweep's, where the summary, the pruning rungs and the UI look for it.
    uri = sqlite_uri(tmp_path)
    result = run_cli(
        "train",
        "-m",
        "experiment=glob([deb*,wide])",
        *TINY,
        "hidden_size=8",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    parent, children = sweep_runs(uri)
    assert [c.data.params["tracking.experiment"] for c in children] == [
        "lstm-digits-debug",
        "lstm-digits",
    ]
    assert {c.info.experiment_id for c in children} == {parent.info.experiment_id}
    assert parent.data.tags["best_run_id"] in {c.info.run_id for c in children}


@pytest.mark.slow
def test_joblib_on_a_fresh_store_with_a_failing_job(tmp_path):
    uri = sqlite_uri(tmp_path)  # does not exist yet: three jobs start at once on it
    result = run_cli(
        "train",
        "-m",
        "hidden_size=8,0,16",
        *TINY,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=3",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "job 1 FAILED: hidden_size=0 is invalid" in result.stdout
    parent, children = sweep_runs(uri)
    said = (  # the failed sweep, named, and how to go on
        f"error: 1 sweep job(s) failed (job 1): see above; sweep {parent.info.run_id} is "
        f"FAILED with 1 run(s) unfinished ({children[1].info.run_id[:8]}); go on with: "
        f"lstm-digits resume {parent.info.run_id}"
    )
    assert result.stderr.strip() == said
    assert parent.info.status == "FAILED"
    assert [c.info.status for c in children] == ["FINISHED", "FAILED", "FINISHED"]
    assert "hidden_size=0 is invalid" in children[1].data.tags["error"]
    assert len({c.data.tags["output_dir"] for c in children}) == 3  # no collisions
    assert {c.data.tags["tf_threads"] for c in children if c.info.status == "FINISHED"} == {"1"}
    for child in (children[0], children[2]):  # chosen on validation, reported on test
        assert {"val_accuracy", "test_accuracy", "test_loss"} <= set(child.data.metrics)


@pytest.mark.slow
def test_ctrl_c_while_joblib_workers_warm_up_is_one_line_and_kills_the_sweep(tmp_path):
    """Interrupted after the parent run exists, while the workers still import (about 3 s),
    as a terminal does: every process of the group gets the SIGINT, the workers too."""
    uri = sqlite_uri(tmp_path)
    proc = subprocess.Popen(
        [
            CLI,
            "train",
            "-m",
            "hidden_size=8,16",
            *TINY,
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            f"tracking.uri={uri}",
        ],
        cwd=tmp_path,
        env=cli_env(PYTHONUNBUFFERED="1"),
        text=True,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        first = proc.stdout.readline()  # the sweep's first line: its parent run exists
        assert "sweep" in first and "parent run" in first, first
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130
    parent, children = sweep_runs(uri)
    assert stderr.strip().splitlines() == [  # the sweep, named, and how to go on
        f"error: interrupted: sweep {parent.info.run_id} is KILLED; go on with: "
        f"lstm-digits resume {parent.info.run_id}"
    ]  # nothing from joblib's workers or its resource tracker
    assert "Traceback" not in stdout
    assert parent.info.status == "KILLED"
    assert all(c.info.status != "RUNNING" for c in children)


@pytest.mark.slow
def test_a_sweep_that_cannot_start_leaves_nothing_running(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    uri = sqlite_uri(tmp_path)
    result = run_cli(
        "train",
        "-m",
        "hidden_size=8,16",
        *TINY,
        f"hydra.sweep.dir={blocker}/sweep",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: cannot write or read {blocker}/sweep: Not a directory"
    ]
    parent, children = sweep_runs(uri)
    assert parent.info.status == "FAILED" and "Not a directory" in parent.data.tags["error"]
    assert children == []


@pytest.mark.slow
def test_optuna_best_value_is_the_best_childs_metric(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    uri = sqlite_uri(tmp_path)
    result = run_cli(
        "train",
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        *TINY,
        f"tracking.uri={uri}",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    parent, children = sweep_runs(uri)
    assert len(children) == 3
    optimum = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    best = max(c.data.metrics["val_accuracy"] for c in children)
    assert optimum["best_value"] == pytest.approx(best, abs=1e-7)
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(best, abs=1e-7)
    searched = {"hidden_size", "learning_rate", "batch_size", "output_activation"}
    assert searched <= set(optimum["best_params"])


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path):
    uri = sqlite_uri(tmp_path)
    result = run_cli(
        "train",
        "-m",
        "hidden_size=8,16",
        *TINY,
        "hydra/launcher=local",
        f"tracking.uri={uri}",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    parent, children = sweep_runs(uri)
    assert [c.info.status for c in children] == ["FINISHED", "FINISHED"]
    assert parent.info.status == "FINISHED"
    assert any((tmp_path / "sweep" / ".submitit").iterdir())  # jobs went through submitit


@pytest.mark.slow
def test_sweep_against_a_tracking_server(tmp_path, mlflow_server):
    mlflow_server = mlflow_server.url
    result = run_cli(
        "train", "-m", "hidden_size=8,16", "epochs=2", f"tracking.uri={mlflow_server}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "outputs" / "mlflow.db").exists()  # nothing local: all via HTTP
    parent, children = sweep_runs(mlflow_server)
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:")  # served by the server
    assert [c.info.status for c in children] == ["FINISHED", "FINISHED"]
    table = artifact_text(mlflow_server, parent.info.run_id, "sweep_results.csv")
    assert all(c.info.run_id in table for c in children)
    import mlflow

    mlflow.set_tracking_uri(mlflow_server)
    try:
        model = mlflow.pyfunc.load_model(f"runs:/{children[0].info.run_id}/model")  # via it
    finally:
        mlflow.set_tracking_uri(None)  # later tests in this process start from no URI, as a CLI
    assert model.predict(np.zeros((2, 8, 8))).shape == (2, 10)  # float64, as sklearn's


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_sigterm_during_a_sweep_kills_every_run(tmp_path, launcher):
    """SIGTERM to the command only, as `docker stop` or Kubernetes send it: the jobs' runs, in
    this process or in joblib's workers, and the parent all end KILLED; no worker is left."""
    uri = sqlite_uri(tmp_path)
    proc = subprocess.Popen(
        [
            CLI,
            "train",
            "-m",
            "hidden_size=8,16",
            "epochs=100000",
            "tracking.log_model=false",
            f"hydra/launcher={launcher}",
            f"tracking.uri={uri}",
        ],
        cwd=tmp_path,
        env=cli_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        training = []
        while time.monotonic() < deadline and not training:  # a job has logged epochs
            time.sleep(1)
            training = [r for r in runs_so_far(uri) if "val_accuracy" in r.data.metrics]
        assert training, "no job logged an epoch within two minutes"
        workers = descendant_pids(proc.pid)
    finally:
        stderr = stop(proc, signal.SIGTERM)
    assert proc.returncode == 143, stderr
    parent, children = sweep_runs(uri)
    assert parent.info.status == "KILLED"
    assert children and {c.info.status for c in children} == {"KILLED"}
    stopped = " ".join(sorted(c.info.run_id[:8] for c in children))
    (line,) = stderr.strip().splitlines()  # the sweep and its stopped runs, named
    said = re.fullmatch(
        rf"error: terminated \(SIGTERM\): sweep {parent.info.run_id} is KILLED with "
        rf"{len(children)} run\(s\) unfinished \(([0-9a-f ]+)\); go on with: "
        rf"lstm-digits resume {parent.info.run_id}",
        line,
    )
    assert said and " ".join(sorted(said[1].split())) == stopped, line
    time.sleep(1)
    assert not [pid for pid in workers if alive(pid)]


@pytest.mark.slow
def test_a_password_in_the_tracking_uri_is_stored_and_shown_nowhere(tmp_path, mlflow_server):
    """The server takes any credentials (it has no auth): what matters is where they end up."""
    secret = "pa55-W0rd-leak-check"
    port = mlflow_server.url.rsplit(":", 1)[1]
    uri = f"http://alice:{secret}@127.0.0.1:{port}"
    result = run_cli("train", "-m", "hidden_size=8,16", *TINY, f"tracking.uri={uri}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout + result.stderr
    assert "alice:***@127.0.0.1" in result.stdout  # shown masked
    client = MlflowClient(mlflow_server.url)
    parent = client.search_runs(
        [client.get_experiment_by_name(EXPERIMENT).experiment_id],
        filter_string=f"tags.overrides LIKE '%alice:***@127.0.0.1:{port}%'",
    )
    assert parent, "the sweep's runs record the masked URI"
    for run in parent:
        assert "tracking.uri" not in (run.info.run_name or "")
    leaks = [
        path
        for path in mlflow_server.root.rglob("*")
        if path.is_file() and secret.encode() in path.read_bytes()
    ]
    assert leaks == []  # not in the database (params, tags, names) nor in any artifact
    one = run_cli("train", *TINY, "hidden_size=8", f"tracking.uri={uri}", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert secret not in one.stdout + one.stderr
    assert [
        p
        for p in mlflow_server.root.rglob("*")
        if p.is_file() and secret.encode() in p.read_bytes()
    ] == []
    hydras = [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert list(tmp_path.rglob("multirun.yaml")) and list(tmp_path.rglob(".hydra/overrides.yaml"))
    assert hydras == []  # nor in Hydra's record of the jobs (.hydra/*.yaml, multirun.yaml)


# A 3-point sweep whose points train for a few seconds each, so that a stop lands mid-way.
STOPPABLE = ("-m", "hidden_size=8,12,16", "epochs=100", "batch_size=8", "tracking.log_model=false")
COMPARED = (
    "job",
    "overrides",
    "status",
    "val_accuracy",
    "test_accuracy",
    "val_loss",
    "train_accuracy",
    "best_val_accuracy",
)


def _summary(uri: str, parent_id: str) -> list[dict]:
    """The sweep's results table as its parent keeps it, without what differs between runs
    of the same points (ids, times)."""
    rows = csv.DictReader(io.StringIO(artifact_text(uri, parent_id, "sweep_results.csv")))
    return [{k: row[k] for k in COMPARED} for row in rows]


@pytest.fixture(scope="module")
def unstopped_sweep(tmp_path_factory):
    """The sweep, never stopped: what a stopped and resumed one must equal."""
    workdir = tmp_path_factory.mktemp("unstopped")
    uri = sqlite_uri(workdir)
    done = run_cli("train", *STOPPABLE, f"tracking.uri={uri}", cwd=workdir)
    assert done.returncode == 0, done.stderr
    parent, children = sweep_runs(uri)
    return _summary(uri, parent.info.run_id), children


@pytest.mark.slow
@pytest.mark.fault
@pytest.mark.parametrize(
    ("launcher", "stopped_once"),
    [
        # Jobs 0 and 1 side by side: both stopped, job 2 never started.
        (("hydra/launcher=joblib", "hydra.launcher.n_jobs=2"), ("0", 10)),
        # One after another: job 0 finished, job 1 stopped, job 2 never started.
        (("hydra/launcher=basic",), ("1", 10)),
    ],
    ids=["joblib", "basic"],
)
def test_a_stopped_sweep_resumed_equals_the_unstopped_one(
    tmp_path, unstopped_sweep, launcher, stopped_once
):
    """SIGTERM to the command mid-way, then `lstm-digits resume SWEEP`: every point FINISHED as
    in the sweep that was never stopped, with the same numbers, and the same summary."""
    uri = sqlite_uri(tmp_path)
    command = [CLI, "train", *STOPPABLE, *launcher, f"tracking.uri={uri}"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    proc = subprocess.Popen(command, cwd=tmp_path, env=cli_env(), text=True, **pipes)
    job, epochs = stopped_once
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # the job has logged `epochs` epochs
            time.sleep(0.3)
            runs = [r for r in runs_so_far(uri) if r.data.tags.get("sweep_job") == job]
            client = MlflowClient(uri)
            if runs and len(client.get_metric_history(runs[0].info.run_id, "val_loss")) >= epochs:
                break
    finally:
        stderr = stop(proc, signal.SIGTERM)
    assert proc.returncode == 143, stderr
    parent, children = sweep_runs(uri)
    assert parent.info.status == "KILLED" and len(children) == 2  # job 2 never started
    assert f"lstm-digits resume {parent.info.run_id}" in stderr.strip().splitlines()[-1]

    resumed = run_cli("resume", parent.info.run_id[:8], "--tracking-uri", uri, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    parent, children = sweep_runs(uri)
    assert parent.info.status == "FINISHED" and parent.data.tags["resumed"] == "1"
    want_summary, want_children = unstopped_sweep
    assert _summary(uri, parent.info.run_id) == want_summary
    assert [c.info.status for c in children] == ["FINISHED"] * 3
    for got, want in zip(children, want_children, strict=True):
        steps = [m.step for m in MlflowClient(uri).get_metric_history(got.info.run_id, "val_loss")]
        assert sorted(steps) == list(range(1, 101))  # every epoch once
        for key in ("val_accuracy", "test_accuracy", "val_loss"):
            assert got.data.metrics[key] == pytest.approx(want.data.metrics[key], abs=1e-6)
    best = next(c for c in children if c.info.run_id == parent.data.tags["best_run_id"])
    assert best.data.tags["sweep_job"] == want_summary[0]["job"]
