"""The "Cells and readings" page's results from real runs (`make docs-cells`).

    python docs/tools/cells.py                 # the sweep below, then the table and figures
    python docs/tools/cells.py --epochs 5      # a quicker look (the page then says 5)

Runs `lstm-digits train -m 'cell=glob(*)' data.reading=rows,pixels epochs=30` into a
temporary store, writes its table (every cell on each reading: the validation accuracy that
chooses, the test accuracy reported beside it, the seconds of training and the kernel that ran)
between the `cells:results` markers of docs/cells.md, and copies a few of its runs' figures to
docs/images/cells/.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "cells.md"
IMAGES = ROOT / "docs" / "images" / "cells"
CLI = str(Path(sys.executable).with_name("lstm-digits"))
READINGS = ("rows", "pixels")
# (cell, reading, the run's figure) -> the page's picture
FIGURES = {
    ("article", "rows", "gates.png"): "article-rows-gates.png",
    ("gru", "rows", "gates.png"): "gru-rows-gates.png",
    ("lstm", "pixels", "accuracy_by_step.png"): "lstm-pixels-accuracy-by-step.png",
    ("rnn", "pixels", "accuracy_by_step.png"): "rnn-pixels-accuracy-by-step.png",
    ("rnn", "pixels", "learning_curves.png"): "rnn-pixels-learning-curves.png",
    ("nfg", "pixels", "learning_curves.png"): "nfg-pixels-learning-curves.png",
}
START, END = "<!-- cells:results -->", "<!-- /cells:results -->"


def sweep(workdir: Path, epochs: int) -> tuple[str, list]:
    """The sweep, into a store of its own: (tracking URI, its finished points' runs)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    command = [CLI, "train", "-m", "cell=glob(*)", f"data.reading={','.join(READINGS)}"]
    subprocess.run([*command, f"epochs={epochs}", f"tracking.uri={uri}"], cwd=workdir, check=True)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("lstm-digits")
    runs = client.search_runs([experiment.experiment_id], "params.cell != ''")
    return uri, [r for r in runs if r.info.status == "FINISHED"]


def table(runs: list, cells: list[str], epochs: int) -> str:
    """Markdown: one row per cell, the readings side by side."""
    by = {(r.data.params["cell"], r.data.params["data.reading"]): r for r in runs}
    head = ["cell"]
    for reading in READINGS:
        head += [f"{reading}: val", "test", "s", "kernel"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for cell in cells:
        row = [f"`{cell}`"]
        for reading in READINGS:
            run = by.get((cell, reading))
            if run is None:
                row += ["failed", "", "", ""]
                continue
            m = run.data.metrics
            row += [
                f"{m['val_accuracy']:.4f}",
                f"{m['test_accuracy']:.4f}",
                f"{m['train_seconds']:.0f}",
                run.data.tags.get("kernel", ""),
            ]
        lines.append("| " + " | ".join(row) + " |")
    said = (
        f"`lstm-digits train -m 'cell=glob(*)' data.reading={','.join(READINGS)} "
        f"epochs={epochs}` (the defaults beside: hidden_size {runs[0].data.params['hidden_size']}, "
        "seed 0; one run each; `make docs-cells`). "
        "`val` is the validation split's accuracy at the last epoch, `test` the test split's "
        "(360 digits); `s` the seconds of training on this page's machine, 2 cores."
    )
    return "\n".join([said, "", *lines])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    from mlflow.tracking import MlflowClient

    from lstm_cli.config.choices import Cell, names

    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        uri, runs = sweep(Path(tmp), args.epochs)
        client = MlflowClient(uri)
        by = {(r.data.params["cell"], r.data.params["data.reading"]): r for r in runs}
        for (cell, reading, name), picture in FIGURES.items():
            if (cell, reading) in by:
                got = client.download_artifacts(by[cell, reading].info.run_id, name, tmp)
                shutil.copy(got, IMAGES / picture)
        page = PAGE.read_text()
        block = f"{START}\n{table(runs, names(Cell), args.epochs)}\n{END}"
        PAGE.write_text(re.sub(f"{START}.*?{END}", lambda _: block, page, flags=re.S))
    where = f"{PAGE.relative_to(ROOT)} and {IMAGES.relative_to(ROOT)}/"
    print(f"wrote the table and {len(FIGURES)} figures: {where}")


if __name__ == "__main__":
    main()
