"""Shared fixtures: the console script, temporary tracking stores, one trained run per session."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from lstm_cli.config import conf_default

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CLI = str(Path(sys.executable).with_name("lstm-digits"))
EXPERIMENT = str(conf_default("tracking.experiment"))  # where `train` tracks by default
EPOCHS = 3  # the session's trained run: enough to check metric history, cheap to train


@pytest.fixture(scope="session")
def defaults():
    """The default config, composed once: tests compare against it rather than restate it."""
    from lstm_cli import experiment

    return experiment.compose([])


def held_out(cfg, scaling: str | None = None):
    """The digits split of config `cfg`, with its pixel scaling or `scaling`."""
    from lstm_cli.data import load_digits

    d = cfg.data
    return load_digits(d.test_size, d.split_seed, scaling or d.scaling.value)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: no inherited tracking URI, quiet TensorFlow."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HYDRA_"))}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", COLUMNS="200", **extra)
    return env


def run_cli(*args: str, cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """Run `lstm-digits ARGS` in `cwd` (so its outputs/ lands there), capturing text."""
    return subprocess.run(
        [CLI, *args], cwd=cwd, env=cli_env(**env), capture_output=True, text=True, timeout=timeout
    )


def sqlite_uri(directory: Path) -> str:
    return f"sqlite:///{directory / 'mlflow.db'}"


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


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    """Wait until the MLflow server at `url` answers /health (it takes 10-20 s to start)."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"the server at {url} exited at start"
        assert time.monotonic() < deadline, f"the server at {url} did not answer in {timeout} s"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)


def free_port() -> int:
    """A port nobody listens on at 127.0.0.1 (free when asked: the caller binds it soon)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
