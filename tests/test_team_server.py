"""The cluster tier's team server: MLflow's basic-auth app in front of the PostgreSQL-backed
store (`cluster/cluster.sh up`), with two teammates `cluster.sh user` added, alice and bob.

Each test works in an experiment of its own, which alice creates (and so manages); bob may read
it (the server's default permission) and write nothing to it. Needs root; skipped otherwise.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest
from mlflow.server import get_app_client
from mlflow.tracking import MlflowClient

from tests.helpers import CLI, CLUSTER_STATE, cli_env, cluster_runs, run_cli, run_cluster

USERS = ("alice", "bob")


@pytest.fixture(scope="module")
def teammates(cluster) -> dict[str, str]:
    """alice and bob, added by `cluster.sh user` as the docs' "add a teammate" does: name ->
    password (from the file it keeps, mode 0600)."""
    passwords = {}
    for name in USERS:
        added = run_cluster("user", name)
        assert added.returncode == 0, added.stdout + added.stderr
        file = CLUSTER_STATE / "users" / name
        assert file.stat().st_mode & 0o777 == 0o600
        passwords[name] = file.read_text()
        assert passwords[name] not in added.stdout + added.stderr  # its path only
    return passwords


@pytest.fixture
def team(clean, cluster_as, teammates, tmp_path):
    """(uri, a new experiment's name): the server, and where this test's runs go."""
    yield clean, f"team-{uuid.uuid4().hex[:8]}"
    cluster_as("admin")  # `clean` reads every run as the admin


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one line a refusal prints, last on stderr (before it: TensorFlow's start-up lines at
    most, when the command imported it), with no traceback."""
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and lines, result.stderr
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], result.stderr
    return lines[-1]


