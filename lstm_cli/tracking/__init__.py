"""Everything that talks to MLflow; the only package that imports it.

- `store`: which store (URI resolution and checks), opening it and the experiment;
- `run`: `start_run(...)`, the handle that owns a run's writes and its final status;
- `model`: the logged model;
- `sweep`: a sweep's parent run and its children;
- `read`: what `runs`, `evaluate` and `predict` read back.

Functions take and return plain values (dicts, arrays, figures, `RunRecord`s): the rest of the
package never sees an MLflow object.
"""


def __getattr__(name: str):
    # Models logged before this package was split name `lstm_cli.tracking.DigitsModel` in
    # their pickle: found here, imported only when such a model loads.
    if name == "DigitsModel":
        from lstm_cli.tracking.model import DigitsModel

        return DigitsModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
