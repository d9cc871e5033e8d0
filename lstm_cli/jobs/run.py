"""One run of training, top to bottom: its run in the store, the data, the model, the loop with
its hooks, the report. The one path of every training: a new run, a resumed one, a requeued
one.

    train(cfg, ...) -> (final metrics, run id)
        the run       a new run, or a stopped one reopened (values the store has stay)
        the data      the split, logged as the run's datasets if new
        the model     built; the trainer around it, restored from a checkpoint if any
        the loop      fit(trainer, data, epochs, hooks): every side concern is a hook (`hooks`)
        the report    the test split's numbers, figures, insight, model (`jobs.report`)

While epochs train, a first Ctrl-C or SIGTERM stops at the epoch's end with a checkpoint (see
`runtime.signals.graceful`); the run then ends KILLED and `resume` goes on with it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from lstm_cli.config import schema
from lstm_cli.data.digits import split_digest, split_for
from lstm_cli.fit.hooks.base import Hook
from lstm_cli.fit.hooks.checkpoints import Checkpoints
from lstm_cli.fit.hooks.early_stopping import EarlyStopping
from lstm_cli.fit.hooks.finite_loss import FiniteLoss
from lstm_cli.fit.hooks.progress import Progress
from lstm_cli.fit.hooks.pruning import NONE, Pruner
from lstm_cli.fit.hooks.stop_requests import StopRequests
from lstm_cli.fit.hooks.store_log import StoreLog
from lstm_cli.fit.loop import fit
from lstm_cli.jobs import report
from lstm_cli.jobs.resume_rules import model_spec
from lstm_cli.networks import fused_kernel
from lstm_cli.runtime import masking, process, signals
from lstm_cli.runtime.errors import Interrupted
from lstm_cli.tracking.tags import DATA_TAG, DIVERGED_TAG, KERNEL_TAG
from lstm_cli.views import console

if TYPE_CHECKING:
    from lstm_cli.jobs.resume_rules import Reopening


@dataclass(frozen=True)
class NewRun:
    """Where and as what a new run is made."""

    experiment_id: str
    name: str
    params: dict[str, Any]
    tags: dict[str, str]
    parent: str | None  # a sweep's parent run


def train(
    cfg: DictConfig,
    quiet: bool,
    threads: int | None,
    new: NewRun | None = None,
    reopening: Reopening | None = None,
    tags: dict[str, str] | None = None,
) -> tuple[dict[str, float], str]:
    """Train `cfg` in a new run (`new`), or go on with a stopped one (`reopening`, checked by
    `resume_rules.reopen`, which gets `tags` too). Returns the final metrics and the run's id."""
    with _opened(cfg, new, reopening, tags) as run:
        process.import_tensorflow()  # before any op: thread settings still apply
        kernel = _runtime(cfg, run, threads)
        # the data
        data = split_for(cfg.data)
        run.set_tags({DATA_TAG: split_digest(data)})
        if reopening is None:
            report.log_datasets(run, data)
        # the model
        spec = model_spec(cfg, data)
        trainer = _trainer(cfg, spec, kernel)
        stopping = _early_stopping(cfg)
        first, earlier = _restore(trainer, stopping, reopening, cfg.epochs)
        pruner = _pruner(cfg, run)
        saver = _checkpoints(cfg, run, spec, data, first - 1, stopping)
        # the loop
        start = time.perf_counter()
        progress = nullcontext(lambda m: None) if quiet else console.epoch_progress(cfg.epochs)
        with progress as show, signals.graceful():
            logged = reopening.logged if reopening is not None else {}
            order = hooks(cfg, run, show, logged, stopping, pruner, saver)
            loop = fit(trainer, data, cfg.epochs, order, first, earlier)
        run.open()  # a run reopened with no epoch left to train: only its record to finish
        if signals.requested() is not None:  # the checkpoint is saved: the run ends KILLED
            raise Interrupted(signals.requested())
        # the report
        seconds = time.perf_counter() - start
        summary = report.finish(cfg, run, loop, data, spec, logged, stopping, seconds, quiet)
        return summary, run.run_id


def hooks(
    cfg: DictConfig,
    run: Any,
    show: Any,
    logged: dict[str, set[int]],
    stopping: EarlyStopping | None,
    pruner: Pruner | None,
    checkpoints: Checkpoints,
) -> list[Hook]:
    """A run's hooks, in the order they act after each epoch (and at the loop's end):

    1. `StoreLog`: the epoch's metrics to the store first (the writer sends in order), so that
       a checkpoint never covers an epoch whose metrics the store lacks;
    2. `Progress`: the bar or the line;
    3. `FiniteLoss`: a NaN or infinite loss ends the run here, tagged, before anything below
       acts on the diverged weights: no checkpoint ever holds them;
    4. `EarlyStopping`, then `Pruner`: either may stop the training after this epoch;
    5. `Checkpoints`: after the metrics and the finite check; at the end, the last state;
    6. `StopRequests`: a Ctrl-C or SIGTERM during the epoch stops the training after it.
    """

    def diverged(epoch: int) -> None:  # tagged as it ends FAILED: `resume` refuses such a run
        run.set_tags({DIVERGED_TAG: str(epoch)})

    order: list[Hook | None] = [
        StoreLog(run.log_epoch, logged),
        Progress(show),
        FiniteLoss(cfg.learning_rate, diverged),
        stopping,
        pruner,
        checkpoints,
        StopRequests(),
    ]
    return [hook for hook in order if hook is not None]


