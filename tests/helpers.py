"""Helpers shared by the test modules: the console script, temporary stores, servers, checks.

Fixtures live in conftest.py; test modules import plain helpers from here only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lstm_cli.config.files import default

CLI = str(Path(sys.executable).with_name("lstm-digits"))
ROOT = Path(__file__).resolve().parent.parent  # the checkout
CLUSTER = ROOT / "cluster" / "cluster.sh"
CLUSTER_STATE = Path(os.environ.get("LSTM_DIGITS_CLUSTER_DIR", "/tmp/lstm-digits-cluster"))
# MLflow's credential variables: a CLI subprocess gets the test's own (the cluster tier's users)
CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
EXPERIMENT = str(default("tracking.experiment"))  # where `train` tracks by default
EPOCHS = 3  # the session's trained run: enough to check metric history, cheap to train


def held_out(cfg, scaling: str | None = None):
    """The digits split of config `cfg`, with its pixel scaling or `scaling`."""
    from lstm_cli.data.digits import load_digits

    d = cfg.data
    return load_digits(d.test_size, d.split_seed, scaling or d.scaling.value)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: no inherited tracking URI, quiet TensorFlow; the
    credentials the test set (`cluster_as`), if any."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "HYDRA_")) or k in CREDENTIALS
    }
    env.update(TF_CPP_MIN_LOG_LEVEL="3", COLUMNS="200", **extra)
    return env


def run_cli(*args: str, cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """Run `lstm-digits ARGS` in `cwd` (so its outputs/ lands there), capturing text."""
    return subprocess.run(
        [CLI, *args], cwd=cwd, env=cli_env(**env), capture_output=True, text=True, timeout=timeout
    )


def sqlite_uri(directory: Path) -> str:
    return f"sqlite:///{directory / 'mlflow.db'}"


def free_port() -> int:
    """A port nobody listens on at 127.0.0.1 (free when asked: the caller binds it soon)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    """Wait until the MLflow server at `url` answers /health (it takes 10-20 s to start)."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"the server at {url} exited at start"
        assert time.monotonic() < deadline, f"the server at {url} did not answer in {timeout} s"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    """`result` failed with exit `code` and exactly one `error: ...` line holding `fragments`."""
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def assert_no_runs(uri: str) -> None:
    """The SQLite store at `uri` does not exist or holds no run."""
    from mlflow.tracking import MlflowClient

    db = Path(uri.removeprefix("sqlite:///"))
    if db.exists():
        client = MlflowClient(uri)
        assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def runs_so_far(uri: str) -> list:
    """Every run in the SQLite store at `uri`; none while the CLI under test has not made the
    store yet. A client opened before that makes the store itself (MLflow builds its schema
    in the constructor, about 1 s of migrations), racing the CLI's own: two processes
    migrating one new file fail ("no such column: spans.dimension_attributes")."""
    from mlflow.tracking import MlflowClient

    if not Path(uri.removeprefix("sqlite:///")).exists():
        return []
    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


CURVES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")  # per-epoch metrics


def histories(uri: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Each per-epoch metric of a run as its (step, value) pairs, by step."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    return {
        name: sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))
        for name in CURVES
    }


def latest_checkpoint(uri: str, run_id: str):
    """The run's newest readable checkpoint (`lstm_cli.tracking.checkpoint_slots.Checkpoint`)."""
    import mlflow

    from lstm_cli.tracking import checkpoint_slots

    mlflow.set_tracking_uri(uri)
    return checkpoint_slots.latest(run_id)


def stop(proc: subprocess.Popen, signum: int, timeout: float = 60) -> str:
    """Send `signum` to `proc`, wait for its end (killed if it does not end), return stderr."""
    try:
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return stderr or ""


def descendant_pids(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie has ended; only its exit status waits)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


REFERENCE_STEPS = ("h", "c", "i", "f", "o")  # what `numpy_lstm` keeps at every step


