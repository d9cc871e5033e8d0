"""Reading runs back: what `ui`, `runs`, `evaluate`, `predict` and `register` do, on plain
values.

MLflow is reached through `tracking`, the terminal through `views`; this module decides.
`ui` runs `mlflow server` as a child process, whose command line is built here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lstm_cli import process, views
from lstm_cli.errors import UserError
from lstm_cli.tracking import read, registry, store
from lstm_cli.tracking.read import RunRecord
from lstm_cli.tracking.run import mark_model_training

SERVER_START_TIMEOUT_S = 120.0  # `mlflow server` takes 10-20 s to start on a small machine
ATTRIBUTES = ("name", "status", "start_time", "duration")  # sort keys besides params and metrics
# The attributes the store sorts by; text always ascending (sorting text backwards helps no one).
STORE_ORDER = {"name": "attributes.run_name", "status": "attributes.status",
               "start_time": "attributes.start_time"}  # fmt: skip
TEXT = ("name", "status")


# ---------------------------------------------------------------- ui


def _check_port(host: str, port: int) -> None:
    with socket.socket() as probe:
        # As servers bind: a port whose last connections linger in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as ex:
            raise UserError(
                f"cannot serve the UI on {host}:{port}: {ex.strerror or ex} (choose --port)"
            ) from None


def server_environment() -> dict[str, str]:
    """The environment for `server_command`: without MLflow's GenAI job runner (unless the user
    asks for it), whose ten helper processes this tool never uses and whose store directory in
    /dev/shm MLflow leaves behind at every start."""
    return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}


def server_command(uri: str, host: str, port: int) -> list[str]:
    """`mlflow server` on the store `uri` (one worker: a UI for one user)."""
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri]
    root = store.artifact_root(uri)
    if root:  # new experiments keep their artifacts beside the database, as `train` does
        command += ["--default-artifact-root", root, "--artifacts-destination", root]
    return [*command, "--host", host, "--port", str(port), "--workers", "1"]


def _last_line(log) -> str:
    log.seek(0)
    lines = [line.strip() for line in log.read().decode(errors="replace").splitlines()]
    return next((line for line in reversed(lines) if line), "no output")


def serve_ui(uri: str, experiment: str, host: str, port: int) -> None:
    """Run the MLflow UI on `uri` until Ctrl-C (or SIGTERM); print its URL once it answers."""
    if store.is_server(uri):
        store.check_store(uri)
        views.ui_ready(uri.rstrip("/"), None, serving=False)
        return
    read.require_runs(uri)
    experiment_id = read.experiment_id(uri, experiment)  # None: not in this store
    if experiment_id is not None:  # stores from before: the UI opens on training runs too
        mark_model_training(experiment_id)
    _check_port(host, port)
    url = f"http://{host}:{port}"
    # Its own session: the server's workers are stopped together, by process group.
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            server_command(uri, host, port),
            env=server_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:  # Ctrl-C or SIGTERM (the CLI's signal scope) raise KeyboardInterrupt here
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while not store.healthy(url, timeout=2):
                if server.poll() is not None:
                    raise UserError(f"mlflow server stopped at start: {_last_line(log)}")
                if time.monotonic() > deadline:
                    raise UserError(f"mlflow server did not answer at {url} within a few minutes")
                time.sleep(0.3)
            views.ui_ready(url, experiment_id, serving=True)
            code = server.wait()
            raise UserError(f"mlflow server stopped (exit code {code}): {_last_line(log)}")
        except KeyboardInterrupt:
            views.ui_stopped()
        finally:
            stop_server(server)


def stop_server(server: subprocess.Popen) -> None:
    """Stop a server started in a session of its own, with every process it started."""
    if server.poll() is not None:
        return
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------- runs


def _sort_key(run: RunRecord, key: str, ascending: bool) -> tuple:
    """For a param or the duration: runs without it last, numbers before text (ascending)."""
    value: int | str | None = run.params.get(key)
    if key == "duration":
        value = (run.end_ms or int(time.time() * 1000)) - run.start_ms
    try:
        number = float(value)
    except (TypeError, ValueError):
        return (2, 0, "") if value is None else (1, 0, value)
    return (0, number if ascending else -number, "")


def _unknown(sort: str, runs: list[RunRecord]) -> UserError:
    known = {k for r in runs for k in (*r.metrics, *r.params)} | set(ATTRIBUTES)
    return UserError(f"cannot sort by '{sort}': use one of {', '.join(sorted(known))}")


def _selected(
    uri: str, experiment: str, parent_id: str | None, sort: str | None, ascending: bool, limit: int
) -> tuple[list[RunRecord], bool]:
    """The first `limit` runs by `sort`, and whether more match.

    The store sorts by metrics and run attributes and stops at the limit. It orders params as
    text ("100" before "50") and knows no durations: for those every run is read and sorted here.
    """
    direction = "ASC" if ascending else "DESC"
    if sort is None or sort in STORE_ORDER:
        order = None
        if sort is not None:
            order = [f"{STORE_ORDER[sort]} {'ASC' if sort in TEXT else direction}"]
        runs = read.search(uri, experiment, parent_id, order, limit + 1)
    else:
        order = [f"metrics.`{sort}` {direction}", *read.NEWEST_FIRST]  # runs without it last
        runs = read.search(uri, experiment, parent_id, order, limit + 1)
        if not (runs and sort in runs[0].metrics):  # not a metric of any run
            if sort != "duration" and not read.has_param(uri, experiment, sort, parent_id):
                raise _unknown(sort, runs)
            runs = read.search(uri, experiment, parent_id)
            runs = sorted(runs, key=lambda r: _sort_key(r, sort, ascending))
    return runs[:limit], len(runs) > limit


def list_runs(
    uri: str,
    experiment: str,
    sweep: str | None,
    sort: str | None,
    ascending: bool,
    limit: int,
    best: bool,
    output: str = "table",
) -> None:
    """Show the runs of `experiment` (or of one sweep), sorted and limited, or only the best,
    as a table or in a machine-readable `output` (views.FORMATS)."""
    if output not in views.FORMATS:
        raise UserError(f"--format {output} is not known: use one of {', '.join(views.FORMATS)}")
    if limit < 1:
        raise UserError(f"--limit {limit} is invalid: it must be a positive integer")
    parent = read.find_run(uri, experiment, sweep) if sweep else None
    parent_id = parent.run_id if parent else None
    if parent and not read.search(uri, experiment, parent_id, limit=1):
        raise UserError(f"run {parent.run_id} has no child runs: it is not a sweep's parent run")
    if best:
        runs, more = [read.best(uri, experiment, parent_id)], False
        if sort and sort not in {*runs[0].metrics, *runs[0].params, *ATTRIBUTES}:
            raise _unknown(sort, runs)
    else:
        runs, more = _selected(uri, experiment, parent_id, sort, ascending, limit)
    title = f"Runs of sweep {parent.run_id}" if parent else f"Runs of experiment '{experiment}'"
    if best:
        title = f"Best run of experiment '{experiment}' (highest val_accuracy)"
    if output == "table":
        views.runs_table(runs, title=title, more=more, extra=sort)
    else:
        views.runs_data(runs, output, extra=sort)


# ---------------------------------------------------------------- evaluate and predict


def _held_out(run: RunRecord):
    """The run's splits, rebuilt from its params, as raw 0..16 images (float32): its test split
    (`x_test`) is the held-out one, whatever its validation split."""
    from lstm_cli.data import load_digits

    try:
        test_size = float(run.params["data.test_size"])
        split_seed = int(run.params["data.split_seed"])
    except (KeyError, ValueError):
        raise UserError(
            f"run {run.run_id} has no data.test_size/data.split_seed params: not an lstm-digits run"
        ) from None
    return load_digits(test_size, split_seed, scaling="raw")


@dataclass(frozen=True)
class Evaluation:
    """The logged model's accuracy on its run's test split, against what the run logged."""

    run_id: str
    correct: int
    total: int
    logged: float | None  # the run's test_accuracy metric
    logged_name: str  # test_accuracy; val_accuracy for runs from before the test split
    matrix: np.ndarray  # (classes, classes) counts, true classes down

    @property
    def accuracy(self) -> float:
        return self.correct / self.total

    @property
    def agrees(self) -> bool:
        """Same number of correct digits as the logged accuracy (which is float32)."""
        return self.logged is not None and round(self.logged * self.total) == self.correct


def evaluate(uri: str, experiment: str, ref: str) -> Evaluation:
    """Reload `ref`'s model, recompute its held-out accuracy, show it with a confusion matrix."""
    from sklearn.metrics import confusion_matrix

    run, model_uri = read.find_model(uri, experiment, ref)
    process.import_tensorflow()  # before the model loads it: mutes TensorFlow's start-up
    model = read.load_model(uri, model_uri)
    data = _held_out(run)
    predicted = probabilities(model, data.x_test).argmax(axis=1)  # (n,)
    # Runs from before the test split measured val_accuracy on this same held-out split.
    name = "test_accuracy" if "test_accuracy" in run.metrics else "val_accuracy"
    result = Evaluation(
        run_id=run.run_id,
        correct=int((predicted == data.y_test).sum()),
        total=len(data.y_test),
        logged=run.metrics.get(name),
        logged_name=name,
        matrix=confusion_matrix(data.y_test, predicted, labels=range(data.num_classes)),
    )
    views.evaluation(result, run.name)
    return result


