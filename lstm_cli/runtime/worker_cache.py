"""What a process keeps from one training job to the next: one place, one reset.

A sweep's worker (a joblib worker, the basic launcher's process, a packed SLURM job) trains
job after job. An entry lets a job reuse what the one before it built, when its key says it
is the same; one value per entry, the last, so the cache does not grow with the jobs. Nothing
else is carried from job to job (signal handling aside), and a job gives bit for bit what it
gives in a fresh process (tests/test_worker_cache.py).

| entry            | kept, by                                   | buys (bench/RESULTS.md)       |
| ---------------- | ------------------------------------------ | ----------------------------- |
| `trainer`        | the last Trainer, by architecture and      | its traced epoch: 0.5 s of a  |
|                  | training settings (`loop.trainer_for`)     | 2.5 s default training        |
| `served`         | the serving module of the last logged      | 0.07 s of every later logged  |
|                  | model object (`tracking.model`)            | model                         |
| `figure:<kind>`  | each fixed-layout figure, by its layout    | a run's figures 0.84 -> 0.40 s|
|                  | (`figures`)                                |                               |
| `digits`         | scikit-learn's digits arrays (`data`)      | 0.03 s a job                  |

`reset()` empties it (closing what must be closed): the next job builds everything anew.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Any

_entries: dict[str, tuple[Hashable, Any]] = {}  # name -> (key, value)
_closers: dict[str, Callable[[Any], None]] = {}  # name -> how its value is closed


def get(name: str, key: Hashable = None) -> Any | None:
    """The value kept as `name` if it was kept under `key`, else None."""
    entry = _entries.get(name)
    return entry[1] if entry is not None and entry[0] == key else None


def put(
    name: str, value: Any, key: Hashable = None, close: Callable[[Any], None] | None = None
) -> Any:
    """Keep `value` as `name` under `key` (the value it replaces is closed); return it."""
    drop(name)
    _entries[name] = (key, value)
    if close is not None:
        _closers[name] = close
    return value


def kept(prefix: str = "") -> Iterator[Any]:
    """The values kept under names that start with `prefix`."""
    return (value for name, (_, value) in list(_entries.items()) if name.startswith(prefix))


def drop(name: str) -> None:
    """Forget `name`, closing its value if it has a way to be closed."""
    entry = _entries.pop(name, None)
    close = _closers.pop(name, None)
    if entry is not None and close is not None:
        close(entry[1])


def reset(prefix: str = "") -> None:
    """Forget every entry whose name starts with `prefix` (all by default)."""
    for name in [n for n in _entries if n.startswith(prefix)]:
        drop(name)