@contextmanager
def _opened(
    cfg: DictConfig, new: NewRun | None, reopening: Reopening | None, tags: dict[str, str] | None
) -> Iterator[Any]:
    """The run in the store (a `tracking.run_handle.Run`): a new one, its config logged, or a
    stopped one reopened; ended with a true status whatever stops the block."""
    from lstm_cli.tracking import run_handle

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
        with run_handle.start_run("", "", {}, tags or {}, **reopened, **store) as run:
            yield run
        return
    with run_handle.start_run(
        new.experiment_id, new.name, new.params, new.tags, new.parent, **store
    ) as run:
        schema.check(cfg)
        run.log_text(masking.mask(OmegaConf.to_yaml(cfg, resolve=True)), "config.yaml")
        yield run


def _runtime(cfg: DictConfig, run: Any, threads: int | None) -> Any:
    """Threads, the kernel and the seed, before any op; the kernel's ops (or None: TensorFlow's
    ops, where the kernel cannot run or does not serve the cell)."""
    from lstm_cli.fit.trainer import configure_threads, set_seed
    from lstm_cli.networks.cells import CELLS

    if cfg.tracking.get("system_metrics"):
        run.monitor_system()
    in_force = configure_threads(threads)
    kernel = None
    if CELLS[cfg.cell.value].kernel_variant is not None and cfg.layers == 1:
        kernel, why_not = fused_kernel.for_config(cfg.kernel.value)
        if why_not:
            console.note(why_not)
    set_seed(cfg.seed)
    ran = {"tf_threads": str(in_force or "default"), KERNEL_TAG: "fused" if kernel else "ops"}
    run.set_tags(ran)
    return kernel


def _trainer(cfg: DictConfig, spec: dict[str, Any], kernel: Any) -> Any:
    """The model, built, and the trainer around it (a sweep's worker reuses its last one)."""
    from lstm_cli.fit.trainer import trainer_for
    from lstm_cli.networks.model import DigitsRNN

    model = DigitsRNN(**spec["model"], precision=cfg.precision.value).build()
    return trainer_for(
        model,
        cfg.learning_rate,
        cfg.batch_size,
        seed=cfg.seed,
        shuffle=cfg.data.shuffle,
        kernel=kernel,
    )


def _early_stopping(cfg: DictConfig) -> EarlyStopping | None:
    es = cfg.early_stopping
    return EarlyStopping(es.patience, es.metric.value, es.min_delta) if es.patience else None


def _restore(
    trainer: Any, stopping: EarlyStopping | None, reopening: Reopening | None, epochs: int
) -> tuple[int, list[Any]]:
    """Where the loop starts: the first epoch to train and the epochs before it, restored from
    `reopening`'s checkpoint if it has one (none: from the start, its epochs replayed)."""
    from lstm_cli.fit.trainer import EpochMetrics, TrainState

    saved = reopening.checkpoint if reopening is not None else None
    if saved is None:
        return 1, []
    beta_powers = saved.meta["beta_powers"]
    trainer.restore(TrainState.from_arrays(saved.epoch, saved.arrays, beta_powers))
    if stopping is not None and "early_stopping" in saved.meta:
        stopping.restore(saved.meta["early_stopping"], saved.arrays)
    earlier = [EpochMetrics(epoch=k, **v) for k, v in enumerate(reopening.history, 1)]
    if stopping is not None and stopping.stopped_epoch:  # it had stopped early: no epoch left
        return epochs + 1, earlier
    return saved.epoch + 1, earlier


def _pruner(cfg: DictConfig, run: Any) -> Pruner | None:
    """A sweep point's pruner, reading its sweep's runs; None when nothing prunes it
    (prune=none, or not a sweep's point)."""
    p, parent = cfg.prune, cfg.tracking.parent_run_id
    if p.kind.value == NONE or not parent:
        return None
    from lstm_cli.tracking.parent_run import rung_values

    def read(key: str) -> tuple[float | None, list[float]]:
        return rung_values(run.experiment_id, parent, run.run_id, key)

    def record(key: str, value: float, epoch: int) -> None:
        run.log_epoch({key: value}, epoch)

    return Pruner(
        p.kind.value, p.metric.value, p.grace_epochs, p.reduction_factor, cfg.epochs, read, record
    )


def _checkpoints(
    cfg: DictConfig, run: Any, spec: dict, data: Any, last: int, stopping: Any
) -> Checkpoints:
    """The checkpoint hook: what a checkpoint must still match to be resumed (the model and
    the data), saved through the run's writer."""
    every = cfg.checkpoint
    meta = {"model": spec["model"], "data": split_digest(data)}
    return Checkpoints(
        run.save_checkpoint, every.every_epochs, every.every_seconds, meta, last, stopping
    )
