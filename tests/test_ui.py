"""`lstm-digits ui`: a real MLflow server on the trained store, read through REST and Chromium."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import (
    CLI,
    EXPERIMENT,
    assert_one_line_error,
    cli_env,
    descendant_pids,
    free_port,
    run_cli,
    wait_healthy,
)

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"  # `make browser-deps`


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_ui_serves_the_experiment_and_the_run_over_rest(ui_server, trained_run):
    api = f"{ui_server.url}/api/2.0/mlflow"
    query = urllib.parse.urlencode({"experiment_name": EXPERIMENT})
    experiment = get_json(f"{api}/experiments/get-by-name?{query}")["experiment"]
    assert experiment["experiment_id"] == ui_server.experiment_id
    tags = {t["key"]: t["value"] for t in experiment["tags"]}
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # opens on training runs
    run = get_json(f"{api}/runs/get?run_id={trained_run.run_id}")["run"]
    assert run["info"]["status"] == "FINISHED"
    assert run["info"]["experiment_id"] == ui_server.experiment_id
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert 0.0 <= metrics["val_accuracy"] <= 1.0


@pytest.mark.slow
@pytest.mark.browser
def test_the_ui_opens_on_the_training_runs_with_val_accuracy(ui_server, trained_run, tmp_path):
    """The page `lstm-digits ui` prints, in headless Chromium: the Model-training view's runs,
    with their datasets; then the val_accuracy column, picked as a user would."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if os.environ.get("CI"):  # CI must run it: `make test` installs them there
            pytest.fail("no Debian chromium/chromedriver in CI: `make browser-deps` did not run")
        pytest.skip("no Debian chromium/chromedriver: run `make browser-deps` as root")
    from mlflow.tracking import MlflowClient
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from lstm_cli.views.tables import experiment_page

    run = MlflowClient(trained_run.uri).get_run(trained_run.run_id)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1600,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)

    def shown(xpath: str):
        return wait.until(ec.presence_of_element_located((By.XPATH, xpath)))

    try:
        driver.get(experiment_page(ui_server.url, ui_server.experiment_id))
        wait = WebDriverWait(driver, 90)
        for text in (EXPERIMENT, run.info.run_name, "Model training", "Runs"):
            shown(f"//*[text()='{text}']")  # the React app renders them after its requests
        shown("//*[contains(text(), 'digits-train')]")  # the Dataset column
        assert "/runs" in driver.current_url and "Overview" not in driver.page_source
        assert driver.save_screenshot(str(tmp_path / "mlflow-ui.png"))  # what the UI opens on
        columns = "//button[.//*[text()='Columns'] or text()='Columns']"
        wait.until(ec.element_to_be_clickable((By.XPATH, columns))).click()
        wait.until(ec.element_to_be_clickable((By.XPATH, "//*[text()='val_accuracy']"))).click()
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        cell = shown("//*[@role='gridcell'][contains(@col-id, 'val_accuracy')]")
        value = run.data.metrics["val_accuracy"]
        wait.until(lambda _: cell.text.strip() != "")
        assert float(cell.text) == pytest.approx(value, abs=1e-3), cell.text
        driver.execute_script("arguments[0].scrollIntoView({inline: 'center'})", cell)
        assert driver.save_screenshot(str(tmp_path / "mlflow-ui-val-accuracy.png"))
    finally:
        driver.quit()
    assert (tmp_path / "mlflow-ui.png").stat().st_size > 20_000  # a rendered page


def _descendants(pid: int) -> list[str]:
    """Command lines of every process below `pid`."""
    lines = []
    for child in descendant_pids(pid):
        try:
            lines.append(Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return lines


def _environment(pid: int) -> dict[str, str]:
    """The environment process `pid` started with."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {key: value for key, _, value in pairs}


@pytest.mark.slow
def test_the_ui_server_runs_without_mlflows_genai_job_runner(ui_server):
    """Ten helper processes and a directory in /dev/shm left at every start, for nothing here."""
    below = _descendants(ui_server.process.pid)
    assert any("mlflow" in c and "server" in c for c in below), below  # the scan sees it
    assert [c for c in below if "huey" in c or "mlflow.server.jobs" in c] == []
    environments = [_environment(pid) for pid in descendant_pids(ui_server.process.pid)]
    assert environments and all(
        env.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION") == "false" for env in environments
    )


@pytest.mark.slow
def test_a_users_job_runner_setting_reaches_the_server(monkeypatch):
    from lstm_cli.commands.ui import server_environment

    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "true")
    assert server_environment()["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"


@pytest.mark.slow
def test_ctrl_c_stops_the_ui_and_its_server(ui_server):
    """Last in this module: it stops the module's server."""
    ui_server.process.send_signal(signal.SIGINT)
    stdout, stderr = ui_server.process.communicate(timeout=60)
    assert ui_server.process.returncode == 0, stderr
    assert ui_server.url in stdout and "Traceback" not in stderr
    assert "/runs?workflowType=machine_learning" in stdout  # the page to open: training runs
    port = int(ui_server.url.rsplit(":", 1)[1])
    with socket.socket() as probe:  # nothing listens any more: the server's workers are gone too
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
        probe.bind(("127.0.0.1", port))


@pytest.mark.slow
def test_ui_on_a_port_in_use_is_one_line(trained_run, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("ui", "--port", str(port), "--tracking-uri", trained_run.uri, cwd=tmp_path)
    assert_one_line_error(result, 2, f"cannot serve the UI on 127.0.0.1:{port}")


@pytest.mark.slow
def test_ui_on_an_empty_store_is_one_line_and_creates_nothing(tmp_path):
    result = run_cli("ui", "--port", str(free_port()), cwd=tmp_path)
    assert_one_line_error(result, 2, "no runs yet: run `lstm-digits train` first")
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_ui_for_a_tracking_server_names_the_server(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens: the health check must say so
    result = run_cli("ui", "--tracking-uri", url, cwd=tmp_path)
    assert_one_line_error(result, 2, f"cannot reach the MLflow tracking server at {url}")


@pytest.mark.slow
def test_ui_beyond_loopback_warns_in_one_line_and_serves(trained_run):
    port = free_port()
    process = subprocess.Popen(
        [CLI, "ui", "--host", "0.0.0.0", "--port", str(port), "--tracking-uri", trained_run.uri],
        cwd=trained_run.workdir,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert stderr.splitlines() == [
        f"warning: the UI on 0.0.0.0:{port} has no sign-in, and its API lets anyone who reaches "
        "it read, write and delete runs and models; to serve a team, run MLflow's server with "
        "--app-name basic-auth behind TLS (docs/cluster.md: the team server)"
    ]
