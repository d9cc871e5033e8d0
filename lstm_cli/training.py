"""Training inside one MLflow run: open the run (`train_run`, the one path of every training:
a new run, a resumed one, a requeued one), then the data, the model, the epochs with their
metrics and checkpoints (the loop itself is `loop.Trainer`), then what every run records
(figures, what the LSTM learned, the model).

`fit_and_log` trains a new run, or goes on with a stopped one (a `resume.Reopening`): values
already in the store are not logged again and missing ones are logged from the replay, so the
run keeps one value per step. While epochs train, a first Ctrl-C or SIGTERM stops at the
epoch's end with a checkpoint (see `signals.graceful`).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from lstm_cli import config, console, gates_kernel, masking, process, pruning, resume, signals
from lstm_cli.checkpointing import Saver, model_spec, split_digest
from lstm_cli.data import split_for
from lstm_cli.early_stopping import EarlyStopping
from lstm_cli.errors import DIVERGED_TAG, Diverged, Interrupted

if TYPE_CHECKING:
    from lstm_cli.resume import Reopening

EXAMPLE_IMAGES = 2  # held-out digits logged as the model's input example (the UI shows it)


def train_run(
    cfg: DictConfig,
    quiet: bool,
    threads: int | None,
    new: tuple[str, str, dict, dict, str | None] | None = None,
    reopening: Reopening | None = None,
    tags: dict[str, str] | None = None,
) -> tuple[dict[str, float], str]:
    """Open a run and train it: the one path of every training. `reopening` (a stopped run,
    checked by `resume.reopen`) goes on in its run; else a new run from `new` (experiment id,
    name, params, tags, parent run); `tags` are added to a reopened run's. Returns the final
    metrics and the run's id."""
    from lstm_cli.tracking import run as tracked

    store = {"outage_s": 60 * cfg.tracking.outage_minutes, "on_wait": console.note}
    if reopening is not None:
        if reopening.note:
            console.note(reopening.note)
        saved = reopening.checkpoint
        reopened = {
            "resume": reopening.run_id,
            "requeued": reopening.requeued,
            "slot": saved.slot if saved else None,
            "epoch": saved.epoch if saved else 0,
            "continued": reopening.continued,
        }
        with tracked.start_run("", "", {}, tags or {}, **reopened, **store) as run:
            return fit_and_log(cfg, run, quiet, threads, reopening), run.run_id
    experiment_id, name, params, tags, parent = new
    with tracked.start_run(experiment_id, name, params, tags, parent, **store) as run:
        config.check(cfg)
        run.log_text(masking.mask(OmegaConf.to_yaml(cfg, resolve=True)), "config.yaml")
        return fit_and_log(cfg, run, quiet, threads), run.run_id


def resume_run(uri: str, run: Any, overrides: list[str]) -> None:
    """`lstm-digits resume RUN OVERRIDES` for `run` (a `tracking.read.RunRecord` of the store at
    `uri`): check everything (`resume.plan`), then go on with the run."""
    from lstm_cli.tracking import store

    cfg, reopening = resume.plan(uri, run, overrides)
    uri = store.resolve_uri(cfg.tracking.uri)
    saved = reopening.checkpoint
    where = f"after epoch {saved.epoch}" if saved else "from its start (it has no checkpoint)"
    console.console.print(f"[bold]resume[/] run {reopening.run_id} {where}")
    tags = {"resume_overrides": " ".join(overrides)}
    result, run_id = train_run(cfg, False, _resume_threads(cfg), reopening=reopening, tags=tags)
    how = store.ui_command(uri, reopening.experiment, reopening.experiment_id, run_id)
    console.show_result(result, run_id, masking.mask(uri), masking.mask(how))


def _resume_threads(cfg: DictConfig) -> int | None:
    process.import_tensorflow()
    from lstm_cli.loop import default_threads

    return cfg.threads if cfg.threads is not None else default_threads(cfg.hidden_size)


def fit_and_log(
    cfg: DictConfig, run: Any, quiet: bool, threads: int | None, reopening: Any = None
) -> dict[str, float]:
    """Train in `run` (a tracking handle), from the start or from `reopening`; log the data
    splits, metrics, checkpoints, figures and the model (registered as `tracking.register` if
    set); return the final metrics."""
    process.import_tensorflow()  # before any op: thread settings still apply
    training = _set_up(cfg, run, threads, reopening)
    start = time.perf_counter()
    history = _epochs(cfg, run, quiet, training)
    run.open()  # a run reopened with no epoch left to train: only its record to finish
    last = history[-1].epoch
    pruned = training.pruner is not None and training.pruner.pruned_at is not None
    saver = training.saver
    if saver.enabled and saver.last_epoch != last and not pruned:
        saver.save(training.trainer, last)  # `resume` with more epochs goes on from here
    if signals.requested() is not None:  # asked for after the last epoch's end: stop here
        raise Interrupted(signals.requested())
    summary = {
        **history[-1].as_dict(),
        "best_val_accuracy": max(h.val_accuracy for h in history),
        "train_seconds": time.perf_counter() - start,
    }
    if pruned:  # a losing point: its metrics stay, no test split, figures or model
        run.set_tags({pruning.TAG: str(last)})
        run.log_metrics({k: summary[k] for k in ("best_val_accuracy", "train_seconds")}, last)
        return summary | {pruning.TAG: last}
    summary |= _keep_best(run, training, history)
    _report(cfg, run, quiet, training, history, summary)
    return summary


