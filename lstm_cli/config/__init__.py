"""The configuration: the files in conf/, their schema, and composing them as Hydra does.

Only this package and `job` touch Hydra. Importing it is light (OmegaConf and
Hydra's config store: no TensorFlow, no MLflow).
"""

from __future__ import annotations

from lstm_cli.config.compose import (
    PARENT_KEY,
    Request,
    compose,
    describe,
    job_overrides,
    portable_argv,
    preflight,
)
from lstm_cli.config.schema import check, flatten, register

__all__ = [
    "PARENT_KEY",
    "Request",
    "check",
    "compose",
    "describe",
    "flatten",
    "job_overrides",
    "portable_argv",
    "preflight",
    "register",
]
