"""The fault tier (issue 18): stops and store faults, each followed by `lstm-digits resume`.

A stop keeps the work; a torn checkpoint falls back to the other slot; a full, read-only or
locked store ends the run in one line and keeps its last checkpoint; a server away costs no
training time. Each run is then finished in the same MLflow run, with every step logged once.
The full and read-only stores are filesystems mounted for the test: they need root.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import (
    CLI,
    CURVES,
    EXPERIMENT,
    assert_one_line_error,
    cli_env,
    free_port,
    histories,
    run_cli,
    sqlite_uri,
    wait_healthy,
)

MLFLOW = str(Path(sys.executable).with_name("mlflow"))


@pytest.fixture(autouse=True)
def _no_open_store(monkeypatch):
    """This process reads the stores without keeping them open: a pooled SQLite connection
    would keep a test's filesystem busy (no unmount) and read a replaced mount's old files."""
    monkeypatch.setenv("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")


# ---------------------------------------------------------------- the store, read from here


def _runs(uri: str) -> list:
    """The runs of the default experiment at `uri` (none while the CLI has not made it yet)."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return []  # opening it here would create it
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id]) if experiment else []


def _only_run_id(uri: str, result: subprocess.CompletedProcess | None = None) -> str:
    runs = _runs(uri)
    assert len(runs) == 1, (runs, result and result.stderr)
    return runs[0].info.run_id


def _steps(uri: str, run_id: str) -> dict[str, list[int]]:
    """Each curve's logged steps, sorted, duplicates kept."""
    return {name: [step for step, _ in pairs] for name, pairs in histories(uri, run_id).items()}


def _assert_whole_history(uri: str, run_id: str, epochs: int) -> None:
    """Every curve has each step 1..epochs exactly once."""
    for name, steps in _steps(uri, run_id).items():
        assert steps == list(range(1, epochs + 1)), (name, _gaps_and_repeats(steps, epochs))


def _gaps_and_repeats(steps: list[int], epochs: int) -> dict[str, list[int]]:
    """What a wrong history holds, short enough for an assertion message."""
    seen = set(steps)
    missing = [s for s in range(1, epochs + 1) if s not in seen]
    repeated = sorted({s for s in seen if steps.count(s) > 1})
    extra = sorted(seen - set(range(1, epochs + 1)))
    return {"missing": missing[:20], "repeated": repeated[:20], "extra": extra[:20]}


def _artifact_dir(uri: str, run_id: str) -> Path:
    """Where a run of a SQLite store keeps its artifacts on disk."""
    location = urlparse(MlflowClient(uri).get_run(run_id).info.artifact_uri)
    assert location.scheme in ("", "file"), location
    return Path(unquote(location.path))


def _latest(uri: str, run_id: str) -> dict | None:
    """The run's `checkpoints/latest.json`, read from disk; None if none (or half-written)."""
    try:
        return json.loads((_artifact_dir(uri, run_id) / "checkpoints/latest.json").read_text())
    except (OSError, ValueError):
        return None


def _run_state(uri: str, run_id: str) -> tuple:
    """What a refused resume must leave as it was: status, end time, tags, the history."""
    run = MlflowClient(uri).get_run(run_id)
    return run.info.status, run.info.end_time, run.data.tags, _steps(uri, run_id)


# ---------------------------------------------------------------- processes of the test


