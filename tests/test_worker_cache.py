"""What a process keeps between jobs (lstm_cli/runtime/worker_cache.py): one value per entry, closed
when replaced or reset; and a job run after another gives bit for bit what it gives first in
its process."""

from __future__ import annotations

from pathlib import Path

import pytest

from lstm_cli.runtime import worker_cache
from tests.helpers import run_cli, sqlite_uri, sweep_runs


@pytest.fixture(autouse=True)
def empty_cache():
    worker_cache.reset()
    yield
    worker_cache.reset()


def test_an_entry_is_found_under_its_key_only():
    assert worker_cache.get("trainer", ("a", 1)) is None
    value = worker_cache.put("trainer", object(), ("a", 1))
    assert worker_cache.get("trainer", ("a", 1)) is value
    assert worker_cache.get("trainer", ("a", 2)) is None


def test_one_value_per_entry_the_replaced_one_closed():
    closed = []
    worker_cache.put("figure:x", "first", 1, close=closed.append)
    worker_cache.put("figure:x", "second", 2, close=closed.append)
    assert closed == ["first"]
    assert list(worker_cache.kept("figure:")) == ["second"]


def test_reset_closes_and_forgets_by_prefix():
    closed = []
    worker_cache.put("figure:a", "a", close=closed.append)
    worker_cache.put("figure:b", "b", close=closed.append)
    worker_cache.put("digits", "d")
    worker_cache.reset("figure:")
    assert sorted(closed) == ["a", "b"] and list(worker_cache.kept()) == ["d"]
    worker_cache.reset()
    assert list(worker_cache.kept()) == []


TIMINGS = ("train_seconds", "insight_seconds")  # the only numbers that may differ


@pytest.mark.slow
def test_a_job_after_another_gives_what_it_gives_first_in_its_process(tmp_path):
    """Job 0 (seed 2) runs first in the process; job 2 (seed 2 again) after job 1 (seed 1),
    with the trainer, figures, data and serving module kept: the same metrics at every step
    (the test split's and the insight's too), the same figures byte for byte."""
    from mlflow.tracking import MlflowClient

    uri = sqlite_uri(tmp_path)
    result = run_cli(
        "train",
        "-m",
        "seed=2,1,2",
        "epochs=3",
        "hidden_size=8",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    _, (first, _, again) = sweep_runs(uri)
    client = MlflowClient(uri)
    keys = set(first.data.metrics) - set(TIMINGS)
    assert keys == set(again.data.metrics) - set(TIMINGS)
    for key in sorted(keys):
        histories = [
            [
                (m.step, m.value)
                for m in sorted(client.get_metric_history(r.info.run_id, key), key=lambda m: m.step)
            ]
            for r in (first, again)
        ]
        assert histories[0] == histories[1], key
    for name in (
        "learning_curves.png",
        "confusion_matrix.png",
        "accuracy_by_step.png",
        "gates.png",
        "misclassified.png",
    ):
        pngs = [
            Path(
                client.download_artifacts(r.info.run_id, name, str(tmp_path / r.info.run_id))
            ).read_bytes()
            for r in (first, again)
        ]
        assert pngs[0] == pngs[1], name
    assert first.data.metrics["test_accuracy"] == again.data.metrics["test_accuracy"]