@dataclass
class _Training:
    """A run's training once set up: what its epochs need, and what its end logs.

    Attributes:
        earlier: the epochs before the checkpoint it goes on from, read from the store.
        logged: the steps each per-epoch metric has in the store already.
        first: the first epoch to train.
    """

    data: Any
    spec: dict[str, Any]
    trainer: Any  # loop.Trainer; a sweep's worker reuses its last one
    stopping: EarlyStopping | None
    pruner: pruning.Pruner | None
    saver: Saver
    earlier: list[Any]
    logged: dict[str, set[int]]
    first: int


def _set_up(cfg: DictConfig, run: Any, threads: int | None, reopening: Any) -> _Training:
    """Threads, seed, data (logged as the run's datasets if new), model, trainer, early
    stopping, pruning and checkpoints; restored from `reopening`'s checkpoint if given."""
    from lstm_cli import loop
    from lstm_cli.data import SOURCE
    from lstm_cli.model import DigitsLSTM

    if cfg.tracking.get("system_metrics"):
        run.monitor_system()
    in_force = loop.configure_threads(threads)
    fused, why_not = gates_kernel.for_config(cfg.gates.value)
    if why_not:
        console.note(why_not)
    loop.set_seed(cfg.seed)
    data = split_for(cfg.data)
    run.set_tags(
        {
            "tf_threads": str(in_force or "default"),
            "gates": "fused" if fused else "ops",
            resume.DATA_TAG: split_digest(data),
        }
    )
    if reopening is None:
        splits = {"training": ("digits-train", data.x_train, data.y_train)}
        if data.has_validation:
            splits["validation"] = ("digits-val", data.x_val, data.y_val)
        splits["testing"] = ("digits-test", data.x_test, data.y_test)
        run.log_datasets(splits, loader=SOURCE)
        run.mark_experiment()  # the UI opens it on training runs
    spec = model_spec(cfg, data)
    built = DigitsLSTM(**spec["model"], precision=cfg.precision.value).build()
    trainer = loop.trainer_for(built, cfg.learning_rate, cfg.batch_size, cfg.epochs,
                                seed=cfg.seed, shuffle=cfg.data.shuffle, fused=fused)  # fmt: skip
    earlier, logged, first = [], {}, 1
    es = cfg.early_stopping
    stopping = EarlyStopping(es.patience, es.metric.value, es.min_delta) if es.patience else None
    saved = reopening.checkpoint if reopening is not None else None
    if saved is not None:
        state = loop.TrainState.from_arrays(saved.epoch, saved.arrays, saved.meta["beta_powers"])
        trainer.restore(state)
        if stopping is not None and "early_stopping" in saved.meta:
            stopping.restore(saved.meta["early_stopping"], saved.arrays)
        earlier = [loop.EpochMetrics(epoch=k, **v) for k, v in enumerate(reopening.history, 1)]
        first = saved.epoch + 1
    if reopening is not None:  # epochs replayed log only what the store lacks
        logged = reopening.logged
    if stopping is not None and stopping.stopped_epoch:  # it had stopped early: no epoch left
        first = cfg.epochs + 1
    saver = Saver(run, cfg.checkpoint.every_epochs, cfg.checkpoint.every_seconds,
                  {"model": spec["model"], "data": split_digest(data)}, first - 1,
                  stopping)  # fmt: skip
    return _Training(data, spec, trainer, stopping, _pruner(cfg, run), saver, earlier, logged,
                     first)  # fmt: skip


def _epochs(cfg: DictConfig, run: Any, quiet: bool, t: _Training) -> list[Any]:
    """Train the epochs left, logging each; the whole history (the stored epochs first). A
    first Ctrl-C or SIGTERM stops at an epoch's end, with a checkpoint."""
    progress = nullcontext(lambda m: None) if quiet else console.epoch_progress(cfg.epochs)
    with progress as update, signals.graceful():

        def on_epoch(m):
            values = m.as_dict()  # a replayed epoch: only what the store lacks
            run.log_epoch({k: v for k, v in values.items() if m.epoch not in t.logged.get(k, ())},
                          m.epoch)  # fmt: skip
            update(m)
            if not (math.isfinite(m.train_loss) and math.isfinite(m.val_loss)):
                run.set_tags({DIVERGED_TAG: str(m.epoch)})  # before anything is checkpointed
                raise Diverged(m.epoch, cfg.learning_rate)
            done = t.stopping is not None and t.stopping.update(m, t.trainer.model)
            if not done and t.pruner is not None:  # at a rung: against the sweep's other points
                done = t.pruner.decide(m.epoch, getattr(m, t.pruner.metric))
            t.saver.after_epoch(t.trainer, m.epoch)
            stop = signals.requested()  # Ctrl-C, SIGTERM, the scheduler's warning
            if stop is not None:
                if t.saver.enabled and t.saver.last_epoch != m.epoch:
                    t.saver.save(t.trainer, m.epoch)
                raise Interrupted(stop)
            return done

        return t.earlier + t.trainer.fit(t.data, on_epoch=on_epoch, first_epoch=t.first)


