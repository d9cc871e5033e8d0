"""The cluster tier: a real one-node SLURM and a PostgreSQL-backed `mlflow server` with MLflow's
basic-auth app, started by `cluster/cluster.sh up` (the `cluster` fixture, in conftest.py). The
tests run as the server's admin (tests/test_team_server.py: as its users). Needs root; skipped
otherwise. After every test: no run RUNNING in the server, no job in the queue."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import CLI, EXPERIMENT, cli_env, cluster_runs, final_live_line, run_in_terminal


def _sweep(tmp_path: Path, uri: str, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            CLI,
            "train",
            "-m",
            "hydra/launcher=slurm",
            f"tracking.uri={uri}",
            "hydra.sweep.dir=sweep",
            *overrides,
        ],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _children(uri: str, since: set[str]) -> tuple[object, list]:
    new = [r for r in cluster_runs(uri) if r.info.run_id not in since]
    (parent,) = [r for r in new if r.data.tags.get("lstm_digits.sweep") == "parent"]
    children = [r for r in new if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, sorted(children, key=lambda r: int(r.data.tags["sweep_job"]))


@pytest.mark.slow
@pytest.mark.cluster
def test_a_slurm_grid_sweep_lands_in_the_postgresql_backed_server(clean, tmp_path):
    uri = clean
    before = {r.info.run_id for r in cluster_runs(uri)}
    proc = _sweep(tmp_path, uri, "hidden_size=8,16", "epochs=2")
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout + stderr
    parent, children = _children(uri, before)
    assert parent.info.status == "FINISHED"
    assert [c.info.status for c in children] == ["FINISHED", "FINISHED"]
    assert {c.data.params["hidden_size"] for c in children} == {"8", "16"}
    assert all({"val_accuracy", "test_accuracy"} <= set(c.data.metrics) for c in children)
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:")  # served by the server
    table = Path(MlflowClient(uri).download_artifacts(parent.info.run_id, "sweep_results.csv"))
    assert all(c.info.run_id in table.read_text() for c in children)
    noise = [line for line in (stdout + stderr).splitlines() if "accounting" in line.lower()]
    assert len(noise) <= 1, noise  # one note about missing accounting, not one per poll
    assert "Bypassing" not in stdout + stderr
    logs = list((tmp_path / "sweep" / ".submitit").rglob("*_log.out"))
    assert logs and any("epoch 2/2" in log.read_text() for log in logs)  # plain progress lines
    args = ["runs", "--tracking-uri", uri, "--sweep", parent.info.run_id, "--format", "json"]
    listed = subprocess.run([CLI, *args], env=cli_env(), capture_output=True, text=True)
    assert {r["run_id"] for r in json.loads(listed.stdout)} == {c.info.run_id for c in children}
    best = children[0].info.run_id
    evaluated = subprocess.run(
        [CLI, "evaluate", best, "--tracking-uri", uri],
        env=cli_env(),
        capture_output=True,
        text=True,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert "equal" in evaluated.stdout


def _wait_for_epochs(uri: str, since: set[str], job: str, timeout: float = 240):
    """The new sweep's child run of job `job`, once it has logged epochs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in cluster_runs(uri):
            new = run.info.run_id not in since and run.data.tags.get("sweep_job") == job
            if new and "val_accuracy" in run.data.metrics:
                return run
        time.sleep(1)
    raise AssertionError(f"job {job} did not log epochs in time")


def _scancel_once_training(proc, uri: str, before: set[str], job: str, *options: str):
    """Once sweep job `job` has logged epochs, `scancel OPTIONS` the one SLURM job queued;
    wait for the sweep and return its stdout and stderr."""
    try:
        _wait_for_epochs(uri, before, job)
        (slurm_id,) = subprocess.run(
            ["squeue", "-h", "-o", "%i"], capture_output=True, text=True
        ).stdout.split()
        subprocess.run(["scancel", *options, slurm_id], check=True)
        return proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
