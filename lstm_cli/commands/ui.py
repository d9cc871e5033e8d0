"""`lstm-digits ui`: the MLflow UI on the store `train` uses, as a child `mlflow server` whose
command line is built here; its URL printed once it answers, stopped with Ctrl-C."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Annotated

import typer

from lstm_cli.commands.options import Experiment, TrackingUri, docs, reading, where
from lstm_cli.runtime.errors import UserError
from lstm_cli.views import console

SERVER_START_TIMEOUT_S = 120.0  # `mlflow server` takes 10-20 s to start on a small machine


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


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) is this machine's alone: 127.x, ::1, localhost."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to an interface others reach
        return False


def exposure_warning(host: str, port: int) -> str:
    """The line `ui --host` prints for an address other machines may reach."""
    return (
        f"the UI on {host}:{port} has no sign-in, and its API lets anyone who reaches it read, "
        "write and delete runs and models; to serve a team, run MLflow's server with "
        "--app-name basic-auth behind TLS (docs/cluster.md: the team server)"
    )


def server_environment() -> dict[str, str]:
    """The environment for `server_command`: without MLflow's GenAI job runner (unless the user
    asks for it), whose ten helper processes this tool never uses and whose store directory in
    /dev/shm MLflow leaves behind at every start."""
    return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}


def server_command(uri: str, host: str, port: int) -> list[str]:
    """`mlflow server` on the store `uri` (one worker: a UI for one user)."""
    from lstm_cli.tracking import store

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
    from lstm_cli.tracking import read, store
    from lstm_cli.tracking.run_handle import mark_model_training
    from lstm_cli.views import tables

    if store.is_server(uri):
        store.check_store(uri)
        tables.ui_ready(uri.rstrip("/"), None, serving=False)
        return
    read.require_runs(uri)
    experiment_id = read.experiment_id(uri, experiment)  # None: not in this store
    if experiment_id is not None:  # stores from before: the UI opens on training runs too
        mark_model_training(experiment_id)
    _check_port(host, port)
    if not is_loopback(host):
        console.warning(exposure_warning(host, port))
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
            tables.ui_ready(url, experiment_id, serving=True)
            code = server.wait()
            raise UserError(f"mlflow server stopped (exit code {code}): {_last_line(log)}")
        except KeyboardInterrupt:
            tables.ui_stopped()
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


def ui(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5000,
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0: every interface).")] = (
        "127.0.0.1"
    ),
    tracking_uri: TrackingUri = None,
    experiment: Experiment = None,
) -> None:
    """Open the MLflow UI on the store `train` uses; print its URL; stop with Ctrl-C.

    \b
    Examples:
      lstm-digits ui
      lstm-digits ui --port 5001 --host 127.0.0.1
    """
    with reading():
        serve_ui(*where(tracking_uri, experiment), host=host, port=port)


def add_to(app: typer.Typer) -> None:
    """Register the command."""
    app.command(epilog=docs("runs", "Runs, models and the registry"))(ui)
