"""Cells and readings end to end: every cell on two readings in one sweep, what each run
records for its cell and its reading, a served model that takes the 8x8 image whatever its
reading, and a resume that would change the network refused."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lstm_cli.config.choices import Cell, names
from lstm_cli.runtime import hardware
from tests.helpers import assert_one_line_error, run_cli, sqlite_uri, sweep_runs

GATES = {
    "article": "ifo",
    "lstm": "ifo",
    "peephole": "ifo",
    "cifg": "ifo",
    "nig": "fo",
    "nfg": "io",
    "nog": "if",
    "niaf": "ifo",
    "gru": "ur",
    "rnn": "",
}


@pytest.mark.slow
def test_every_cell_on_rows_and_pixels_in_one_sweep(tmp_path):
    """The issue's command at a tiny budget: `-m 'cell=glob(*)' data.reading=rows,pixels`,
    every point FINISHED and ranked; each run records the steps of its reading and the gates of
    its cell, and says which kernel ran."""
    uri = sqlite_uri(tmp_path)
    result = run_cli(
        "train",
        "-m",
        "cell=glob(*)",
        "data.reading=rows,pixels",
        "epochs=1",
        "hidden_size=4",
        "batch_size=500",
        "tracking.log_model=false",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"tracking.uri={uri}",
        cwd=tmp_path,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    parent, children = sweep_runs(uri)
    assert parent.info.status == "FINISHED" and len(children) == 2 * len(names(Cell))
    client = MlflowClient(uri)
    seen = set()
    for child in children:
        cell, reading = child.data.params["cell"], child.data.params["data.reading"]
        seen.add((cell, reading))
        assert child.info.status == "FINISHED"
        steps = {"rows": 8, "pixels": 64}[reading]
        by_step = client.get_metric_history(child.info.run_id, "test_accuracy_by_step")
        assert sorted(m.step for m in by_step) == list(range(1, steps + 1))
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert ("gates.png" in artifacts) == bool(GATES[cell]), cell
        assert child.data.tags["kernel"] in ("fused", "ops")
    assert seen == {(c, r) for c in names(Cell) for r in ("rows", "pixels")}
    path = client.download_artifacts(parent.info.run_id, "sweep_results.csv", str(tmp_path))
    table = list(csv.DictReader(io.StringIO(Path(path).read_text())))
    accuracies = [float(row["val_accuracy"]) for row in table]
    assert len(table) == 20 and accuracies == sorted(accuracies, reverse=True)  # ranked


@pytest.mark.slow
def test_a_pixels_model_serves_the_8x8_image_and_a_resume_keeps_its_network(tmp_path):
    uri = sqlite_uri(tmp_path)
    args = ("cell=gru", "data.reading=permuted", "data.permutation_seed=3", "epochs=2")
    trained = run_cli("train", *args, "hidden_size=8", f"tracking.uri={uri}", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    client = MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    served = "ops" if hardware.missing_kernel() else "fused"  # the GRU's step has the kernel
    assert run.data.tags["kernel"] == served and run.data.params["data.reading"] == "permuted"
    evaluated = run_cli("evaluate", run.info.run_id, "--tracking-uri", uri, cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr  # agrees, digit by digit
    predicted = run_cli(
        "predict", run.info.run_id, "--index", "3", "--tracking-uri", uri, cwd=tmp_path
    )
    assert predicted.returncode == 0, predicted.stderr
    for change in ("cell=lstm", "layers=2", "data.reading=rows", "data.permutation_seed=4"):
        refused = run_cli(
            "resume", run.info.run_id, change, "epochs=4", "--tracking-uri", uri, cwd=tmp_path
        )
        assert_one_line_error(refused, 2, f"{change.partition('=')[0]}= would change what run")
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
