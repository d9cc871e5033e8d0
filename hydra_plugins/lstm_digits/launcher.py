"""SLURM sweeps with several sweep points per SLURM job (`hydra.launcher.points_per_task=k`).

Every SLURM job is a fresh process that imports TensorFlow, MLflow, scikit-learn and
matplotlib (about 5 s here) before it trains, often for less than that. With k points per
job, a sweep of n points submits ceil(n/k) jobs, and each runs its points one after another in
one warm process: one start-up for k trainings. Each point is still its own Hydra job (its
number, output directory and MLflow run), so runs, summaries and `resume` do not change.

Everything else is hydra-submitit-launcher's `SlurmLauncher`, which this extends: the
submission of one job per pack is its own `launch` (`self` is what each job unpickles and
calls; its `job_num` is the pack's index), then every point runs through its `__call__`.

Stops, in a job of several points:
- SIGTERM (`scancel`, the time limit): the point training ends KILLED (see `job.Task`);
  the points after it are not started (SLURM kills the process seconds later).
- SLURM's warning before a time limit or a preemption: the point training checkpoints and the
  job is requeued whole; on its next start, points whose run FINISHED are skipped, the
  checkpointed one goes on (see `job.run_job`), and the rest start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

from lstm_cli import console, signals

Point = tuple[list[str], int]  # a sweep point: its overrides and its job number


class PackedSlurmLauncher(SlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher, `points_per_task` sweep points per job."""

    def __init__(self, points_per_task: int = 1, **params: Any) -> None:
        super().__init__(**params)
        self.points_per_task = points_per_task
        self.packs: list[list[Point]] | None = None  # set by `launch` when k > 1

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        k = self.points_per_task
        if k <= 1 or len(job_overrides) <= 1:
            return super().launch(job_overrides, initial_job_idx)
        points = [(list(o), initial_job_idx + i) for i, o in enumerate(job_overrides)]
        self.packs = [points[i : i + k] for i in range(0, len(points), k)]
        # One SLURM job per pack: its own overrides are a label only (`__call__` reads the
        # pack), its job number the pack's index.
        labels = [[f"points={len(p)}", f"first={p[0][1]}"] for p in self.packs]
        try:
            results = super().launch(labels, 0)
        finally:
            self.packs = None
        return [r for pack in results for r in pack]

    def __call__(
        self,
        sweep_overrides: list[str],
        job_dir_key: str,
        job_num: int,
        job_id: str,
        singleton_state: dict[Any, Any],
    ) -> Any:
        if self.packs is None:
            return super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)
        from lstm_cli.job import scheduler_signals

        stop, warning = scheduler_signals()
        done: list[JobReturn] = []
        # One scope for the whole pack: a SIGTERM between two points stops it too.
        with signals.scope(force=stop, requests=(warning,) if warning else ()):
            for overrides, num in self.packs[job_num]:
                if signals.stopped() is not None:
                    console.job_line(str(num), "not started: its SLURM job was stopped")
                    done.append(_not_run(overrides))
                    continue
                done.append(super().__call__(overrides, job_dir_key, num, job_id, singleton_state))
        return done


def _not_run(overrides: list[str]) -> JobReturn:
    """A point its job did not start: completed with no result, as a failed job's (NaN), so
    that the sweeper goes on; the sweep's summary lists the runs that exist."""
    result = JobReturn(overrides=overrides, status=JobStatus.COMPLETED, task_name="train")
    result.return_value = float("nan")
    return result
