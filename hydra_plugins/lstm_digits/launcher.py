"""SLURM sweeps with several sweep points per SLURM job (`hydra.launcher.points_per_task=k`).

Every SLURM job is a fresh process that imports TensorFlow, MLflow, scikit-learn and
matplotlib (about 5 s here) before it trains, often for less than that. With k points per
job, a sweep of n points submits ceil(n/k) jobs, and each runs its points one after another in
one warm process: one start-up for k trainings. Each point is still its own Hydra job (its
number, output directory and MLflow run), so runs, summaries and `resume` do not change.

Everything else is hydra-submitit-launcher's `SlurmLauncher`, which this extends. How relies
on that launcher's pickling contract, so the class is built in `lstm_cli.runtime.internals`
(`packed_slurm_launcher`), with every other use of a library's internals; this module names
it where Hydra looks for launchers.

Stops, in a job of several points:
- SIGTERM (`scancel`, the time limit): the point training ends KILLED (see `job.Task`);
  the points after it are not started (SLURM kills the process seconds later).
- SLURM's warning before a time limit or a preemption: the point training checkpoints and the
  job is requeued whole; on its next start, points whose run FINISHED are skipped, the
  checkpointed one goes on (see `job.run_job`), and the rest start.
"""

from lstm_cli.runtime.internals import packed_slurm_launcher
from lstm_cli.views.console import job_line

PackedSlurmLauncher = packed_slurm_launcher(tell=job_line)
