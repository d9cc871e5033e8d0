"""A run's data splits as MLflow dataset inputs: name, digest, source, schema and profile.

The digest is computed from the arrays themselves (MLflow's NumPy digest), so two runs on
different splits (test size, split seed) or pixel scalings have different digests; the UI's
Dataset column shows each split with its context.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.numpy_dataset import from_numpy
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT


class LoaderSource(DatasetSource):
    """Data made by a Python function that ships with a package (no file, no URL): its dotted
    name, e.g. `sklearn.datasets.load_digits`."""

    def __init__(self, loader: str) -> None:
        self.loader = loader

    @staticmethod
    def _get_source_type() -> str:
        return "python_loader"

    def load(self, **kwargs: Any) -> Any:
        """Call the loader (with `kwargs`) and return what it returns."""
        module, name = self.loader.rsplit(".", 1)
        return getattr(importlib.import_module(module), name)(**kwargs)

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False  # made explicitly, never guessed from a string

    @classmethod
    def _resolve(cls, raw_source: Any) -> LoaderSource:
        return cls(str(raw_source))

    def to_dict(self) -> dict[str, Any]:
        return {"loader": self.loader}

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> LoaderSource:
        return cls(source_dict["loader"])


def inputs(
    splits: dict[str, tuple[str, np.ndarray, np.ndarray]], loader: str
) -> list[DatasetInput]:
    """Dataset inputs for `splits` (context -> (name, features, targets)), all from `loader`."""
    source = LoaderSource(loader)
    found = []
    for context, (name, features, targets) in splits.items():
        dataset = from_numpy(features, source=source, targets=targets, name=name)
        found.append(
            DatasetInput(Dataset(**dataset.to_dict()), [InputTag(MLFLOW_DATASET_CONTEXT, context)])
        )
    return found
