"""`lstm-digits resume RUN`: go on with a stopped run (or a finished one, with more epochs) in
the same MLflow run, from its latest checkpoint.

Everything is checked before the run is touched: that it is not still running, that it has a
checkpoint of a format this version reads, that the overrides change neither the model nor the
data, and that its data split is still the same. Then `job.resume` trains on.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lstm_cli import config
from lstm_cli.errors import UserError

# Keys a resume may change: how long, how fast, how often it saves, whether the model is logged.
CHANGEABLE = ("epochs", "threads", "checkpoint.every_epochs", "checkpoint.every_seconds",
              "tracking.log_model")  # fmt: skip
HOST_TAG, PID_TAG = "lstm_digits.host", "lstm_digits.pid"  # where a run's process runs


def process_tags() -> dict[str, str]:
    """Tags naming the process that runs a run, so that `resume` can tell it is alive."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def _alive(run: Any) -> bool:
    """Whether the process that runs `run` still runs (on this host, or anywhere else: unknown,
    so taken as alive)."""
    host, pid = run.tags.get(HOST_TAG), run.tags.get(PID_TAG)
    if host != socket.gethostname() or not (pid or "").isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _config(run: Any, overrides: list[str]) -> DictConfig:
    """The run's config (its config.yaml artifact), with the allowed `overrides`, checked."""
    from lstm_cli.tracking import read

    text = read.artifact_text(run.run_id, "config.yaml")
    if text is None:
        raise UserError(
            f"run {run.run_id} has no config.yaml: not an lstm-digits run, it cannot resume"
        )
    saved = OmegaConf.create(text)
    cfg = config.compose([])  # the schema's types, the packaged defaults for keys added since
    cfg.merge_with(OmegaConf.masked_copy(saved, [k for k in saved if k in cfg]))
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
            raise UserError(config.describe(ex)) from None
    config.check(cfg)
    return cfg


def plan(uri: str, experiment: str, ref: str, overrides: list[str]):
    """The run to resume, its config and its checkpoint, all checked; a UserError otherwise."""
    from lstm_cli.tracking import checkpoint, read

    run = read.find_run(uri, experiment, ref)
    if run.status == "RUNNING" and _alive(run):
        where = f"{run.tags.get(HOST_TAG, '?')} (pid {run.tags.get(PID_TAG, '?')})"
        raise UserError(f"run {run.run_id} is still running on {where}: stop it first")
    cfg = _config(run, overrides)
    saved = checkpoint.latest(run.run_id)
    if saved is None:
        raise UserError(
            f"run {run.run_id} has no checkpoint (checkpoint.every_epochs=0, or it stopped "
            "before its first): it cannot resume; train it again"
        )
    if saved.meta.get("format") != checkpoint.FORMAT:
        raise UserError(
            f"run {run.run_id}'s checkpoint has format {saved.meta.get('format')}, this version "
            f"reads format {checkpoint.FORMAT}: resume it with the version that wrote it"
        )
    if cfg.epochs <= saved.epoch:
        raise UserError(
            f"run {run.run_id} has trained {saved.epoch} of epochs={cfg.epochs}: "
            f"give more, e.g. `lstm-digits resume {run.run_id[:8]} epochs={saved.epoch * 2}`"
        )
    from lstm_cli.fitting import check_resumable, load_data, model_spec

    data = load_data(cfg)
    check_resumable(saved, model_spec(cfg, data), data, run.run_id)
    cfg.tracking.uri = uri  # the store it was found in (config.yaml keeps it masked)
    return run, cfg, saved