@dataclass
class Background:
    """A process started in a session of its own, its output in files (a pipe nobody reads
    fills up and stops a long training)."""

    process: subprocess.Popen
    out: Path
    err: Path

    def signal(self, signum: int) -> None:
        """As a terminal's Ctrl-C or a scheduler does: to the whole process group."""
        os.killpg(self.process.pid, signum)

    def result(self, timeout: float) -> subprocess.CompletedProcess:
        """Wait for the end (at most `timeout` s, else it is killed and the test fails)."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _end_group(self.process)
            pytest.fail(f"{self.process.args[1]} not ended in {timeout} s:\n{self.err.read_text()}")
        return subprocess.CompletedProcess(
            self.process.args, self.process.returncode, self.out.read_text(), self.err.read_text()
        )


def _end_group(process: subprocess.Popen, grace: float = 10) -> None:
    """End a process started with start_new_session=True, and whatever it started."""
    if process.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired, ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # children left behind by the leader
    process.wait()


class Processes:
    """The CLIs and servers a test starts; every one of them is ended at its teardown."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, *command: str) -> Background:
        out, err = self.workdir / f"{name}.out", self.workdir / f"{name}.err"
        with open(out, "w") as stdout, open(err, "w") as stderr:
            process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=cli_env(),
                stdout=stdout,
                stderr=stderr,
                text=True,
                start_new_session=True,
            )
        self.started.append(process)
        return Background(process, out, err)

    def train(self, uri: str, *overrides: str) -> Background:
        return self.start("train", CLI, "train", *overrides, f"tracking.uri={uri}")

    def server(self, port: int, directory: Path, name: str) -> Background:
        """`mlflow server` on `port`, its store and artifacts in `directory`; healthy."""
        server = self.start(
            name,
            MLFLOW,
            "server",
            "--backend-store-uri",
            sqlite_uri(directory),
            "--artifacts-destination",
            str(directory / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        )
        wait_healthy(f"http://127.0.0.1:{port}", server.process)
        return server

    def end_all(self) -> None:
        for process in reversed(self.started):
            _end_group(process)


@pytest.fixture
def processes(tmp_path):
    started = Processes(tmp_path)
    yield started
    started.end_all()


def _wait_for(what: str, training: Background, found, timeout: float = 180):
    """Poll `found()` until it returns something; fail if the training ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        if training.process.poll() is not None:
            pytest.fail(f"the training ended before {what}:\n{training.err.read_text()}")
        time.sleep(0.3)
    pytest.fail(f"no {what} in {timeout} s:\n{training.err.read_text()}")


def _run_with_epochs(uri: str, training: Background, epochs: int) -> str:
    """The training's run id, once the store holds `epochs` values of val_accuracy."""

    def run_id():
        runs = _runs(uri)
        if runs:
            logged = MlflowClient(uri).get_metric_history(runs[0].info.run_id, "val_accuracy")
            return runs[0].info.run_id if len(logged) >= epochs else None

    return _wait_for(f"{epochs} epochs in the store", training, run_id)


def _run_with_checkpoint(uri: str, training: Background) -> str:
    """The training's run id, once its first checkpoint is in the store."""

    def run_id():
        runs = _runs(uri)
        if runs and _latest(uri, runs[0].info.run_id):
            return runs[0].info.run_id

    return _wait_for("checkpoint", training, run_id)


def _resume_finishes(workdir: Path, uri: str, run_id: str, epochs: int, *overrides: str):
    """`lstm-digits resume RUN` ends the run FINISHED with its whole history.

    Returns:
        What the resume printed, and the run.
    """
    resumed = run_cli("resume", run_id, *overrides, "--tracking-uri", uri, cwd=workdir, timeout=600)
    assert resumed.returncode == 0, (resumed.stdout[-2000:], resumed.stderr)
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    _assert_whole_history(uri, run_id, epochs)
    return resumed, run


# ---------------------------------------------------------------- mounted stores (root)


class Mounts:
    """Filesystems mounted for a test; unmounted at its teardown, after its processes ended."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.mounted: list[Path] = []

    def tmpfs(self, where: Path, size: str) -> Path:
        where.mkdir(exist_ok=True)
        _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
        self.mounted.append(where)
        return where

    def resize(self, where: Path, size: str) -> None:
        _mount("-o", f"remount,size={size}", str(where))

    def ext4(self, where: Path, size: str) -> Path:
        """An ext4 image that turns read-only on an error, as a disk mounted
        errors=remount-ro (Debian's default) does after an I/O error. Written synchronously:
        the kernel drops what is not yet on disk when it turns a filesystem read-only."""
        if not shutil.which("mkfs.ext4"):
            pytest.skip("a read-only store needs mkfs.ext4 (e2fsprogs)")
        image = self.workdir / f"{where.name}.ext4"
        subprocess.run(["truncate", "-s", size, str(image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-O", "^has_journal", str(image)], check=True)
        where.mkdir(exist_ok=True)
        _mount("-o", "loop,sync,errors=remount-ro", str(image), str(where))
        self.mounted.append(where)
        if not self._error_trigger(where).exists():
            pytest.skip(f"this kernel has no {self._error_trigger(where)} to make ext4 read-only")
        return where

    def make_read_only(self, where: Path) -> None:
        """What the kernel does on a disk error: read-only at once, files open for writing or
        not. (`mount -o remount,ro` is refused while the CLI holds the database open.)"""
        self._error_trigger(where).write_text("lstm-digits fault test\n")

    def make_writable(self, where: Path) -> None:
        """As an administrator would after a disk error: unmount and mount again."""
        image = self.workdir / f"{where.name}.ext4"
        subprocess.run(["umount", str(where)], check=True)
        _mount("-o", "loop,sync,errors=remount-ro", str(image), str(where))

    @staticmethod
    def _error_trigger(where: Path) -> Path:
        source = subprocess.run(
            ["findmnt", "-no", "SOURCE", str(where)], capture_output=True, text=True, check=True
        ).stdout.strip()
        return Path("/sys/fs/ext4", Path(source).name, "trigger_fs_error")

    def unmount_all(self) -> None:
        for where in reversed(self.mounted):
            if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(where)], check=False)  # busy: detach it


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    assert done.returncode == 0, f"mount {' '.join(args)}: {done.stderr}"


@pytest.fixture
def mounts(tmp_path, processes):
    if os.geteuid() != 0:
        pytest.skip("a full or read-only store is a filesystem mounted for the test: needs root")
    mounted = Mounts(tmp_path)
    yield mounted
    processes.end_all()  # nothing may hold a file of the store when it is unmounted
    mounted.unmount_all()


# ---------------------------------------------------------------- Ctrl-C and SIGTERM


@pytest.mark.slow
@pytest.mark.fault
@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"]
)
def test_a_stop_keeps_every_epoch_and_resume_finishes_the_run(tmp_path, processes, signum, code):
    """With the default checkpoint settings: the stop saves the epoch it ends on."""
    uri, epochs = sqlite_uri(tmp_path), 600
    training = processes.train(uri, f"epochs={epochs}", "hidden_size=32")
    run_id = _run_with_epochs(uri, training, 10)
    training.signal(signum)
    stopped = training.result(timeout=60)

    assert stopped.returncode == code, stopped.stderr
    saved, logged = _latest(uri, run_id), _steps(uri, run_id)
    assert saved is not None, "no checkpoint at the stop"
    last = stopped.stderr.strip().splitlines()[-1]  # the run, its epoch, how to go on
    assert last.endswith(
        f": run {run_id} is KILLED after epoch {saved['epoch']} (its checkpoint of epoch "
        f"{saved['epoch']}); go on with: lstm-digits resume {run_id}"
    ), stopped.stderr
    assert MlflowClient(uri).get_run(run_id).info.status == "KILLED"
    assert "error.txt" in {a.path for a in MlflowClient(uri).list_artifacts(run_id)}
    assert saved["epoch"] == logged["val_accuracy"][-1] < epochs, (saved, logged["val_accuracy"])
    for name in CURVES:
        assert logged[name] == list(range(1, saved["epoch"] + 1)), name

    _, run = _resume_finishes(tmp_path, uri, run_id, epochs)
    assert "error" not in run.data.tags  # a finished run: its stop is no error of its own
    assert "error.txt" not in {a.path for a in MlflowClient(uri).list_artifacts(run_id)}


# ---------------------------------------------------------------- a torn checkpoint


TORN = (
    "epochs=4",
    "hidden_size=8",
    "checkpoint.every_epochs=2",
    "checkpoint.every_seconds=0",
    "tracking.log_model=false",
)


def _trained_with_two_slots(workdir: Path) -> tuple[str, str, dict]:
    """A finished 6-epoch run with both slots filled; its URI, run id and latest.json.

    Trained to 4 epochs, then resumed to 6: each ends with a checkpoint, and the resume's goes
    into the other slot. (One 6-epoch run may fill only one: its writer drops an unsent
    checkpoint for a newer one, and a fast machine trains epochs 2 to 6 within one flush.)
    """
    uri = sqlite_uri(workdir)
    done = run_cli("train", *TORN, f"tracking.uri={uri}", cwd=workdir)
    assert done.returncode == 0, done.stderr
    run_id = _only_run_id(uri)
    _resume_finishes(workdir, uri, run_id, 6, "epochs=6")
    latest = _latest(uri, run_id)
    assert latest is not None and latest["epoch"] == 6, latest
    slots = _artifact_dir(uri, run_id) / "checkpoints"
    assert (slots / "a/state.npz").exists() and (slots / "b/state.npz").exists()
    return uri, run_id, latest


def _tear(state: Path) -> None:
    """Cut a checkpoint's arrays to half, as a write cut short by a crash leaves them."""
    os.truncate(state, state.stat().st_size // 2)


@pytest.mark.slow
@pytest.mark.fault
def test_a_torn_newest_checkpoint_resumes_from_the_other_slot_and_says_so(tmp_path):
    uri, run_id, latest = _trained_with_two_slots(tmp_path)
    _tear(_artifact_dir(uri, run_id) / "checkpoints" / latest["slot"] / "state.npz")

    resumed, _ = _resume_finishes(tmp_path, uri, run_id, 10, "epochs=10")
    said = [s for s in (resumed.stdout + resumed.stderr).splitlines() if "cannot be read" in s]
    assert len(said) == 1, (resumed.stdout, resumed.stderr)
    assert _latest(uri, run_id)["epoch"] == 10


@pytest.mark.slow
@pytest.mark.fault
def test_a_resume_with_both_checkpoints_torn_goes_on_from_the_start_and_says_so(tmp_path):
    uri, run_id, _ = _trained_with_two_slots(tmp_path)
    for slot in ("a", "b"):
        _tear(_artifact_dir(uri, run_id) / "checkpoints" / slot / "state.npz")
    before = histories(uri, run_id)

    resumed, _ = _resume_finishes(tmp_path, uri, run_id, 10, "epochs=10")
    said = [s for s in resumed.stderr.splitlines() if "cannot be used" in s]
    assert len(said) == 1 and "going on from its start" in said[0], resumed.stderr
    after = histories(uri, run_id)
    assert all(after[name][:6] == before[name] for name in CURVES)  # the stored epochs stay
    assert _latest(uri, run_id)["epoch"] == 10


# ---------------------------------------------------------------- store faults (root)


def _lost_is_shown(workdir: Path, uri: str, run_id: str) -> None:
    """A run left RUNNING by a process that is gone reads `RUNNING (lost)` in `runs`."""
    if MlflowClient(uri).get_run(run_id).info.status != "RUNNING":
        return
    env = cli_env()
    env["COLUMNS"] = "1000"  # no cell wrapped
    shown = subprocess.run(
        [CLI, "runs", "--tracking-uri", uri],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    (row,) = [line for line in shown.stdout.splitlines() if line.startswith(f"│ {run_id[:8]}")]
    assert "RUNNING (lost)" in row, shown.stdout


@pytest.mark.slow
@pytest.mark.fault
def test_a_full_disk_ends_in_one_line_and_resume_finishes_once_there_is_room(tmp_path, mounts):
    # 1100k: the empty store (a copy of MLflow's template, ~930 KiB), a checkpoint or two, and
    # no room for the figures and the model at the end.
    store = mounts.tmpfs(tmp_path / "store", "1100k")
    uri, epochs = sqlite_uri(store), 20
    full = run_cli(
        "train",
        f"epochs={epochs}",
        "hidden_size=16",
        "checkpoint.every_epochs=2",
        "checkpoint.every_seconds=0",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    run_id = _only_run_id(uri, full)
    assert_one_line_error(full, 1, str(store / "mlflow.db"), f"lstm-digits resume {run_id}")
    assert _latest(uri, run_id) is not None, "no checkpoint reached the store before it filled"

    mounts.resize(store, "64m")
    _lost_is_shown(tmp_path, uri, run_id)
    _, run = _resume_finishes(tmp_path, uri, run_id, epochs)
    assert run.outputs.model_outputs, "the resumed run has no model"
    assert "learning_curves.png" in {a.path for a in MlflowClient(uri).list_artifacts(run_id)}


@pytest.mark.slow
@pytest.mark.fault
def test_a_full_disk_before_the_first_checkpoint_is_no_dead_end(tmp_path, mounts):
    """With the default checkpoint settings the first comes after a minute: a store full before
    then leaves no checkpoint, and resume replays the run from its start. 1000k: the empty
    store (~930 KiB) and about 150 epochs of metrics."""
    store = mounts.tmpfs(tmp_path / "store", "1000k")
    uri, epochs = sqlite_uri(store), 600
    args = (f"epochs={epochs}", "hidden_size=8", "tracking.log_model=false", f"tracking.uri={uri}")
    full = run_cli("train", *args, cwd=tmp_path)
    run_id = _only_run_id(uri, full)
    assert_one_line_error(full, 1, str(store / "mlflow.db"), f"lstm-digits resume {run_id}")
    assert _latest(uri, run_id) is None

    mounts.resize(store, "64m")
    resumed, _ = _resume_finishes(tmp_path, uri, run_id, epochs)
    assert "from its start" in resumed.stdout


@pytest.mark.slow
@pytest.mark.fault
def test_a_read_only_store_ends_in_one_line_and_resume_finishes_once_writable(
    tmp_path, processes, mounts
):
    store = mounts.ext4(tmp_path / "store", "64M")
    uri, epochs = sqlite_uri(store), 3000
    training = processes.train(
        uri,
        f"epochs={epochs}",
        "hidden_size=16",
        "checkpoint.every_epochs=5",
        "checkpoint.every_seconds=0",
    )
    run_id = _run_with_checkpoint(uri, training)
    mounts.make_read_only(store)
    refused = training.result(timeout=180)

    assert_one_line_error(refused, 1, str(store / "mlflow.db"), f"lstm-digits resume {run_id}")
    mounts.make_writable(store)
    assert _latest(uri, run_id) is not None
    _lost_is_shown(tmp_path, uri, run_id)
    _resume_finishes(tmp_path, uri, run_id, epochs)


@pytest.mark.slow
@pytest.mark.fault
def test_a_store_locked_past_the_limit_ends_in_one_line_and_resume_finishes(tmp_path, processes):
    uri, epochs = sqlite_uri(tmp_path), 3000
    training = processes.train(
        uri,
        "tracking.outage_minutes=0.1",
        f"epochs={epochs}",
        "hidden_size=16",
        "checkpoint.every_epochs=5",
        "checkpoint.every_seconds=0",
    )
    run_id = _run_with_checkpoint(uri, training)
    lock = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None, timeout=30)
    try:
        lock.execute("BEGIN EXCLUSIVE")  # no reader, no writer until the rollback
        locked = training.result(timeout=90)
    finally:
        if lock.in_transaction:
            lock.execute("ROLLBACK")
        lock.close()

    note, error = locked.stderr.strip().splitlines()  # the wait told once, then the error
    assert note.startswith("note: the tracking store ") and " is locked: " in note, note
    assert_one_line_error(
        subprocess.CompletedProcess(locked.args, locked.returncode, "", error),
        1,
        "locked",
        f"lstm-digits resume {run_id}",
    )
    assert _latest(uri, run_id) is not None
    _lost_is_shown(tmp_path, uri, run_id)
    _resume_finishes(tmp_path, uri, run_id, epochs)


# ---------------------------------------------------------------- a server away


# The training runs until stopped: its pace (15-40 ms an epoch at hidden 64) follows what else
# the machine runs, so no epoch count would outlast the outage for sure.
BEFORE_OUTAGE, OUTAGE, AFTER_OUTAGE = 20, 90, 10  # seconds
MAX_GAP_S = 2.0  # between two epochs' ends: a training that waited for the store would show one


def _wait_port_free(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return
            except OSError:
                assert time.monotonic() < deadline, f"port {port} still taken"
        time.sleep(0.5)


# About 2.5 minutes: the server away for 90 s of the training, then a stop and a resume.
@pytest.mark.slow
@pytest.mark.fault
def test_a_server_away_costs_no_training_time_and_no_metric(tmp_path, processes):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = processes.server(port, tmp_path, "server")
    training = processes.train(
        url,
        "epochs=1000000",
        "hidden_size=64",
        "checkpoint.every_epochs=50",
        "checkpoint.every_seconds=0",
    )
    run_id = _run_with_epochs(url, training, 1)
    time.sleep(BEFORE_OUTAGE)
    away = time.time()
    _end_group(server.process)
    _wait_port_free(port)
    time.sleep(OUTAGE)
    assert training.process.poll() is None, "the training ended during the outage"
    back = time.time()
    processes.server(port, tmp_path, "server-again")
    time.sleep(AFTER_OUTAGE)  # what waited reaches the store
    training.signal(signal.SIGINT)
    stopped = training.result(timeout=300)

    assert stopped.returncode == 130, stopped.stderr
    waits = [line for line in stopped.stderr.splitlines() if "does not answer" in line]
    assert waits == [  # told once, as the first write waited
        f"note: the tracking store {url} does not answer: the run's records wait and are sent "
        "again for up to 10 minutes (tracking.outage_minutes)"
    ], stopped.stderr
    client = MlflowClient(url)
    assert client.get_run(run_id).info.status == "KILLED"
    trained = _steps(url, run_id)["val_accuracy"][-1]
    _assert_whole_history(url, run_id, trained)  # not a metric lost, nothing twice
    # Timestamps are taken as each epoch ends, in the training's thread: while the server was
    # away no epoch waited for it (a wait is a gap of seconds: a request's timeout, a retry's
    # backoff). Gaps, not the pace: the pace follows whatever else the machine runs meanwhile.
    ended = sorted((m.step, m.timestamp) for m in client.get_metric_history(run_id, "val_accuracy"))
    during = [ms for _, ms in ended if away * 1000 <= ms < back * 1000]
    assert len(during) >= 100, len(during)  # it trained through the outage
    gaps = [(b - a) / 1000 for a, b in itertools.pairwise(during)]
    assert max(gaps) < MAX_GAP_S, max(gaps)  # the outage cost no training time
    _resume_finishes(tmp_path, url, run_id, trained + 5, f"epochs={trained + 5}")
