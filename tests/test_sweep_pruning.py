"""Pruning end to end: real sweeps whose hopeless points (learning rate 3e-5: still at chance
after two epochs) stop at the first rung, decided from what the other points recorded in the
store, on the basic and joblib launchers and under optuna. The SLURM case is in the cluster
tier (test_cluster.py)."""

from __future__ import annotations

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import run_cli, sqlite_uri, sweep_runs

GOOD, HOPELESS = "0.01", "3e-05"
# One rung, after epoch 2 (the next, 6, is past the last epoch); asha keeps the top third.
PRUNE = ("epochs=4", "hidden_size=8", "tracking.log_model=false", "prune.grace_epochs=2")


def check_pruned(uri: str, child, epoch: int = 2) -> None:
    """A pruned point: FINISHED, tagged, its metrics up to the rung kept, nothing after it."""
    client = MlflowClient(uri)
    assert child.info.status == "FINISHED"
    assert child.data.tags["pruned_at_epoch"] == str(epoch)
    history = client.get_metric_history(child.info.run_id, "val_loss")  # prune.metric's
    assert sorted(m.step for m in history) == list(range(1, epoch + 1))
    assert child.data.metrics[f"rung/{epoch}/val_loss"] == history[-1].value
    assert "test_accuracy" not in child.data.metrics  # the test split is for the kept models
    names = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert names == {"config.yaml"}  # no figures, no model, no checkpoint


@pytest.mark.slow
def test_basic_launcher_asha_prunes_the_hopeless_points(tmp_path):
    uri = sqlite_uri(tmp_path)
    result = run_cli(
        "train",
        "-m",
        f"learning_rate={GOOD},{HOPELESS},{HOPELESS}",
        *PRUNE,
        "prune=asha",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    parent, (good, *hopeless) = sweep_runs(uri)
    assert good.info.status == "FINISHED" and "pruned_at_epoch" not in good.data.tags
    assert "test_accuracy" in good.data.metrics
    for child in hopeless:  # the first against [good]; the second against [good, the first]
        check_pruned(uri, child)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["pruned_jobs"] == 2 and parent.data.metrics["failed_jobs"] == 0
    assert parent.data.tags["best_run_id"] == good.info.run_id
    assert result.stdout.count("pruned at epoch 2") == 2
    assert "PRUNED @2" in result.stdout and "2 of 3 points pruned" in result.stdout
    listed = run_cli("runs", "--tracking-uri", uri, "--format", "json", cwd=tmp_path)
    assert "FINISHED (pruned @2)" in listed.stdout
    refused = run_cli("resume", hopeless[0].info.run_id, "--tracking-uri", uri, cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"error: run {hopeless[0].info.run_id} was pruned at epoch 2")


@pytest.mark.slow
def test_joblib_median_prunes_from_the_other_workers_records(tmp_path):
    """Two workers: the good points train first, side by side; the hopeless ones start when
    a worker is free and read the good ones' records, written by other processes."""
    uri = sqlite_uri(tmp_path)
    result = run_cli(
        "train",
        "-m",
        f"learning_rate={GOOD},{HOPELESS}",
        "seed=1,2",
        *PRUNE,
        "prune=median",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    parent, children = sweep_runs(uri)
    rates = [c.data.params["learning_rate"] for c in children]
    assert rates == [GOOD, GOOD, HOPELESS, HOPELESS]
    for child in children[2:]:
        check_pruned(uri, child)
    # Which good point is pruned depends on which reaches the rung first: at least one is not.
    assert any("pruned_at_epoch" not in c.data.tags for c in children[:2])
    pruned = sum("pruned_at_epoch" in c.data.tags for c in children)
    assert parent.data.metrics["pruned_jobs"] == pruned


@pytest.mark.slow
def test_optuna_gets_a_pruned_points_value_at_the_epoch_where_it_stopped(tmp_path):
    """The sweeper keeps its trials in memory (optuna 2's RDB storage fails on SQLAlchemy 2):
    minimising makes the value it got for the pruned point its reported best. Its seed 2
    tries the good rate three times (random start-up trials), then the hopeless one."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    uri = sqlite_uri(tmp_path)
    result = run_cli(
        "train",
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.direction=minimize",
        "hydra.sweeper.sampler.seed=2",
        f"learning_rate=choice({GOOD},{HOPELESS})",
        "batch_size=100",
        "output_activation=tanh",
        *PRUNE,
        "prune=asha",
        f"tracking.uri={uri}",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    _, children = sweep_runs(uri)
    assert len(children) == 4
    rates = [c.data.params["learning_rate"] for c in children]
    assert rates == [GOOD, GOOD, GOOD, HOPELESS]
    assert all("test_accuracy" in c.data.metrics for c in children[:3])  # the kept models
    check_pruned(uri, children[3])
    optimum = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    value = children[3].data.metrics["val_accuracy"]  # after epoch 2, where it stopped
    assert optimum["best_value"] == pytest.approx(value, abs=1e-7)
    assert optimum["best_params"]["learning_rate"] == float(HOPELESS)


@pytest.mark.slow
def test_early_stopping_in_a_joblib_sweep_keeps_each_points_best_epoch(tmp_path):
    """No improvement can beat min_delta=10: every point stops after its second epoch and
    keeps its first epoch's weights, in workers as in a single run."""
    uri = sqlite_uri(tmp_path)
    result = run_cli(
        "train",
        "-m",
        "seed=1,2",
        "epochs=6",
        "hidden_size=8",
        "tracking.log_model=false",
        "early_stopping.patience=1",
        "early_stopping.min_delta=10",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    parent, children = sweep_runs(uri)
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.metrics["stopped_epoch"] == 2
        assert child.data.metrics["restored_epoch"] == 1
        assert "test_accuracy" in child.data.metrics  # on the kept (epoch 1) weights
    assert parent.data.metrics["pruned_jobs"] == 0