def _keep_best(run: Any, t: _Training, history: list[Any]) -> dict[str, float]:
    """After early stopping: the best epoch's weights back in the model, its values logged
    after the last epoch (as MLflow's autolog does, so that a run's final numbers are its
    model's), with Keras's names `stopped_epoch` and `restored_epoch`; the final metrics
    that change. Nothing otherwise."""
    stopping, last = t.stopping, history[-1].epoch
    if stopping is None or not stopping.stopped_epoch or stopping.best_weights is None:
        return {}
    t.trainer.model.set_weights(stopping.best_weights)
    kept = history[stopping.best_epoch - 1].as_dict()
    run.log_epoch({k: v for k, v in kept.items() if last + 1 not in t.logged.get(k, ())},
                  last + 1)  # fmt: skip
    run.log_metrics(
        {"stopped_epoch": stopping.stopped_epoch, "restored_epoch": stopping.best_epoch}, last
    )
    return {**kept, "stopped_epoch": last, "restored_epoch": stopping.best_epoch}


def _report(
    cfg: DictConfig, run: Any, quiet: bool, t: _Training, history: list[Any], summary: dict
) -> None:
    """What a kept model's run records at its end: the test split's numbers (once, on the
    weights it keeps: reported, never used to choose), the figures, what the LSTM learned,
    the model and its registration; `summary` gets the test numbers and the insight's cost."""
    from lstm_cli import loop
    from lstm_cli.data import pixel_scale

    model, data = t.trainer.model, t.data
    last = history[-1].epoch  # the final figures' step
    summary["test_loss"], summary["test_accuracy"] = loop.evaluate(model, data.x_test, data.y_test)
    run.log_metrics({k: summary[k] for k in ("test_loss", "test_accuracy")}, last)
    _log_results(run, model, data, history)
    start = time.perf_counter()
    _log_insight(run, model, data)
    summary["insight_seconds"] = time.perf_counter() - start  # its cost, kept with every run
    run.log_metrics(
        {k: summary[k] for k in ("best_val_accuracy", "train_seconds", "insight_seconds")}, last
    )
    if cfg.tracking.log_model:
        raw = data.x_test[:EXAMPLE_IMAGES] / pixel_scale(t.spec["scaling"])  # 0..16, as stored
        run.log_model(model, t.spec["scaling"], raw)
    register = cfg.tracking.get("register")  # a model name, or None
    if register:
        registered = run.register_model(register)
        if not quiet:
            console.console.print(f"[bold]registered[/]    {registered}")


def _pruner(cfg: DictConfig, run: Any) -> pruning.Pruner | None:
    """A sweep point's pruner (see `lstm_cli.pruning`), reading its sweep's runs; None when
    nothing prunes it (prune=none, or not a sweep's point)."""
    p, parent = cfg.prune, cfg.tracking.parent_run_id
    if p.kind.value == pruning.NONE or not parent:
        return None
    from lstm_cli.tracking.sweep import rung_values

    def read(key: str) -> tuple[float | None, list[float]]:
        return rung_values(run.experiment_id, parent, run.run_id, key)

    def record(key: str, value: float, epoch: int) -> None:
        run.log_epoch({key: value}, epoch)

    return pruning.Pruner(p.kind.value, p.metric.value, p.grace_epochs, p.reduction_factor,
                          cfg.epochs, read, record)  # fmt: skip


def _log_results(run, model, data, history) -> None:
    """The learning curves and the test split's confusion matrix (figure and counts)."""
    from sklearn.metrics import confusion_matrix

    from lstm_cli import figures
    from lstm_cli.loop import predict_proba

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


def _log_insight(run, model, data) -> None:
    """What the LSTM learned (see lstm_cli/insight.py), on the test split: accuracy after k
    rows, gates, mistakes."""
    from lstm_cli import figures, insight

    x, y = data.x_test, data.y_test
    seen = insight.analyse(model, x, y)
    run.log_steps("test_accuracy_by_rows", seen.accuracy_by_rows.tolist())  # step = rows read
    run.log_dict(seen.as_dict(), "insight.json")
    wrong = seen.misclassified
    for name, fig in (
        ("accuracy_by_rows.png", figures.accuracy_by_rows(seen.accuracy_by_rows)),
        (
            "gates.png",
            figures.gate_heatmaps(
                x[seen.examples], y[seen.examples], seen.predicted[seen.examples], seen.states
            ),
        ),
        (
            "misclassified.png",
            figures.misclassified(x[wrong], y[wrong], seen.predicted[wrong], len(y)),
        ),
    ):
        run.log_figure(fig, name)
        figures.close(fig)
