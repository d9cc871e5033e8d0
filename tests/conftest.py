"""Shared fixtures: the console script, temporary tracking stores, one trained run per session."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CLI = str(Path(sys.executable).with_name("lstm-digits"))
EPOCHS = 3  # the session's trained run: enough to check metric history, cheap to train


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
    experiment = client.get_experiment_by_name("lstm-digits")
    (run,) = client.search_runs([experiment.experiment_id])
    return TrainedRun(workdir=workdir, uri=uri, run_id=run.info.run_id, result=result)
