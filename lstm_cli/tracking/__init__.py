"""Everything that talks to MLflow; the only package that imports it.

- `store`: which store (URI resolution and checks), opening it and the experiment;
- `run_handle`: `start_run(...)`, the handle that owns a run's writes and its final status;
- `ending`: how a run ends, whatever stops it; `owner`: which process runs it (host, pid);
- `writer`: the background writer of a run's metrics and checkpoints; `checkpoint_slots`:
  the two checkpoint slots of a run's artifacts;
- `logged_model`: the logged model (a TensorFlow SavedModel that needs no code of this
  package);
- `dataset`: the data splits as the run's dataset inputs;
- `registry`: the model registry (register, aliases, models:/ references);
- `parent_run`: a sweep's parent run and its children, and the rung values pruning reads;
- `children`: a running sweep's children as its live line reads them;
- `read`: what `runs`, `evaluate`, `predict` and `register` read back, looked up in the store;
- `tags`: the name of every tag a run carries.

Functions take and return plain values (dicts, arrays, figures, `RunRecord`s): the rest of the
package never sees an MLflow object. May import the networks and the data (the logged model),
the config's files and the runtime.
"""


def __getattr__(name: str):
    # The oldest logged models (pickled pyfuncs, from before this package was split) name
    # `lstm_cli.tracking.DigitsModel`: found here, imported only when such a model loads.
    # Models logged now are SavedModels and name nothing of ours.
    if name == "DigitsModel":
        from lstm_cli.tracking.logged_model import DigitsModel

        return DigitsModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
