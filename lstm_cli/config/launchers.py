"""The schema of our SLURM launcher (`conf/hydra/launcher/slurm.yaml`): hydra-submitit-launcher's
options plus `points_per_task` (see `hydra_plugins/lstm_digits/launcher.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf

SCHEMA_NAME = "lstm_digits_slurm"  # conf/hydra/launcher/slurm.yaml starts from it


@dataclass
class PackedSlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.lstm_digits.launcher.PackedSlurmLauncher"
    points_per_task: int = 1  # sweep points run one after another in one SLURM job


def register() -> None:
    """Make the schema available as `hydra/launcher: lstm_digits_slurm`."""
    ConfigStore.instance().store(
        group="hydra/launcher", name=SCHEMA_NAME, node=PackedSlurmConf, provider="lstm-digits"
    )