def predict(
    uri: str, experiment: str, ref: str, index: int | None, image: Path | None
) -> np.ndarray:
    """Predict a held-out digit (`index`) or an image file; show it; return the probabilities."""
    if (index is None) == (image is None):
        raise UserError("give exactly one of --index (a held-out digit) or --image (a file)")
    run, model_uri = read.find_model(uri, experiment, ref)
    data = _held_out(run)
    if index is not None and not 0 <= index < len(data.y_test):
        raise UserError(
            f"--index {index} is out of range: the test split of run {run.run_id[:8]} "
            f"has {len(data.y_test)} digits (0..{len(data.y_test) - 1})"
        )
    if image is not None:
        from lstm_cli.data import read_digit_image

        digit, label, source = read_digit_image(image, data.x_test.shape[1:]), None, str(image)
    else:
        digit, label, source = data.x_test[index], int(data.y_test[index]), f"test #{index}"
    process.import_tensorflow()  # before the model loads it: mutes TensorFlow's start-up
    model = read.load_model(uri, model_uri)
    found = probabilities(model, digit[None])[0]  # (classes,)
    views.prediction(digit, found, label, source, run.run_id)
    return found


def probabilities(model, images: np.ndarray) -> np.ndarray:
    """A loaded model's class probabilities (n, classes) for raw images (n, rows, pixels), passed
    as the signature asks: float64, as sklearn's digits.images."""
    return np.asarray(model.predict(np.asarray(images, dtype=np.float64)))


# ---------------------------------------------------------------- register


def register(uri: str, experiment: str, ref: str, name: str, alias: str | None) -> Any:
    """Register the model of run `ref` (an id, a prefix or `best`) as a new version of `name`,
    with `alias` if given; show it and return the version."""
    run = read.find_run(uri, experiment, ref)
    read.require_model(run)
    version = registry.register(run.run_id, name, alias)
    views.registered(version, alias)
    return version