@pytest.mark.cluster
def test_a_cancelled_job_ends_killed_and_the_sweep_says_so(clean, tmp_path):
    uri = clean
    before = {r.info.run_id for r in cluster_runs(uri)}
    proc = _sweep(tmp_path, uri, "epochs=3,100000", "hidden_size=8", "tracking.log_model=false",
                  "hydra.launcher.cpus_per_task=1")  # fmt: skip  # both jobs at once
    try:
        _wait_for_epochs(uri, before, "1")
        array = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True)
        (slurm_id,) = [j for j in array.stdout.split() if j.endswith("_1")]
        subprocess.run(["scancel", slurm_id], check=True)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stdout + stderr
    parent, children = _children(uri, before)
    assert stderr.strip().splitlines()[-1] == (
        f"error: 1 sweep job(s) failed (job 1): see above; sweep {parent.info.run_id} is FAILED "
        f"with 1 run(s) unfinished ({children[1].info.run_id[:8]}); go on with: "
        f"lstm-digits resume {parent.info.run_id}"
    )
    assert [c.info.status for c in children] == ["FINISHED", "KILLED"]
    assert children[1].data.tags["error"] == "terminated (SIGTERM)"
    assert parent.info.status == "FAILED"
    history = MlflowClient(uri).get_metric_history(children[1].info.run_id, "val_accuracy")
    assert len(history) >= 1  # the metrics so far are kept


@pytest.mark.slow
@pytest.mark.cluster
def test_a_job_past_its_time_limit_ends_killed(clean, tmp_path):
    """SLURM's warning (SIGUSR2) comes signal_delay_s before the limit, or up to 60 s earlier
    (sbatch(1)): here at least 30 s after the start, when the run trains. (With a 1-minute
    limit and the default 120 s it came at the first check after the start, on a loaded
    machine before the job had made its run: submitit then ends the job with no run.)"""
    uri = clean
    before = {r.info.run_id for r in cluster_runs(uri)}
    proc = _sweep(
        tmp_path,
        uri,
        "epochs=100000",
        "hidden_size=8",
        "tracking.log_model=false",
        "hydra.launcher.timeout_min=2",
        "hydra.launcher.max_num_timeout=0",
        "hydra.launcher.signal_delay_s=30",
    )
    stdout, stderr = proc.communicate(timeout=400)
    assert proc.returncode == 1, stdout + stderr
    parent, (child,) = _children(uri, before)
    assert child.info.status == "KILLED" and "stopped by the scheduler" in child.data.tags["error"]
    assert parent.info.status == "FAILED"


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.parametrize(
    ("override", "fragment"),
    [("hydra.launcher.partition=nope", "invalid partition"), ("hydra.launcher.mem_gb=100000", "")],
)
def test_a_job_slurm_refuses_is_one_line_and_fails_the_parent(clean, tmp_path, override, fragment):
    uri = clean
    before = {r.info.run_id for r in cluster_runs(uri)}
    proc = _sweep(tmp_path, uri, "hidden_size=8", "epochs=2", override)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], stderr
    parent, children = _children(uri, before)
    assert parent.info.status == "FAILED" and children == []


@pytest.mark.slow
@pytest.mark.cluster
def test_a_preempted_job_is_requeued_and_goes_on_with_the_same_run(clean, tmp_path):
    """SLURM's warning signal (SIGUSR2: a time limit near, or a preemption) makes the job save
    a checkpoint; submitit requeues it, and the new start continues the same child run."""
    uri = clean
    before = {r.info.run_id for r in cluster_runs(uri)}
    proc = _sweep(
        tmp_path,
        uri,
        "epochs=1500",
        "hidden_size=8",
        "tracking.log_model=false",
        "checkpoint.every_epochs=500",
        "checkpoint.every_seconds=0",
    )
    stdout, stderr = _scancel_once_training(proc, uri, before, "0", "--signal=USR2")
    assert proc.returncode == 0, stdout + stderr
    parent, (child,) = _children(uri, before)
    assert (parent.info.status, child.info.status) == ("FINISHED", "FINISHED")
    assert child.data.tags["requeued"] == "1"
    steps = [m.step for m in MlflowClient(uri).get_metric_history(child.info.run_id, "val_loss")]
    assert sorted(steps) == list(range(1, 1501))  # one unbroken history, no step twice


PACKED = ("hydra.launcher.points_per_task=2", "hidden_size=8", "tracking.log_model=false")


def _submitted_jobs(tmp_path: Path) -> set[str]:
    """The SLURM jobs a sweep submitted (submitit's folder per job: <array>_<index>)."""
    folders = (tmp_path / "sweep" / ".submitit").iterdir()
    return {p.name for p in folders if "_" in p.name and p.is_dir()}


