"""Sweep summaries from child-run records (no MLflow, no training)."""

from __future__ import annotations

import math
import statistics
import warnings

import pytest

from lstm_cli.sweeps import summary
from lstm_cli.views import figures


def record(job, overrides, val, status="FINISHED", seed="0", error=""):
    params = dict(o.split("=") for o in overrides.split())
    params.setdefault("seed", seed)
    return {
        "run_id": f"run{job}",
        "job": job,
        "status": status,
        "overrides": overrides,
        "params": params,
        "metrics": {"val_accuracy": val, "val_loss": 1 - val} if status == "FINISHED" else {},
        "error": error,
        "curve": [val / 2, val],
    }


RECORDS = [
    record(0, "hidden_size=8 seed=1 epochs=2", 0.80),
    record(1, "hidden_size=8 seed=2 epochs=2", 0.90),
    record(2, "hidden_size=16 seed=1 epochs=2", 0.95),
    record(3, "hidden_size=16 seed=2 epochs=2", 0.97),
    record(4, "hidden_size=0 seed=1 epochs=2", math.nan, status="FAILED", error="hidden_size=0"),
]


def test_results_are_sorted_best_first_failed_last_with_swept_keys_only():
    rows = summary.results_table(RECORDS)
    assert [r["job"] for r in rows] == [3, 2, 1, 0, 4]
    assert rows[0]["overrides"] == "hidden_size=16 seed=2"  # epochs is not swept
    assert rows[-1]["status"] == "FAILED" and rows[-1]["error"] == "hidden_size=0"
    assert math.isnan(rows[-1]["val_accuracy"])


def test_seed_groups_give_mean_and_sample_std_per_configuration():
    groups = summary.seed_groups(RECORDS)
    assert [g["config"] for g in groups] == ["hidden_size=16", "hidden_size=8"]
    assert groups[0]["n"] == 2 and groups[0]["seeds"] == "1 2"
    assert groups[0]["val_accuracy_mean"] == pytest.approx(0.96)
    assert groups[0]["val_accuracy_std"] == pytest.approx(statistics.stdev([0.95, 0.97]))
    assert groups[1]["val_accuracy_mean"] == pytest.approx(0.85)


def test_no_seed_summary_without_repeated_seeds():
    assert summary.seed_groups(RECORDS[::2]) == []


def test_tables_render_as_csv_and_markdown():
    rows = summary.results_table(RECORDS)
    csv_text = summary.to_csv(rows)
    assert csv_text.splitlines()[0].startswith("job,overrides,status,val_accuracy")
    assert len(csv_text.splitlines()) == 1 + len(RECORDS)
    md = summary.to_markdown(rows).splitlines()
    assert md[0].startswith("| job | overrides |") and md[2].startswith(
        "| 3 | hidden_size=16 seed=2"
    )


def test_a_search_labels_its_jobs_readably_in_the_comparison_figure():
    long = (  # as an optuna trial's overrides read
        "hidden_size=200 learning_rate=0.00037054191817781617 batch_size=64 output_activation=tanh"
    )
    label = figures._job_label(3, long)
    assert label.startswith("#3 hidden_size=200\nlearning_rate=0.000371 batch_size=64")
    assert max(len(line) for line in label.splitlines()) <= 36
    assert figures._job_label(0, "seed=2 hidden_size=50") == "#0 seed=2 hidden_size=50"
    records = [
        {
            "run_id": f"r{j}",
            "job": j,
            "status": "FINISHED",
            "metrics": {"val_accuracy": 0.5 + j / 20},
            "curve": [0.3, 0.5 + j / 20],
        }
        for j in range(6)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "Tight layout not applied": labels too long to fit
        fig = figures.sweep_comparison(records, {r["run_id"]: long for r in records})
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == [
        f"#{j}" for j in range(6)
    ]  # long labels: the bars name the jobs
    figures.close(fig)
