"""The tags a run carries: one place for their names, and what each says. Plain strings (no
MLflow import): the commands and the jobs read them too."""

from __future__ import annotations

# MLflow's own, which its UI reads (mlflow.utils.mlflow_tags).
PARENT_TAG = "mlflow.parentRunId"  # a sweep's point names its parent run (the UI nests it)
SOURCE_TAG = "mlflow.source.name"  # "lstm-digits train" on a run of ours
KIND_TAG = "mlflow.experimentKind"  # MLflow 3's UI opens an experiment on what it is for

# Ours.
SWEEP_TAG = "lstm_digits.sweep"  # "parent" on a sweep's parent run
SWEEP_JOB_TAG = "sweep_job"  # a sweep point's job number: a requeue or a resume finds its run
OVERRIDES_TAG = "overrides"  # the overrides as typed (a point's, or the sweep's)
HOST_TAG, PID_TAG = "lstm_digits.host", "lstm_digits.pid"  # the process that runs a run
ERROR_TAG = "error"  # why a run or a sweep FAILED or was KILLED, in one line
PRUNED_TAG = "pruned_at_epoch"  # on a pruned point's run (FINISHED; its metrics, no model)
DIVERGED_TAG = "diverged_at_epoch"  # on a run whose loss became NaN or infinite: no resume
DATA_TAG = "data_digest"  # the digest of a run's data split, checked by a resume
RESUMED_TAG, REQUEUED_TAG = "resumed", "requeued"  # how often a run went on after a stop
KERNEL_TAG = "kernel"  # which kernel trained the run's epochs: fused or ops
FROM_RUN_TAG = "from_run"  # the run whose config `train --from RUN` built this one on
NOTE_TAG = "mlflow.note.content"  # a run's description in MLflow's UI (Markdown)


def built_on(run_id: str, experiment_id: str | None) -> dict[str, str]:
    """The tags of a run built on run `run_id` (`train --from`): its id, and a note the UI
    shows as the run's description, linking to it (in its experiment, if known)."""
    shown = f"`{run_id[:8]}`"
    if experiment_id is not None:
        shown = f"[{run_id[:8]}](#/experiments/{experiment_id}/runs/{run_id})"
    note = (
        f"Built on run {shown}: its config, then this run's overrides "
        f"(`lstm-digits train --from {run_id}`)."
    )
    return {FROM_RUN_TAG: run_id, NOTE_TAG: note}