@pytest.mark.slow
@pytest.mark.cluster
def test_bob_reads_alices_experiment_but_may_not_write_to_it(team, cluster_as, tmp_path):
    uri, experiment = team
    where = (f"tracking.uri={uri}", f"tracking.experiment={experiment}")
    cluster_as("alice")
    made = run_cli("train", "-m", "seed=1,2", "epochs=2", "hidden_size=8", *where, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    runs = cluster_runs(uri, experiment)
    assert {r.data.tags["mlflow.user"] for r in runs} == {"alice"}  # the parent and its points
    first, second = sorted(r.info.run_id for r in runs if "mlflow.parentRunId" in r.data.tags)
    registered = run_cli(
        "register", first, f"{experiment}-model", "--tracking-uri", uri, cwd=tmp_path
    )
    assert registered.returncode == 0, registered.stderr

    cluster_as("bob")
    read = run_cli(
        "compare", first, second, "--tracking-uri", uri, "--format", "json", cwd=tmp_path
    )
    assert read.returncode == 0 and first in read.stdout, read.stderr  # READ: the default
    server = f"on the tracking server {uri} (403)"
    ask = "ask its owner or the server's admin for it"

    refused = run_cli("train", "epochs=2", *where, cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (  # after the config it shows
        f"error: user bob may not log runs into experiment '{experiment}' {server}: that needs "
        f"EDIT permission on it; {ask}"
    )
    before = MlflowClient(uri).get_run(first)
    resumed = run_cli("resume", first, "epochs=4", "--tracking-uri", uri, cwd=tmp_path)
    assert resumed.returncode == 2
    assert error_line(resumed) == (
        f"error: user bob may not go on with run {first} of experiment '{experiment}' {server}: "
        f"that needs EDIT permission on its experiment; {ask}"
    )
    model = f"{experiment}-model"
    bobs = run_cli("register", second, model, "--tracking-uri", uri, cwd=tmp_path)
    assert bobs.returncode == 2
    assert error_line(bobs) == (
        f"error: user bob may not register a new version of model '{model}' {server}: that needs "
        f"EDIT permission on the model; {ask}"
    )

    cluster_as("alice")  # she manages her experiment: bob may no longer read it either
    experiment_id = runs[0].info.experiment_id
    get_app_client("basic-auth", uri).grant_user_permission(  # MLflow 3.17's grants
        "bob", "experiment", experiment_id, "DENY"
    )
    cluster_as("bob")
    hidden = run_cli("compare", first, second, "--tracking-uri", uri, cwd=tmp_path)
    assert hidden.returncode == 2
    assert error_line(hidden) == (
        f"error: user bob may not read run {first} {server}: that needs READ permission on its "
        f"experiment; {ask}"
    )
    listed = run_cli("runs", "--tracking-uri", uri, "--experiment", experiment, cwd=tmp_path)
    assert listed.returncode == 2
    assert error_line(listed) == (
        f"error: user bob may not read experiment '{experiment}' {server}: that needs READ "
        f"permission on it; {ask}"
    )

    cluster_as("alice")  # what bob tried left nothing behind
    assert len(cluster_runs(uri, experiment)) == 3
    after = MlflowClient(uri).get_run(first)
    assert (after.info.status, after.info.end_time) == (before.info.status, before.info.end_time)
    assert after.data.tags == before.data.tags
    versions = MlflowClient(uri).search_model_versions(f"name = '{model}'")
    assert [v.run_id for v in versions] == [first]


@pytest.mark.slow
@pytest.mark.cluster
def test_no_credentials_or_a_wrong_password_is_one_line_and_makes_nothing(
    team, cluster_as, tmp_path, monkeypatch
):
    uri, experiment = team
    where = (f"tracking.uri={uri}", f"tracking.experiment={experiment}")
    variables = "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)"
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    nobody = run_cli("train", "epochs=2", *where, cwd=tmp_path)
    assert nobody.returncode == 2
    assert error_line(nobody) == (
        f"error: the tracking server {uri} asks who you are (401): set {variables}"
    )
    cluster_as("alice", password="not-her-password")
    wrong = run_cli("runs", "--tracking-uri", uri, cwd=tmp_path)
    assert wrong.returncode == 2
    assert error_line(wrong) == (
        f"error: the tracking server {uri} did not take the credentials of user alice (401): "
        f"set {variables}"
    )
    assert "not-her-password" not in wrong.stdout + wrong.stderr
    assert not (tmp_path / "outputs").exists()  # refused before Hydra made a directory
    cluster_as("admin")
    assert MlflowClient(uri).get_experiment_by_name(experiment) is None


def _searched_for(secret: str, *places: Path) -> list[str]:
    """The files under `places` whose bytes hold `secret`."""
    found = []
    for place in places:
        for path in [place] if place.is_file() else place.rglob("*"):
            if path.is_file() and secret.encode() in path.read_bytes():
                found.append(str(path))
    return found


@pytest.mark.slow
@pytest.mark.cluster
def test_a_slurm_sweep_as_alice_keeps_her_password_out_of_everything_it_stores(
    team, cluster_as, teammates, tmp_path
):
    """Her credentials reach the SLURM jobs in their environment only: the database, the
    artifacts, the sweep's folder (submitit's scripts, pickles and logs; Hydra's .hydra/) and
    the server's log are searched for her password."""
    uri, experiment = team
    password = cluster_as("alice")
    sweep = subprocess.Popen(
        [CLI, "train", "-m", "hydra/launcher=slurm", "hydra.sweep.dir=sweep", "hidden_size=8,16",
         "epochs=2", f"tracking.uri={uri}", f"tracking.experiment={experiment}",
         "hydra.launcher.cpus_per_task=1"],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    names = set()
    while sweep.poll() is None:  # the jobs' names, as squeue (and sacct) would show them
        queued = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True)
        names.update(queued.stdout.split())
        time.sleep(0.5)
    stdout, stderr = sweep.communicate()
    assert sweep.returncode == 0, stdout + stderr
    runs = cluster_runs(uri, experiment)
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["mlflow.user"] for r in runs} == {"alice"}
    assert names and not any(password in name for name in names)

    dump = tmp_path / "database.sql"
    clusters = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True)
    port = clusters.stdout.split()[2]  # VERSION NAME PORT ...: the one cluster.sh uses
    with dump.open("wb") as out:  # the runs' database and the users' (a hash of her password)
        for database in ("mlflow", "mlflow_auth"):
            subprocess.run(
                ["runuser", "-u", "postgres", "--", "pg_dump", "-p", port, database],
                stdout=out, check=True, cwd="/",
            )  # fmt: skip
    assert b"alice" in dump.read_bytes()  # the dump holds her runs, and her name
    places = (dump, tmp_path / "sweep", CLUSTER_STATE / "artifacts", CLUSTER_STATE / "log")
    assert (tmp_path / "sweep" / ".submitit").is_dir() and list(
        (tmp_path / "sweep").rglob(".hydra")
    )
    assert _searched_for(password, *places) == []
    assert password not in stdout + stderr


