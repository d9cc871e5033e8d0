"""The docs' pictures from a real run (`make docs-images`), and a screenshot of a built site.

    python docs/tools/images.py            # train, copy the run's figures, screenshot the UI
    python docs/tools/images.py --site site/index.html --out outputs/site-home.png

A default run (`lstm-digits train`, 100 epochs, about 10 s) into a temporary store; its
figures are copied from MLflow to docs/images/; `lstm-digits ui` serves that store and headless
Chromium (Debian's chromium and chromedriver: `make browser-deps`) takes the page it opens on.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "docs" / "images"
CLI = str(Path(sys.executable).with_name("lstm-digits"))
FIGURES = [
    "learning_curves.png",
    "confusion_matrix.png",
    "accuracy_by_step.png",
    "gates.png",
    "misclassified.png",
]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def browser(profile: Path, size: str = "1600,1000"):
    """Headless Chromium, as the browser test drives it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        f"--window-size={size}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def train(workdir: Path) -> tuple[str, str]:
    """A default run into a store of its own: (tracking URI, run id)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    subprocess.run([CLI, "train", f"tracking.uri={uri}"], cwd=workdir, check=True)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("lstm-digits")
    (run,) = client.search_runs([experiment.experiment_id])
    for name in FIGURES:
        shutil.copy(client.download_artifacts(run.info.run_id, name, str(workdir)), IMAGES)
    return uri, experiment.experiment_id


def screenshot_ui(workdir: Path, uri: str, experiment_id: str) -> None:
    """`lstm-digits ui` on the run's store, the page it opens on, in headless Chromium."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from lstm_cli.views.tables import experiment_page

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([CLI, "ui", "--port", str(port), "--tracking-uri", uri], cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    driver = None
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
        driver = browser(workdir / "profile")
        driver.get(experiment_page(url, experiment_id))
        xpath = "//*[contains(text(), 'digits-train')]"  # the runs table, with its Dataset column
        WebDriverWait(driver, 90).until(ec.presence_of_element_located((By.XPATH, xpath)))
        time.sleep(2)  # the last requests of the React app
        # MLflow 3.17's assistant panel opens once per browser: closed, as a user would
        for button in driver.find_elements(By.XPATH, "//button[@aria-label='Close']"):
            if button.is_displayed():
                button.click()
        time.sleep(1)
        driver.save_screenshot(str(IMAGES / "mlflow-ui.png"))
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=60)


def screenshot_page(page: Path, out: Path) -> None:
    """A built page of the site, as a newcomer's browser shows it."""
    with tempfile.TemporaryDirectory() as tmp:
        driver = browser(Path(tmp) / "profile", "1280,1100")
        try:
            driver.get(page.resolve().as_uri())
            time.sleep(2)
            out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(out))
        finally:
            driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, help="screenshot this built page instead")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "site-home.png")
    args = parser.parse_args()
    if args.site:
        screenshot_page(args.site, args.out)
        print(f"wrote {args.out}")
        return
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        uri, experiment_id = train(Path(tmp))
        screenshot_ui(Path(tmp), uri, experiment_id)
    print(f"wrote {', '.join(FIGURES)} and mlflow-ui.png to {IMAGES.relative_to(ROOT)}/")


if __name__ == "__main__":
    main()