def numpy_lstm(x, W, B, cell: str) -> dict:
    """The article's equations step by step in float64 NumPy, independent of lstm_cli: the
    `article` (h = c*o) and `lstm` (h = tanh(c)*o) cells.

    Args:
        x: inputs (batch, steps, input), from the zero state.
        W: (input + hidden, 4*hidden), columns z, i, f, o.
        B: (4*hidden,).
        cell: "article" or "lstm".

    Returns:
        REFERENCE_STEPS -> every step's value, each (steps, batch, hidden).
    """
    found = numpy_cell(x, {"W": W, "B": B}, cell)
    return {name: found[name] for name in REFERENCE_STEPS}


# Each cell of the LSTM family as the papers write it: its W blocks, and what it changes of
# the vanilla LSTM (Greff et al. 2015), in plain words a reader can check against them.
LSTM_FAMILY = {
    "article": {"blocks": "zifo", "peepholes": False, "output_tanh": False},
    "lstm": {"blocks": "zifo", "peepholes": False},
    "peephole": {"blocks": "zifo"},
    "cifg": {"blocks": "zio", "forget": "1 - i"},
    "nig": {"blocks": "zfo"},
    "nfg": {"blocks": "zio"},
    "nog": {"blocks": "zif"},
    "niaf": {"blocks": "zifo", "input_tanh": False},
}


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def numpy_cell(x, weights: dict, cell: str) -> dict:
    """A cell's equations step by step in float64 NumPy, independent of lstm_cli.

    Args:
        x: inputs (batch, steps, input), from the zero state.
        weights: "W" (input + hidden, blocks*hidden), "B" (blocks*hidden,), and "P" (3, hidden)
            for a cell with peepholes, "BR" (3*hidden,) for the GRU.
        cell: a cell's name.

    Returns:
        "h" and the cell's other values (an LSTM's "c" and gates "i", "f", "o" where it has
        them; a GRU's "u", "r"), each (steps, batch, hidden).
    """
    x = np.asarray(x, np.float64)
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    if cell == "gru":
        return _numpy_gru(x, w)
    if cell == "rnn":
        h, kept = np.zeros((x.shape[0], w["W"].shape[1])), []
        for t in range(x.shape[1]):
            h = np.tanh(np.concatenate([x[:, t], h], axis=1) @ w["W"] + w["B"])
            kept.append(h)
        return {"h": np.stack(kept)}
    spec = LSTM_FAMILY[cell]
    peep = spec.get("peepholes", True)
    hidden = w["B"].shape[0] // len(spec["blocks"])
    h = c = np.zeros((x.shape[0], hidden))
    kept = {name: [] for name in REFERENCE_STEPS}
    for t in range(x.shape[1]):
        a = np.concatenate([x[:, t], h], axis=1) @ w["W"] + w["B"]
        a = dict(zip(spec["blocks"], np.split(a, len(spec["blocks"]), axis=1), strict=True))
        p = w["P"] if peep else np.zeros((3, hidden))
        first = t == 0  # the zero state: the peepholes see c = 0
        z = np.tanh(a["z"]) if spec.get("input_tanh", True) else a["z"]
        i = _sigmoid(a["i"] + (0 if first else p[0] * c)) if "i" in a else np.ones_like(z)
        if spec.get("forget") == "1 - i":
            f = 1.0 - i
        else:
            f = _sigmoid(a["f"] + (0 if first else p[1] * c)) if "f" in a else np.ones_like(z)
        c = f * c + i * z
        o = _sigmoid(a["o"] + p[2] * c) if "o" in a else np.ones_like(z)
        h = (np.tanh(c) if spec.get("output_tanh", True) else c) * o
        for name, value in zip(REFERENCE_STEPS, (h, c, i, f, o), strict=True):
            kept[name].append(value)
    return {name: np.stack(values) for name, values in kept.items()}