@pytest.mark.slow
@pytest.mark.cluster
def test_packed_points_share_slurm_jobs_and_keep_a_run_each(clean, tmp_path):
    uri = clean
    before = {r.info.run_id for r in cluster_runs(uri)}
    proc = _sweep(
        tmp_path, uri, *PACKED, "seed=1,2,3,4,5", "epochs=2", "hydra.launcher.cpus_per_task=1"
    )
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout + stderr
    assert len(_submitted_jobs(tmp_path)) == 3  # 5 points, 2 per job
    parent, children = _children(uri, before)
    assert parent.info.status == "FINISHED"
    assert [c.data.tags["sweep_job"] for c in children] == ["0", "1", "2", "3", "4"]
    assert [c.data.params["seed"] for c in children] == ["1", "2", "3", "4", "5"]
    assert all(c.info.status == "FINISHED" for c in children)
    assert len({c.data.tags["output_dir"] for c in children}) == 5  # a directory per point
    logs = [p.read_text() for p in (tmp_path / "sweep" / ".submitit").rglob("*_log.out")]
    assert any("[job 0] done" in log and "[job 1] done" in log for log in logs)


@pytest.mark.slow
@pytest.mark.cluster
def test_packed_points_on_slurm_are_pruned_through_the_server(clean, tmp_path):
    """Two SLURM jobs of two points each, side by side: each hopeless point (learning rate
    3e-5, at chance) reaches its rung after its job's good point recorded its own there."""
    uri = clean
    before = {r.info.run_id for r in cluster_runs(uri)}
    grid = ("seed=1,2", "learning_rate=0.01,3e-05", "epochs=4", "hydra.launcher.cpus_per_task=1")
    proc = _sweep(tmp_path, uri, *PACKED, *grid, "prune=asha", "prune.grace_epochs=2")
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout + stderr
    assert len(_submitted_jobs(tmp_path)) == 2
    parent, children = _children(uri, before)
    hopeless = [c for c in children if c.data.params["learning_rate"] == "3e-05"]
    assert [c.data.tags.get("pruned_at_epoch") for c in hopeless] == ["2", "2"]
    assert all(c.info.status == "FINISHED" for c in children)
    assert "rung/2/val_loss" in hopeless[0].data.metrics
    pruned = sum("pruned_at_epoch" in c.data.tags for c in children)
    assert parent.info.status == "FINISHED" and parent.data.metrics["pruned_jobs"] == pruned
    assert "PRUNED @2" in stdout
    logs = [p.read_text() for p in (tmp_path / "sweep" / ".submitit").rglob("*_log.out")]
    assert sum(log.count("pruned at epoch 2") for log in logs) == pruned


@pytest.mark.slow
@pytest.mark.cluster
def test_a_slurm_sweep_in_a_terminal_shows_its_live_line(clean, tmp_path):
    """The main process reads the server while SLURM runs the jobs; their lines go to their
    own logs, so the terminal shows the live line and the table."""
    uri = clean
    code, raw = run_in_terminal(
        "train",
        "-m",
        "hydra/launcher=slurm",
        f"tracking.uri={uri}",
        "hydra.sweep.dir=sweep",
        "hidden_size=8,16",
        "epochs=2",
        "tracking.log_model=false",
        cwd=tmp_path,
        timeout=600,
    )
    assert code == 0, raw
    last = final_live_line(raw)
    assert last.startswith("sweep 2/2 done · 0 pruned · 0 failed · "), last
    assert "best val 0." in last and "Sweep results" in raw


@pytest.mark.slow
@pytest.mark.cluster
def test_a_long_sweep_command_names_its_runs_within_postgresqls_limit(clean):
    """PostgreSQL refuses a run name over 250 characters (SQLite keeps it): a sweep of many
    overrides failed there before it started. Names are cut to fit."""
    from lstm_cli.tracking import store
    from lstm_cli.tracking.parent_run import start_parent
    from lstm_cli.tracking.run_handle import MAX_NAME, start_run

    uri = clean
    experiment_id = store.open_experiment(uri, EXPERIMENT)
    long = "sweep " + " ".join(f"key_{k}=1,2,3" for k in range(40))
    with (
        start_parent(experiment_id, long, {}) as parent,
        start_run(experiment_id, long, {}, {}, parent.run_id) as run,
    ):
        pass
    client = MlflowClient(uri)
    for run_id in (parent.run_id, run.run_id):
        found = client.get_run(run_id)
        assert found.info.status == "FINISHED"
        assert len(found.info.run_name) == MAX_NAME and found.info.run_name.endswith("…")


