"""Fixtures shared across the tiers: the composed config, one trained run, a running UI, the
local cluster (its server's admin signed in).

Plain helpers (the console script, stores, ports, checks) are in tests/helpers.py.
"""

from __future__ import annotations

import functools
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import (
    CLI,
    CLUSTER_STATE,
    EPOCHS,
    EXPERIMENT,
    cli_env,
    cluster_runs,
    free_port,
    run_cli,
    run_cluster,
    slurm_queue,
    sqlite_uri,
    wait_healthy,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The standard library's `platform` runs `uname -p` once, at its first question, and keeps the
# answer (MLflow's client asks): asked here, before any test, so that no fast test is refused
# for a process it did not start (`_fast_tests_start_no_process`), whatever the order.
platform.processor()

# A background job of a non-interactive shell (`make test &`) starts with SIGINT ignored, and
# an ignored signal stays ignored in every child: the CLI would not see the tests' Ctrl-C.
# A handled one is reset to the default in a child, which Python then handles as Ctrl-C.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _fast_tests_start_no_process(request, monkeypatch):
    """The fast tier (no `slow` marker) starts no process: a test that needs one (the CLI, a
    server, a build, git, make, mkdocs) is marked `slow`. Enforced here, where processes
    start: `subprocess.Popen` refuses, naming the test."""
    if request.node.get_closest_marker("slow") is not None:
        return

    def refuse(self, args, *more, **kwargs):
        raise AssertionError(
            f"{request.node.nodeid} starts a process ({args!r}): mark it @pytest.mark.slow"
        )

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


@functools.cache
def _registry_reachable() -> str | None:
    """Why the package registry pip uses is out of reach, or None when it answers."""
    import urllib.request

    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/")
    try:
        urllib.request.urlopen(index.rstrip("/") + "/pip/", timeout=10).close()
    except OSError as e:
        return f"the package registry ({index}) is out of reach: {e}"
    return None


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own, which reads the groups
def pytest_collection_modifyitems(items):
    """`make test` runs the tests in pytest-xdist workers (`--dist loadgroup`): the cluster
    tier all in one worker (one cluster, started once; one queue, holding its own jobs only),
    and so the browser tier (one UI server)."""
    for item in items:
        for tier in ("cluster", "browser"):
            if item.get_closest_marker(tier) is not None:
                item.add_marker(pytest.mark.xdist_group(tier))


def pytest_runtest_setup(item):
    """A test marked `registry` resolves packages from the index: skipped, saying so, when
    the index cannot be reached (an offline machine), rather than failing after pip's
    retries. A hook rather than a fixture: it runs before the module's fixtures (the wheel's
    build) would fail."""
    if item.get_closest_marker("registry") is not None and (reason := _registry_reachable()):
        pytest.skip(reason)


@pytest.fixture(scope="session")
def defaults():
    """The default config, composed once: tests compare against it rather than restate it."""
    from lstm_cli.config import compose

    return compose.compose([])


@dataclass(frozen=True)
class TrainedRun:
    """A real `lstm-digits train` run in a temporary store, shared by the end-to-end tests."""

    workdir: Path
    uri: str
    run_id: str
    result: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    from mlflow.tracking import MlflowClient

    workdir = tmp_path_factory.mktemp("trained")
    uri = sqlite_uri(workdir)
    result = run_cli(
        "train", f"epochs={EPOCHS}", "hidden_size=16", f"tracking.uri={uri}", "seed=1", cwd=workdir
    )
    assert result.returncode == 0, result.stderr
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id])
    return TrainedRun(workdir=workdir, uri=uri, run_id=run.info.run_id, result=result)


@dataclass
class UiServer:
    """`lstm-digits ui` running on a trained store (see `ui_server`)."""

    url: str
    experiment_id: str
    process: subprocess.Popen


@pytest.fixture(scope="module")
def ui_server(trained_run: TrainedRun) -> UiServer:
    """`lstm-digits ui` on the session's trained store, on a free port; stopped at the end."""
    from mlflow.tracking import MlflowClient

    port = free_port()
    process = subprocess.Popen(
        [CLI, "ui", "--port", str(port), "--tracking-uri", trained_run.uri],
        cwd=trained_run.workdir,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        experiment = MlflowClient(trained_run.uri).get_experiment_by_name(EXPERIMENT)
        yield UiServer(url=url, experiment_id=experiment.experiment_id, process=process)
    finally:
        if process.poll() is None:  # SIGTERM: the CLI stops its server's process group first
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass(frozen=True)
class Server:
    url: str
    root: Path  # its database and artifacts


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 (free port, SQLite backend, served artifacts)."""
    root = tmp_path_factory.mktemp("server")
    port = free_port()
    mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
    proc = subprocess.Popen(
        [
            mlflow_cli,
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            sqlite_uri(root),
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        cwd=root,
        env=cli_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield Server(url, root)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def cluster() -> str:
    """The tracking URI of the local cluster's MLflow server (SLURM up beside it), started by
    `cluster/cluster.sh up` (as `make cluster-up` does) and stopped at the end if this session
    started it. Needs root (Debian's packages are installed when missing); skipped otherwise."""
    if os.geteuid() != 0:
        pytest.skip("the cluster tier needs root (make cluster-up installs and starts it)")
    was_up = run_cluster("status").returncode == 0
    up = run_cluster("up")
    assert up.returncode == 0, up.stdout + up.stderr
    env = dict(
        line.split("=", 1)
        for line in (CLUSTER_STATE / "cluster.env").read_text().split()
        if "=" in line
    )
    try:
        yield env["MLFLOW_TRACKING_URI"]
    finally:
        if not was_up:
            down = run_cluster("down")
            assert down.returncode == 0, down.stdout + down.stderr


@pytest.fixture
def cluster_as(cluster, monkeypatch):
    """`cluster_as(user)` signs this test, and the CLI it starts, in to the cluster's server as
    `user` (its admin, or a teammate `cluster.sh user` added): MLflow's variables; returns the
    user's password. Signed in as the admin to begin with."""

    def sign_in(user: str, password: str | None = None) -> str:
        if password is None:
            file = "admin-password" if user == "admin" else f"users/{user}"
            password = (CLUSTER_STATE / file).read_text()
        monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        return password

    sign_in("admin")
    return sign_in


@pytest.fixture
def clean(cluster, cluster_as):
    """The cluster's URI, signed in as its admin; checks after each test: nothing RUNNING in
    the server, nothing left in the queue."""
    known = {r.info.run_id for r in cluster_runs(cluster)}
    yield cluster
    cluster_as("admin")
    deadline = time.monotonic() + 60
    while slurm_queue() and time.monotonic() < deadline:
        time.sleep(1)
    left = slurm_queue()
    if left:  # cancel them, so that the next test starts clean, and fail this one
        subprocess.run(["scancel", "--user", "root"], check=False)
    assert left == []
    new = [r for r in cluster_runs(cluster) if r.info.run_id not in known]
    assert [r.info.run_id for r in new if r.info.status == "RUNNING"] == []
