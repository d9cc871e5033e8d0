"""Out of the checkout: a real wheel installed elsewhere, presets and configs of the user's,
logs and output for scripts, completion."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import CLI, building_the_checkout, cli_env, run_cli, sqlite_uri

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- the wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project built as a wheel and installed, without its dependencies (this test's
    environment has them), into a directory of its own: not the checkout, not editable."""
    wheels = tmp_path_factory.mktemp("wheel")
    target = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    with building_the_checkout():
        built = subprocess.run(
            [*pip, "wheel", str(ROOT), "--no-deps", "-w", str(wheels)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("lstm_digits-*.whl")
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return target


def run_installed(target: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`lstm-digits ARGS` from the installed wheel (its console script and its package)."""
    env = cli_env(PYTHONPATH=str(target))
    return subprocess.run(
        [str(target / "bin" / "lstm-digits"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.registry  # the build's isolated environment takes setuptools from the index
def test_the_wheel_carries_its_configs_and_trains_anywhere(installed, tmp_path):
    env = cli_env(PYTHONPATH=str(installed))
    where = subprocess.run(
        [sys.executable, "-c", "import lstm_cli.config.files as p; print(p.CONF_DIR)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    conf = Path(where.stdout.strip())
    assert conf == installed / "lstm_cli" / "conf"  # the package's own copy, not the checkout
    assert (conf / "experiment" / "debug.yaml").is_file()

    trained = run_installed(installed, "train", "experiment=debug", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    mine = tmp_path / "my_configs" / "experiment"
    mine.mkdir(parents=True)
    (mine / "tiny.yaml").write_text(  # a preset of the user's, beside the packaged ones
        "# @package _global_\nhidden_size: 4\nepochs: 2\n"
        "tracking:\n  experiment: lstm-digits-debug\n  log_model: false\n"
    )
    swept = run_installed(
        installed, "train", "-m", "-cd", "my_configs", "experiment=tiny", "seed=1,2", cwd=tmp_path
    )
    assert swept.returncode == 0, swept.stderr
    listed = run_installed(
        installed, "runs", "--experiment", "lstm-digits-debug", "--format", "json", cwd=tmp_path
    )
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert len(runs) == 4 and {r["status"] for r in runs} == {"FINISHED"}  # 1 + parent + 2
    assert sorted(r["hidden_size"] for r in runs if not r["sweep_parent"]) == ["4", "4", "8"]
    assert (tmp_path / "outputs" / "mlflow.db").is_file()


@pytest.mark.slow
@pytest.mark.registry
def test_python_m_and_the_version_from_the_package_metadata(installed, tmp_path):
    env = cli_env(PYTHONPATH=str(installed))
    out = subprocess.run(
        [sys.executable, "-m", "lstm_cli", "--version"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert out.stdout.strip() == f"lstm-digits {version}"


# ---------------------------------------------------------------- logs and scripts


@pytest.mark.slow
def test_progress_reaches_a_file_in_plain_lines_while_training(tmp_path):
    log = tmp_path / "train.log"
    uri = sqlite_uri(tmp_path)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                CLI,
                "train",
                "epochs=300",
                "hidden_size=8",
                "tracking.log_model=false",
                f"tracking.uri={uri}",
            ],
            cwd=tmp_path,
            env={k: v for k, v in cli_env().items() if k != "COLUMNS"},
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            seen = ""
            while time.monotonic() < deadline and "epoch  60/300" not in seen:
                time.sleep(0.2)
                seen = log.read_text()
            still_running = proc.poll() is None
        finally:
            proc.wait(timeout=120)
    assert "epoch  60/300" in seen and still_running  # read before the run ended
    assert proc.returncode == 0
    text = log.read_text()
    assert "\r" not in text and "\x1b" not in text  # no bar redrawn, no colours
    lines = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == [f"{k}/300" for k in range(30, 301, 30)]
    assert "val_acc" in lines[-1] and lines[-1].rstrip()[-8:].count(":") == 2  # elapsed h:m:s


@pytest.mark.slow
def test_runs_for_scripts_hold_the_same_runs_as_the_table(trained_run):
    args = ("--tracking-uri", trained_run.uri)
    table = run_cli("runs", *args, cwd=trained_run.workdir)
    as_json = run_cli("runs", "--format", "json", *args, cwd=trained_run.workdir)
    as_csv = run_cli("runs", "--format", "csv", *args, cwd=trained_run.workdir)
    ids = run_cli("runs", "--format", "ids", *args, cwd=trained_run.workdir)
    rows = json.loads(as_json.stdout)
    assert [r["run_id"] for r in rows] == ids.stdout.split() == [trained_run.run_id]
    assert all(r["run_id"][:8] in table.stdout for r in rows)
    assert rows[0]["hidden_size"] == "16" and 0.0 < rows[0]["val_accuracy"] <= 1.0
    (row,) = csv.DictReader(io.StringIO(as_csv.stdout))
    assert row["run_id"] == trained_run.run_id and float(row["val_accuracy"]) == pytest.approx(
        rows[0]["val_accuracy"]
    )


@pytest.mark.slow
def test_a_table_in_a_pipe_is_as_wide_as_its_data(trained_run):
    env = {k: v for k, v in cli_env().items() if k != "COLUMNS"}
    out = subprocess.run(
        [CLI, "runs", "--tracking-uri", trained_run.uri],
        env=env,
        cwd=trained_run.workdir,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "hidden to fit" not in out.stdout
    assert "train_loss" in out.stdout and "started" in out.stdout


@pytest.mark.slow
def test_debug_prints_the_traceback_after_the_line(tmp_path):
    result = run_cli("--debug", "train", "hidden_size=0", cwd=tmp_path)
    assert result.returncode == 2
    first, *rest = result.stderr.splitlines()
    assert first == "error: hidden_size=0 is invalid: it must be a positive integer"
    assert rest[0].startswith("Traceback") and "UserError" in rest[-1]
    again = run_cli("train", "hidden_size=0", cwd=tmp_path, LSTM_DIGITS_DEBUG="1")
    assert again.stderr.splitlines()[1:2] == ["Traceback (most recent call last):"]


TENSORFLOWS = {"tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-macos",
               "tf-nightly", "tf-nightly-cpu"}  # fmt: skip  # each writes the `tensorflow` module


@pytest.mark.slow
@pytest.mark.registry
@pytest.mark.parametrize("spec", [".", ".[gpu]"])
def test_each_install_way_resolves_to_one_tensorflow(tmp_path, spec):
    """By resolution (pip install --dry-run --report), since no GPU is at hand."""
    report = tmp_path / "report.json"
    with building_the_checkout():  # its metadata: built in the tree
        resolved = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--dry-run",
                "--ignore-installed",
                "-q",
                "--disable-pip-version-check",
                "--report",
                str(report),
                spec,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
    assert resolved.returncode == 0, resolved.stderr
    names = {
        i["metadata"]["name"].lower().replace("_", "-")
        for i in json.loads(report.read_text())["install"]
    }
    assert names & TENSORFLOWS == {"tensorflow"}
    cuda = {n for n in names if n.startswith("nvidia-")}
    assert bool(cuda) == (spec == ".[gpu]")  # CUDA's libraries with the extra only