@pytest.mark.slow
@pytest.mark.cluster
def test_early_stopping_on_slurm_keeps_each_points_best_epoch(clean, tmp_path):
    """min_delta=10: no epoch improves enough, every point stops after its second."""
    uri = clean
    before = {r.info.run_id for r in cluster_runs(uri)}
    proc = _sweep(
        tmp_path,
        uri,
        *PACKED,
        "seed=1,2",
        "epochs=6",
        "early_stopping.patience=1",
        "early_stopping.min_delta=10",
        "hydra.launcher.cpus_per_task=1",
    )
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout + stderr
    _, children = _children(uri, before)
    assert [c.data.metrics.get("stopped_epoch") for c in children] == [2, 2]
    assert [c.data.metrics.get("restored_epoch") for c in children] == [1, 1]
    assert all("test_accuracy" in c.data.metrics for c in children)


@pytest.mark.slow
@pytest.mark.cluster
def test_a_cancelled_pack_ends_its_run_killed_and_starts_no_other(clean, tmp_path):
    uri = clean
    before = {r.info.run_id for r in cluster_runs(uri)}
    proc = _sweep(tmp_path, uri, *PACKED, "epochs=100000,2")
    stdout, stderr = _scancel_once_training(proc, uri, before, "0")
    assert proc.returncode == 1, stdout + stderr
    parent, children = _children(uri, before)
    assert [(c.data.tags["sweep_job"], c.info.status) for c in children] == [("0", "KILLED")]
    assert parent.info.status == "FAILED"
    logs = [p.read_text() for p in (tmp_path / "sweep" / ".submitit").rglob("*_log.out")]
    assert any("[job 1] not started: its SLURM job was stopped" in log for log in logs)


@pytest.mark.slow
@pytest.mark.cluster
def test_a_requeued_pack_skips_its_finished_point_and_goes_on_with_the_stopped_one(clean, tmp_path):
    uri = clean
    before = {r.info.run_id for r in cluster_runs(uri)}
    proc = _sweep(
        tmp_path,
        uri,
        *PACKED,
        "epochs=3,1500",
        "checkpoint.every_epochs=500",
        "checkpoint.every_seconds=0",
    )
    stdout, stderr = _scancel_once_training(proc, uri, before, "1", "--signal=USR2")
    assert proc.returncode == 0, stdout + stderr
    parent, (first, second) = _children(uri, before)  # one run per point, no second attempt
    assert [parent.info.status, first.info.status, second.info.status] == ["FINISHED"] * 3
    assert "requeued" not in first.data.tags and second.data.tags["requeued"] == "1"
    client = MlflowClient(uri)
    assert [m.step for m in client.get_metric_history(first.info.run_id, "val_loss")] == [1, 2, 3]
    steps = [m.step for m in client.get_metric_history(second.info.run_id, "val_loss")]
    assert sorted(steps) == list(range(1, 1501))
    logs = [p.read_text() for p in (tmp_path / "sweep" / ".submitit").rglob("*_log.out")]
    assert any("[job 0] done before: val_accuracy=" in log for log in logs)


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.fault
def test_a_sweep_whose_slurm_jobs_were_cancelled_is_finished_by_resume(clean, tmp_path):
    """`scancel` of every job of a sweep, then `lstm-digits resume SWEEP`: the sweep goes on on
    SLURM, each stopped point in its own run, and ends FINISHED with its summary."""
    uri, epochs = clean, 300
    before = {r.info.run_id for r in cluster_runs(uri)}
    grid = ("hidden_size=8,16", f"epochs={epochs}", "batch_size=8", "tracking.log_model=false")
    proc = _sweep(tmp_path, uri, *grid, "hydra.launcher.cpus_per_task=1")  # both jobs at once
    try:
        _wait_for_epochs(uri, before, "0")
        subprocess.run(["scancel", "--user", "root"], check=True)  # the sweep's jobs only
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stdout + stderr
    parent, children = _children(uri, before)
    assert parent.info.status == "FAILED" and all(c.info.status != "FINISHED" for c in children)
    assert (
        stderr.strip()
        .splitlines()[-1]
        .endswith(f"go on with: lstm-digits resume {parent.info.run_id}")
    ), stderr

    command = [CLI, "resume", parent.info.run_id, "--tracking-uri", uri]
    resumed = subprocess.run(
        command, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=900
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    parent, children = _children(uri, before)
    assert parent.info.status == "FINISHED" and parent.data.tags["resumed"] == "1"
    assert [c.info.status for c in children] == ["FINISHED", "FINISHED"]
    client = MlflowClient(uri)
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_loss")]
        assert sorted(steps) == list(range(1, epochs + 1))  # every epoch once
    assert parent.data.tags["best_run_id"] in {c.info.run_id for c in children}
    assert "sweep_results.csv" in {a.path for a in client.list_artifacts(parent.info.run_id)}