@pytest.mark.slow
@pytest.mark.cluster
def test_a_credential_revoked_during_a_run_ends_it_in_one_line_and_resume_finishes_it(
    team, cluster_as, teammates, tmp_path
):
    uri, experiment = team
    epochs = 600
    password = cluster_as("alice")
    admin = get_app_client("basic-auth", uri)  # its credentials: read when it is called

    def set_password(new: str) -> None:
        with pytest.MonkeyPatch.context() as as_admin:
            as_admin.setenv("MLFLOW_TRACKING_USERNAME", "admin")
            as_admin.setenv(
                "MLFLOW_TRACKING_PASSWORD", (CLUSTER_STATE / "admin-password").read_text()
            )
            admin.update_user_password("alice", new)

    train = subprocess.Popen(
        [CLI, "train", f"epochs={epochs}", "batch_size=8", "hidden_size=16",
         "checkpoint.every_epochs=50", "checkpoint.every_seconds=0", "tracking.log_model=false",
         f"tracking.uri={uri}", f"tracking.experiment={experiment}"],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        run = _wait_for_epochs(uri, experiment, 120)
        set_password("revoked-" + uuid.uuid4().hex)
        stdout, stderr = train.communicate(timeout=300)
        assert train.returncode == 1, stdout + stderr
        assert stderr.strip().splitlines()[-1] == (
            f"error: the tracking server {uri} stopped taking the credentials of user alice "
            "(401): set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or "
            f"MLFLOW_TRACKING_TOKEN) to working ones; then go on with: lstm-digits resume {run}"
        )
        refused = run_cli("resume", run, "--tracking-uri", uri, cwd=tmp_path)  # still revoked
        assert refused.returncode == 2 and "(401)" in error_line(refused)
    finally:
        if train.poll() is None:
            train.kill()
            train.wait()
        set_password(password)  # access restored (whatever happened: the next tests sign in)

    resumed = run_cli("resume", run, "--tracking-uri", uri, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    client = MlflowClient(uri)
    finished = client.get_run(run)
    assert finished.info.status == "FINISHED" and finished.data.tags["resumed"] == "1"
    steps = [m.step for m in client.get_metric_history(run, "val_loss")]
    assert sorted(steps) == list(range(1, epochs + 1))  # every epoch once
    assert "test_accuracy" in finished.data.metrics


def _wait_for_epochs(uri: str, experiment: str, epochs: int, timeout: float = 240) -> str:
    """The id of the one run of `experiment`, once it has logged `epochs` epochs."""
    deadline = time.monotonic() + timeout
    client = MlflowClient(uri)
    while time.monotonic() < deadline:
        for run in cluster_runs(uri, experiment):
            history = client.get_metric_history(run.info.run_id, "val_loss")
            if len(history) >= epochs:
                return run.info.run_id
        time.sleep(0.5)
    raise AssertionError(f"no run of {experiment} logged {epochs} epochs in time")


@pytest.mark.slow
@pytest.mark.cluster
def test_the_admin_password_is_kept_private_and_the_server_lets_in_no_one_else(cluster):
    """`up` wrote the admin's password 0600 and printed only the command that reads it; the
    server's command line (as `ps` shows it) holds none of its secrets."""
    state = CLUSTER_STATE
    for name in ("admin-password", "db-password", "secret-key"):
        assert (state / name).stat().st_mode & 0o777 == 0o600, name
    secrets = [
        (state / name).read_text() for name in ("admin-password", "db-password", "secret-key")
    ]
    pid = (state / "run" / "mlflow.pid").read_text().strip()
    command = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    assert "basic-auth" in command and not any(s in command for s in secrets)
    up = run_cluster("up")  # already up: says how to sign in, not the password
    assert up.returncode == 0 and "MLFLOW_TRACKING_PASSWORD=$(cat " in up.stdout
    assert not any(s in up.stdout + up.stderr for s in secrets)
    with pytest.MonkeyPatch.context() as nobody:
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            nobody.delenv(name, raising=False)
        with pytest.raises(Exception, match="401"):
            MlflowClient(cluster).search_experiments()
