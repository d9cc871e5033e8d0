"""The configuration schema: types (checked by OmegaConf) and ranges (checked by `check`).

Defaults are not here: they live, with a comment each, in `conf/config.yaml`. The allowed
values of the choice keys are the enums of `lstm_cli.config.choices`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from lstm_cli.config.choices import (
    Cell,
    Init,
    Kernel,
    Monitored,
    OutputActivation,
    Precision,
    Pruning,
    Reading,
    Scaling,
)
from lstm_cli.runtime import hardware
from lstm_cli.runtime.errors import UserError


@dataclass
class DataSchema:
    test_size: float = MISSING
    val_size: float = MISSING
    split_seed: int = MISSING
    scaling: Scaling = MISSING
    shuffle: bool = MISSING
    reading: Reading = MISSING
    permutation_seed: int = MISSING


@dataclass
class EarlyStoppingSchema:
    patience: int = MISSING
    metric: Monitored = MISSING
    min_delta: float = MISSING


@dataclass
class PruneSchema:
    kind: Pruning = MISSING
    metric: Monitored = MISSING
    grace_epochs: int = MISSING
    reduction_factor: int = MISSING


@dataclass
class CheckpointSchema:
    every_epochs: int = MISSING
    every_seconds: float = MISSING


@dataclass
class TrackingSchema:
    uri: str | None = MISSING
    experiment: str = MISSING
    log_model: bool = MISSING
    register: str | None = MISSING
    system_metrics: bool = MISSING
    parent_run_id: str | None = MISSING
    from_run: str | None = MISSING
    sqlite_on_cluster: bool = MISSING
    outage_minutes: float = MISSING


@dataclass
class Schema:
    hidden_size: int = MISSING
    epochs: int = MISSING
    batch_size: int = MISSING
    learning_rate: float = MISSING
    output_activation: OutputActivation = MISSING
    cell: Cell = MISSING
    layers: int = MISSING
    forget_bias: float | None = MISSING
    init: Init = MISSING
    seed: int = MISSING
    threads: int | None = MISSING
    precision: Precision = MISSING
    kernel: Kernel = MISSING
    data: DataSchema = field(default_factory=DataSchema)
    early_stopping: EarlyStoppingSchema = field(default_factory=EarlyStoppingSchema)
    prune: PruneSchema = field(default_factory=PruneSchema)
    checkpoint: CheckpointSchema = field(default_factory=CheckpointSchema)
    tracking: TrackingSchema = field(default_factory=TrackingSchema)


def register() -> None:
    """Make the schema available to `conf/config.yaml` as the `schema` default."""
    ConfigStore.instance().store(name="schema", node=Schema)


# (key, lowest allowed, description) for every bounded number.
_RANGES = [
    ("hidden_size", 1, "a positive integer"),
    ("layers", 1, "a positive integer (recurrent layers, stacked)"),
    ("epochs", 1, "a positive integer"),
    ("batch_size", 1, "a positive integer"),
    ("threads", 1, "a positive integer or null"),
    ("seed", 0, "an integer >= 0"),
    ("data.split_seed", 0, "an integer >= 0"),
    ("data.permutation_seed", 0, "an integer >= 0"),
    ("checkpoint.every_epochs", 0, "an integer >= 0 (0: no checkpoints)"),
    ("checkpoint.every_seconds", 0, "a number of seconds >= 0"),
    ("tracking.outage_minutes", 0, "a number of minutes >= 0"),
    ("early_stopping.patience", 0, "an integer >= 0 (0: off)"),
    ("early_stopping.min_delta", 0, "a number >= 0"),
    ("prune.grace_epochs", 1, "a positive integer"),
    ("prune.reduction_factor", 2, "an integer >= 2"),
]


def check(cfg: DictConfig) -> None:
    """Raise UserError for values of the right type but outside their range, or that this
    machine cannot run."""
    for key, low, what in _RANGES:
        value = OmegaConf.select(cfg, key)
        if value is not None and value < low:
            raise UserError(f"{key}={value} is invalid: it must be {what}")
    if not (math.isfinite(cfg.learning_rate) and cfg.learning_rate > 0):
        raise UserError(f"learning_rate={cfg.learning_rate} is invalid: it must be finite and > 0")
    _check_splits(cfg)
    _check_machine(cfg)
    if not cfg.tracking.experiment:
        raise UserError("tracking.experiment is empty: give the MLflow experiment a name")
    if cfg.tracking.register and not cfg.tracking.log_model:
        raise UserError(
            f"tracking.register={cfg.tracking.register} needs the model: "
            "drop tracking.log_model=false"
        )


def _check_splits(cfg: DictConfig) -> None:
    """The splits' sizes, and a validation split for what chooses on it."""
    if not 0 < cfg.data.test_size < 1:
        raise UserError(f"data.test_size={cfg.data.test_size} is invalid: it must be in (0, 1)")
    if not 0 <= cfg.data.val_size < 1 - cfg.data.test_size:
        raise UserError(
            f"data.val_size={cfg.data.val_size} is invalid: it must be in [0, 1 - data.test_size) "
            f"= [0, {1 - cfg.data.test_size:g}) (0: no validation split)"
        )
    if cfg.early_stopping.patience and not cfg.data.val_size:
        raise UserError(
            "early_stopping.patience needs a validation split to watch: data.val_size=0 would "
            "choose on the test split; give data.val_size > 0"
        )
    if cfg.prune.kind != Pruning.none and not cfg.data.val_size:
        raise UserError(
            f"prune={cfg.prune.kind.value} needs a validation split to compare the points on: "
            "data.val_size=0 would choose on the test split; give data.val_size > 0"
        )


def _check_machine(cfg: DictConfig) -> None:
    """What this machine runs: bfloat16 matmuls, the fused kernel (for the cells it serves)."""
    if cfg.precision == Precision.bf16 and not hardware.has_bf16():
        raise UserError(
            "precision=bf16 needs a CPU with bfloat16 instructions (avx512_bf16 or amx_bf16 in "
            "/proc/cpuinfo); this one has neither: use precision=fp32"
        )
    if cfg.kernel != Kernel.fused:
        return
    missing = hardware.missing_kernel()
    if missing:
        raise UserError(f"kernel=fused needs the kernel built: {missing}; use kernel=auto or ops")
    fused = fused_cells()
    if cfg.cell.value not in fused or cfg.layers != 1:
        raise UserError(
            f"kernel=fused computes one layer of cell={'/'.join(fused)}; "
            f"cell={cfg.cell.value} layers={cfg.layers} runs on TensorFlow's ops: use "
            "kernel=auto or ops"
        )


def fused_cells() -> list[str]:
    """The cells the fused kernel computes: those that name its step (`kernel_variant`). Asked
    of the cells, so TensorFlow loads here: for kernel=fused only, whose run loads it anyway."""
    from lstm_cli.networks.cells import CELLS

    return [name for name, cell in CELLS.items() if cell.kernel_variant is not None]


def flatten(cfg: DictConfig) -> dict[str, object]:
    """Every resolved leaf as `dotted.key: value` (enums as their names), for MLflow params."""
    out: dict[str, object] = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node.value if isinstance(node, Enum) else node

    walk(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), "")
    return out