def _numpy_gru(x, w: dict) -> dict:
    """Keras's GRU with reset_after=True: gates u (update), r (reset), candidate n."""
    hidden = w["B"].shape[0] // 3
    n_in = x.shape[2]
    h = np.zeros((x.shape[0], hidden))
    kept = {"h": [], "u": [], "r": []}
    for t in range(x.shape[1]):
        xs = np.split(x[:, t] @ w["W"][:n_in] + w["B"], 3, axis=1)
        hs = np.split(h @ w["W"][n_in:] + w["BR"], 3, axis=1)
        u = _sigmoid(xs[0] + hs[0])
        r = _sigmoid(xs[1] + hs[1])
        n = np.tanh(xs[2] + r * hs[2])
        h = u * h + (1 - u) * n
        for name, value in (("h", h), ("u", u), ("r", r)):
            kept[name].append(value)
    return {name: np.stack(values) for name, values in kept.items()}


def sweep_runs(uri: str) -> tuple[object, list]:
    """The one parent run in the store and its children (by job number)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("lstm_digits.sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(runs) - 1  # every job is a child of the parent
    return parent, sorted(children, key=lambda r: int(r.data.tags["sweep_job"]))


def printed_probabilities(stdout: str) -> np.ndarray:
    """The class probabilities `lstm-digits predict` printed, in class order."""
    rows = re.findall(r"^\s+(\d)\s+(0\.\d{4}|1\.0000)", stdout, re.MULTILINE)
    assert [int(k) for k, _ in rows] == list(range(10)), stdout
    return np.array([float(p) for _, p in rows])


# ---------------------------------------------------------------- a terminal

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def visible_lines(raw: str) -> list[str]:
    """What stays on the screen of a terminal that printed `raw`, line by line: what follows
    each line's last carriage return (the live line redraws itself after one)."""
    text = ANSI.sub("", raw).replace("\r\n", "\n")
    return [line.rsplit("\r", 1)[-1] for line in text.split("\n")]


def group_alive(pgid: int) -> list[int]:
    """The processes of process group `pgid` still running (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def run_in_terminal(*args: str, cwd: Path, interrupt_on: str | None = None, timeout=300):
    """`lstm-digits ARGS` with a pseudo-terminal as its stdin, stdout and stderr, `COLUMNS`
    wide; with `interrupt_on` (a regular expression), Ctrl-C (SIGINT to its process group, as
    a terminal sends it) once its output matches it. Returns (exit code, everything it
    wrote)."""
    master, slave = pty.openpty()
    columns = int(cli_env()["COLUMNS"])
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = cli_env(TERM="xterm-256color")  # COLUMNS: cli_env's
    proc = subprocess.Popen(
        [CLI, *args],
        cwd=cwd,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer has closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            if interrupt_on and re.search(interrupt_on.encode(), out):
                os.killpg(proc.pid, signal.SIGINT)
                interrupt_on = None
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
        left, grace = group_alive(proc.pid), time.monotonic() + 10
        while left and time.monotonic() < grace:  # still exiting: a moment
            time.sleep(0.1)
            left = group_alive(proc.pid)
        if left:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not left, "a process of the sweep outlived it"
    return code, out.decode(errors="replace")


def final_live_line(raw: str) -> str:
    lines = [line for line in visible_lines(raw) if line.startswith("sweep ") and "elapsed" in line]
    assert lines, raw
    return lines[-1]


@contextlib.contextmanager
def building_the_checkout() -> Iterator[None]:
    """Held while pip builds the checkout (a wheel, an install's metadata): setuptools builds in
    the tree (build/, *.egg-info), and two workers building it at once break each other's."""
    lock = Path(tempfile.gettempdir()) / f"lstm-digits-build-{os.stat(ROOT).st_ino}.lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield


def run_cluster(*args: str) -> subprocess.CompletedProcess:
    """`cluster/cluster.sh ARGS` (up, down, status, user NAME), capturing text."""
    command = ["bash", str(CLUSTER), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


def cluster_runs(uri: str, experiment: str = EXPERIMENT) -> list:
    """Every run of `experiment` in the cluster's server (as the test's user)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def slurm_queue() -> list[str]:
    """The jobs in SLURM's queue: "ID STATE" each."""
    out = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True)
    return out.stdout.split("\n")[:-1]
