"""Going on with a stopped run: the rules, written once, for `lstm-digits resume RUN`, a job
SLURM requeued and a packed SLURM point that was stopped.

A run goes on in the same MLflow run, from its newest checkpoint that can be read and whose
epochs' metrics are all in the store (a torn newest slot: the other one, said in one line).
A run with no such checkpoint (stopped before its first, or both torn) goes on from its start:
training is deterministic, so its epochs are replayed and only what the store lacks is logged.
Everything is checked before the run is touched: that it is not still running, that it did
not diverge, that the overrides change neither the model nor the data, and that its data split
is still the same; the run itself is written to only once its first new epoch is trained (see
`tracking.run.start_run`). Then `training.train_run` trains on, as it trains a new run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lstm_cli.config import compose, schema
from lstm_cli.config.choices import RENAMED_CELLS
from lstm_cli.runtime.errors import UserError
from lstm_cli.tracking.tags import (
    DATA_TAG,
    DIVERGED_TAG,
    HOST_TAG,
    PID_TAG,
    PRUNED_TAG,
    SOURCE_TAG,
)

# Keys a resume may change: how long, how fast, how often it saves, whether the model is logged.
CHANGEABLE = (
    "epochs",
    "threads",
    "kernel",
    "checkpoint.every_epochs",
    "checkpoint.every_seconds",
    "tracking.log_model",
    "tracking.outage_minutes",
)
CURVES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")  # per-epoch metrics


@dataclass(frozen=True)
class Reopening:
    """A stopped run to go on with, and what its store holds already.

    Attributes:
        run_id: the run.
        checkpoint: the checkpoint it goes on from (a `tracking.checkpoint.Checkpoint`), or
            None: from its start, its stored epochs replayed.
        history: the stored per-epoch values of epochs 1..checkpoint.epoch, by epoch.
        logged: the steps each per-epoch metric has in the store: a replayed epoch logs only
            what is missing, so that every step is there once.
        requeued: reopened by SLURM's requeue (else by `lstm-digits resume`).
        note: one line to tell the user, when the newest checkpoint could not be used.
        experiment_id: the run's experiment.
        experiment: its name.
        continued: a finished run trained on with more epochs (else a stopped one).
    """

    run_id: str
    checkpoint: Any
    history: list[dict[str, float]]
    logged: dict[str, set[int]]
    requeued: bool = False
    note: str | None = None
    experiment_id: str = ""
    experiment: str = ""
    continued: bool = False


def model_spec(cfg: DictConfig, data: Any) -> dict[str, Any]:
    """What builds the model again, and what a checkpoint must still match: the architecture
    (from the config and the data's shapes), the pixel scaling, the reading and its steps."""
    from lstm_cli.networks.model import forget_bias_for

    return {
        "model": {
            "input_size": data.input_size,
            "num_classes": data.num_classes,
            "hidden_size": cfg.hidden_size,
            "cell": cfg.cell.value,
            "layers": cfg.layers,
            "forget_bias": forget_bias_for(cfg.init.value, cfg.forget_bias),
            "init": cfg.init.value,
            "output_activation": cfg.output_activation.value,
            "seed": cfg.seed,
        },
        "scaling": cfg.data.scaling.value,
        "reading": cfg.data.reading.value,
        "permutation_seed": cfg.data.permutation_seed,
        "steps": data.steps,
    }


def same_model(saved: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether a checkpoint's model (`saved`, from its meta) is `now`'s: one saved before the
    cells were renamed and stacked names its cell by its old name and has one layer."""
    from lstm_cli.networks.model import forget_bias_for

    older = dict(saved)
    older["cell"] = RENAMED_CELLS.get(older.get("cell"), older.get("cell"))
    older.setdefault("layers", 1)
    older.setdefault("forget_bias", forget_bias_for(older.get("init", ""), None))
    return older == now


def diverged(run_id: str, tags: dict[str, str]) -> str | None:
    """Why a run whose loss became NaN or infinite cannot go on (None for any other run): its
    training is deterministic, so it would diverge again at the same epoch."""
    epoch = tags.get(DIVERGED_TAG)
    said = re.match(r"the loss became NaN or infinite at epoch (\d+)", tags.get("error", ""))
    epoch = epoch or (said and said[1])  # a run from before the tag: its error says it
    if epoch is None:
        return None
    return (
        f"run {run_id} diverged at epoch {epoch} (its loss became NaN or infinite): it would "
        "diverge again; train it again with a lower learning_rate"
    )


def recorded_config(text: str) -> DictConfig:
    """A run's config.yaml artifact as this version reads it: the schema's types, names renamed
    since (cells, `gates`), and the packaged defaults for keys added since (a run from before
    the validation split had none: data.val_size=0)."""
    saved = OmegaConf.create(text)
    if saved.get("cell") in RENAMED_CELLS:  # trained before the cells' names changed
        saved.cell = RENAMED_CELLS[saved.cell]
    if "gates" in saved:  # trained before the key was named kernel
        saved.kernel = saved.pop("gates")
    cfg = compose.compose([])  # the schema's types, the packaged defaults for keys added since
    cfg.merge_with(OmegaConf.masked_copy(saved, [k for k in saved if k in cfg]))
    if "val_size" not in saved.get("data", {}):  # trained before the validation split: two-way
        cfg.data.val_size = 0.0
    return cfg


def _config(run: Any, overrides: list[str]) -> DictConfig:
    """The run's config (its config.yaml artifact), with the allowed `overrides`, checked."""
    from lstm_cli.tracking import read
    from lstm_cli.tracking.run_handle import SOURCE

    text = read.artifact_text(run.run_id, "config.yaml")
    if text is None and run.tags.get(SOURCE_TAG) == SOURCE:
        raise UserError(
            f"run {run.run_id} was stopped as it started, before its config was stored: "
            "nothing of it was trained; train it again"
        )
    if text is None:
        raise UserError(
            f"run {run.run_id} has no config.yaml: not an lstm-digits run, it cannot resume"
        )
    cfg = recorded_config(text)
    for override in overrides:
        key, eq, value = override.partition("=")
        if not eq:
            raise UserError(f"cannot parse the override '{override}': write key=value")
        if key not in CHANGEABLE:
            raise UserError(
                f"{key}= would change what run {run.run_id[:8]} trains: resume goes on with the "
                f"config it started with; only {', '.join(CHANGEABLE)} may change"
            )
        try:
            OmegaConf.update(cfg, key, value if value != "null" else None, merge=False)
        except Exception as ex:
            raise UserError(compose.describe(ex)) from None
    schema.check(cfg)
    return cfg


def plan(uri: str, run: Any, overrides: list[str]) -> tuple[DictConfig, Reopening]:
    """`lstm-digits resume`: how `run` (a `tracking.read.RunRecord` of the store at `uri`)
    goes on, its config and where from, all checked; a UserError otherwise (nothing written)."""
    from lstm_cli.tracking.owner import process_alive

    if run.status == "RUNNING" and process_alive(run.tags):
        where = f"{run.tags.get(HOST_TAG, '?')} (pid {run.tags.get(PID_TAG, '?')})"
        raise UserError(f"run {run.run_id} is still running on {where}: stop it first")
    refusal = diverged(run.run_id, run.tags)
    if refusal:
        raise UserError(refusal)
    cfg = _config(run, overrides)
    if run.status == "FINISHED" and "stopped_epoch" in run.metrics:
        raise UserError(
            f"run {run.run_id} stopped early at epoch {run.metrics['stopped_epoch']:.0f} "
            "(early_stopping.patience): more epochs would not change it; train it again with "
            "other settings"
        )
    if run.status == "FINISHED" and PRUNED_TAG in run.tags:
        raise UserError(
            f"run {run.run_id} was pruned at epoch {run.tags[PRUNED_TAG]}: its sweep's other "
            "points did better; train it again on its own to give it all its epochs"
        )
    reopening = reopen(run.run_id, cfg, finished=run.status == "FINISHED", tags=run.tags)
    cfg.tracking.uri = uri  # the store it was found in (config.yaml keeps it masked)
    return cfg, reopening


def reopen(
    run_id: str,
    cfg: DictConfig,
    finished: bool,
    requeued: bool = False,
    tags: dict[str, str] | None = None,
) -> Reopening:
    """Where run `run_id` (with `tags`, read from the store if not given) goes on from under
    `cfg`, checked; a UserError if it cannot."""
    from lstm_cli.data.digits import split_digest, split_for
    from lstm_cli.tracking import checkpoint_slots, read

    stored = read.stored_run(run_id)
    tags = stored.tags if tags is None else tags
    refusal = diverged(run_id, tags)
    if refusal:
        raise UserError(refusal)
    history, logged = read.epoch_history(run_id, CURVES)
    complete = 0  # the epochs 1..complete have all their values in the store
    while all(complete + 1 in logged[name] for name in CURVES):
        complete += 1
    usable, problems = _usable(checkpoint_slots.slots(run_id), complete)
    where = {
        "experiment_id": stored.experiment_id,
        "experiment": stored.experiment,
        "continued": finished,
    }
    data = split_for(cfg.data)
    if not usable and any("format" in p for p in problems):
        # Another version may train otherwise: not even its epochs can be replayed here.
        raise UserError(f"run {run_id}'s checkpoints cannot be used ({'; '.join(problems)})")
    if not usable:  # from its start: the epochs it logged are replayed
        _check_epochs(run_id, cfg.epochs, complete, finished)
        if tags.get(DATA_TAG, split_digest(data)) != split_digest(data):
            raise UserError(_other_split(run_id))
        note = None
        if problems:
            note = (
                f"run {run_id}'s checkpoints cannot be used ({'; '.join(problems)}): going on "
                "from its start, its stored epochs replayed"
            )
        return Reopening(run_id, None, [], logged, requeued, note, **where)
    saved = usable[0]
    _check_epochs(run_id, cfg.epochs, saved.epoch, finished)
    _check_resumable(saved, model_spec(cfg, data), data, run_id)
    note = None
    if problems:
        note = (
            f"the newest checkpoint cannot be read ({'; '.join(problems)}): going on from "
            f"the one of epoch {saved.epoch} (slot {saved.slot})"
        )
    past = [history[k] for k in range(1, saved.epoch + 1)]
    return Reopening(run_id, saved, past, logged, requeued, note, **where)


def _usable(slots: list[Any], complete: int) -> tuple[list[Any], list[str]]:
    """The checkpoints of `slots` (newest first) a run whose epochs 1..`complete` are all in
    the store can go on from, and why the others cannot."""
    from lstm_cli.tracking import checkpoint_slots

    problems, usable = [], []
    for slot in slots:
        saved = slot.checkpoint
        if saved is None:
            if slot.problem != "empty":
                problems.append(f"slot {slot.name}: {slot.problem}")
        elif saved.meta.get("format") != checkpoint_slots.FORMAT:
            problems.append(
                f"slot {slot.name}: checkpoint has format {saved.meta.get('format')}, "
                f"this version reads format {checkpoint_slots.FORMAT}: resume it with the "
                "version that wrote it"
            )
        elif saved.epoch > complete:
            problems.append(
                f"slot {slot.name}: epoch {saved.epoch}, whose metrics stop at epoch {complete}"
            )
        else:
            usable.append(saved)
    return usable, problems


def _check_epochs(run_id: str, epochs: int, trained: int, finished: bool) -> None:
    """Refuse a resume with no epoch left to train (a finished run needs more epochs)."""
    if (finished and epochs <= trained) or epochs < trained:
        raise UserError(
            f"run {run_id} has trained {trained} of epochs={epochs}: "
            f"give more, e.g. `lstm-digits resume {run_id[:8]} epochs={max(trained, 1) * 2}`"
        )


def _other_split(run_id: str) -> str:
    return (
        f"run {run_id}'s data split is not the one it trained on (another scikit-learn, "
        "another scaling?): it cannot resume"
    )


def _check_resumable(saved: Any, spec: dict[str, Any], data: Any, run_id: str) -> None:
    """Refuse a checkpoint of another model or of another data split (one line)."""
    from lstm_cli.data.digits import split_digest

    if not same_model(saved.meta.get("model", {}), spec["model"]):
        raise UserError(f"run {run_id}'s checkpoint holds another model than its config")
    if saved.meta.get("data") != split_digest(data):
        raise UserError(_other_split(run_id))
