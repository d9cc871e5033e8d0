"""What a run records besides its epochs: its data splits at the start; at the end, its final
figures. A pruned point keeps its metrics and stops there; a kept model gets the test split's
numbers (once, on the weights it keeps: reported, never used to choose), the figures, what the
network learned, the model and its registration."""

from __future__ import annotations

import time
from typing import Any

from omegaconf import DictConfig

from lstm_cli.tracking.tags import PRUNED_TAG
from lstm_cli.views import console

EXAMPLE_IMAGES = 2  # held-out digits logged as the model's input example (the UI shows it)


def log_datasets(run: Any, data: Any) -> None:
    """The data splits as the run's dataset inputs; the experiment marked as model training
    (the UI opens it on its runs)."""
    from lstm_cli.data.digits import SOURCE

    splits = {"training": ("digits-train", data.x_train, data.y_train)}
    if data.has_validation:
        splits["validation"] = ("digits-val", data.x_val, data.y_val)
    splits["testing"] = ("digits-test", data.x_test, data.y_test)
    run.log_datasets(splits, loader=SOURCE)
    run.mark_experiment()


def finish(
    cfg: DictConfig,
    run: Any,
    loop: Any,
    data: Any,
    spec: dict[str, Any],
    logged: dict[str, set[int]],
    stopping: Any,
    train_seconds: float,
    quiet: bool,
) -> dict[str, float]:
    """Record the end of a trained run (`loop`, a `fit.loop.Loop`); return its final metrics."""
    from lstm_cli.fit.hooks.pruning import PRUNED

    history, last = loop.history, loop.last_epoch
    summary = {
        **history[-1].as_dict(),
        "best_val_accuracy": max(h.val_accuracy for h in history),
        "train_seconds": train_seconds,
    }
    if loop.stopped_by == PRUNED:  # a losing point: its metrics stay, no test split or model
        run.set_tags({PRUNED_TAG: str(last)})
        run.log_metrics({k: summary[k] for k in ("best_val_accuracy", "train_seconds")}, last)
        return summary | {PRUNED_TAG: last}
    summary |= _keep_best(run, loop, stopping, logged)
    _report(cfg, run, loop, data, spec, summary, quiet)
    return summary


def _keep_best(run: Any, loop: Any, stopping: Any, logged: dict[str, set[int]]) -> dict:
    """After early stopping: the best epoch's weights back in the model, its values logged
    after the last epoch (as MLflow's autolog does, so that a run's final numbers are its
    model's), with Keras's names `stopped_epoch` and `restored_epoch`; the final metrics
    that change. Nothing otherwise."""
    last = loop.last_epoch
    if stopping is None or not stopping.stopped_epoch or stopping.best_weights is None:
        return {}
    loop.trainer.model.set_weights(stopping.best_weights)
    kept = loop.history[stopping.best_epoch - 1].as_dict()
    run.log_epoch({k: v for k, v in kept.items() if last + 1 not in logged.get(k, ())}, last + 1)
    run.log_metrics(
        {"stopped_epoch": stopping.stopped_epoch, "restored_epoch": stopping.best_epoch}, last
    )
    return {**kept, "stopped_epoch": last, "restored_epoch": stopping.best_epoch}


def _report(
    cfg: DictConfig, run: Any, loop: Any, data: Any, spec: dict, summary: dict, quiet: bool
) -> None:
    """The test numbers, figures, insight, model and registration of a kept model's run;
    `summary` gets the test numbers and the insight's cost."""
    from lstm_cli.data.digits import pixel_scale
    from lstm_cli.fit.trainer import evaluate

    model, last = loop.trainer.model, loop.last_epoch  # the final figures' step
    summary["test_loss"], summary["test_accuracy"] = evaluate(model, data.x_test, data.y_test)
    run.log_metrics({k: summary[k] for k in ("test_loss", "test_accuracy")}, last)
    _log_results(run, model, data, loop.history)
    start = time.perf_counter()
    _log_insight(run, model, data)
    summary["insight_seconds"] = time.perf_counter() - start  # its cost, kept with every run
    run.log_metrics(
        {k: summary[k] for k in ("best_val_accuracy", "train_seconds", "insight_seconds")}, last
    )
    if cfg.tracking.log_model:
        images = data.reading.images(data.x_test[:EXAMPLE_IMAGES])  # (2, 8, 8) as read
        raw = images / pixel_scale(spec["scaling"])  # 0..16, as the dataset stores them
        run.log_model(model, spec["scaling"], data.reading, raw)
    register = cfg.tracking.get("register")  # a model name, or None
    if register:
        registered = run.register_model(register)
        if not quiet:
            console.console.print(f"[bold]registered[/]    {registered}")


def _log_results(run: Any, model: Any, data: Any, history: list[Any]) -> None:
    """The learning curves and the test split's confusion matrix (figure and counts)."""
    from sklearn.metrics import confusion_matrix

    from lstm_cli.networks.serving import predict_proba
    from lstm_cli.views import figures

    predicted = predict_proba(model, data.x_test).argmax(axis=1)  # (n,)
    matrix = confusion_matrix(data.y_test, predicted, labels=range(data.num_classes))
    for name, fig in (
        ("learning_curves.png", figures.learning_curves([h.as_dict() for h in history])),
        ("confusion_matrix.png", figures.confusion_matrix(matrix)),
    ):
        run.log_figure(fig, name)
        figures.close(fig)
    labels = list(range(data.num_classes))
    run.log_dict({"labels": labels, "matrix": matrix.tolist()}, "confusion_matrix.json")


def _log_insight(run: Any, model: Any, data: Any) -> None:
    """What the network learned (`networks.insight`), on the test split: accuracy after k
    steps, the gates its cell has (none for a plain RNN), mistakes."""
    from lstm_cli.networks import insight
    from lstm_cli.views import figures

    x, y = data.x_test, data.y_test
    seen = insight.analyse(model, x, y)
    run.log_steps("test_accuracy_by_step", seen.accuracy_by_step.tolist())  # step = steps read
    run.log_dict(seen.as_dict(), "insight.json")
    images = data.reading.images(x)  # (n, 8, 8): the digits as they look, whatever the reading
    wrong, examples = seen.misclassified, seen.examples
    figs = {"accuracy_by_step.png": figures.accuracy_by_step(seen.accuracy_by_step)}
    if seen.states:
        figs["gates.png"] = figures.gate_heatmaps(
            images[examples], y[examples], seen.predicted[examples], seen.states
        )
    figs["misclassified.png"] = figures.misclassified(
        images[wrong], y[wrong], seen.predicted[wrong], len(y)
    )
    for name, fig in figs.items():
        run.log_figure(fig, name)
        figures.close(fig)
