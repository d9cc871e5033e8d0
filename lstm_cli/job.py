"""One training job as Hydra runs it: config -> data -> model -> training -> an MLflow run.

`TrainJob` is the task function handed to `hydra.main` (by `experiment`). A job learns all it
needs from its config (a sweep's parent run is `tracking.parent_run_id`) and Hydra's
`HydraConfig` (its number, output directory and launcher), so it runs the same in this
process, a joblib worker or a SLURM job.
"""

from __future__ import annotations

import os
import subprocess
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.markup import escape

from lstm_cli import config, console, masking, presets, process, signals
from lstm_cli.errors import UserError, debugging, one_line, traceback_text


class TrainJob:
    """The Hydra task: train once; return the final val accuracy (a sweeper's objective).

    A single run's error is kept in `error` (for `experiment` to raise) rather than raised:
    Hydra would print its own report. A sweep job's error is printed and recorded in its run
    (the sweep's summary reads it back from the store, wherever the job ran), and the sweep
    goes on. Ctrl-C and SIGTERM go through.
    """

    def __init__(self) -> None:
        self.error: BaseException | None = None

    def __call__(self, cfg: DictConfig) -> float:
        hc = HydraConfig.get()
        job = str(hc.job.num) if hc.mode == RunMode.MULTIRUN else None
        scheduled = scheduler_signals()
        try:
            with signals.scope(force=scheduled):
                return train(cfg, job=job)
        except KeyboardInterrupt as ex:
            if job is None or not scheduled:  # Ctrl-C in this process stops the whole sweep
                raise
            # The scheduler stopped this job alone (scancel, its time limit): its run is
            # KILLED; the job ends normally so that the sweep waits for the others.
            console.job_line(job, f"[red]KILLED[/] {escape(one_line(ex))}")
            return float("nan")
        except Exception as ex:
            if job is None:
                self.error = ex
            else:
                reason = escape(f"{hc.job.override_dirname}: {one_line(ex)}")
                console.job_line(job, f"[red]FAILED[/] {reason}")
                if debugging():
                    console.errors.print(traceback_text(ex), markup=False, end="")
            return float("nan")


def scheduler_signals() -> tuple[int, ...]:
    """In a job submitit runs (SLURM, or its local executor): SIGTERM and submitit's
    time-limit/preemption signal (SIGUSR2 unless configured), which end the run KILLED.
    Outside one: nothing."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return ()
    import signal

    from submitit import JobEnvironment

    return (signal.SIGTERM, signal.Signals[f"SIG{JobEnvironment.USR_SIG}"])


def train(cfg: DictConfig, job: str | None) -> float:
    """Train and track one configuration; `job` is the sweep job number (None: a single run)."""
    process.import_tracking()  # MLflow, out of the collector's way
    from lstm_cli.tracking import run as tracked
    from lstm_cli.tracking import store

    hc = HydraConfig.get()
    uri = store.resolve_uri(cfg.tracking.uri)
    experiment_id = store.open_experiment(uri, cfg.tracking.experiment)
    params = {k: masking.masked(v) for k, v in config.flatten(cfg).items()}
    overrides = masking.mask(" ".join(config.job_overrides(list(hc.overrides.task))))
    commit = _git_commit()
    tags = {
        "overrides": overrides,
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
        "output_dir": hc.runtime.output_dir,
    }
    name = hc.job.override_dirname or "defaults"
    if job is None:
        console.show_config(params)
    else:
        tags["sweep_job"] = job
        console.job_line(job, f"start {overrides or '(defaults)'}")
    parent = cfg.tracking.parent_run_id
    with tracked.start_run(experiment_id, name, params, tags, parent) as run:
        config.check(cfg)
        run.log_text(masking.mask(OmegaConf.to_yaml(cfg, resolve=True)), "config.yaml")
        result = fit_and_log(cfg, run, quiet=job is not None)
    if job is None:
        how = _ui_command(uri, cfg.tracking.experiment, experiment_id, run.run_id)
        console.show_result(result, run.run_id, masking.mask(uri), masking.mask(how))
    else:
        console.job_line(job, f"done  val_accuracy={result['val_accuracy']:.4f} run {run.run_id}")
    return result["val_accuracy"]


def _git_commit() -> str:
    """The commit of the checkout this package runs from ('' when it is not a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cores_per_job(launcher: Any, available: int) -> int | None:
    """The cores one job of a sweep may use under `launcher` (None: all of them).

    joblib runs `n_jobs` workers side by side (-1 or null: one per core); submitit gives each
    job `cpus_per_task`; other launchers run one job at a time.
    """
    if "joblib" in str(launcher.get("_target_", "")):
        n_jobs = launcher.get("n_jobs", -1)
        workers = available if n_jobs is None or n_jobs < 1 else min(n_jobs, available)
        return max(1, available // workers)
    if launcher.get("cpus_per_task"):
        return int(launcher.cpus_per_task)
    return None


def _threads(cfg: DictConfig) -> int | None:
    """TensorFlow threads: the config's, else by model size within the job's cores."""
    from lstm_cli.train import default_threads

    if cfg.threads is not None:
        return cfg.threads
    hc = HydraConfig.get()
    cores = None
    if hc.mode == RunMode.MULTIRUN:
        cores = cores_per_job(hc.launcher, os.cpu_count() or 1)
    return default_threads(cfg.hidden_size, cores)


def _ui_command(uri: str, experiment: str, experiment_id: str, run_id: str) -> str:
    """How to look at the run: the server's page, else the `ui` command for this store."""
    from lstm_cli.tracking.store import default_uri, is_server

    if is_server(uri):
        return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    command = "lstm-digits ui" if uri == default_uri() else f"lstm-digits ui --tracking-uri {uri}"
    if experiment != presets.default("tracking.experiment"):
        command += f" --experiment {experiment}"
    return command


EXAMPLE_IMAGES = 2  # held-out digits logged as the model's input example (the UI shows it)


def fit_and_log(cfg: DictConfig, run: Any, quiet: bool) -> dict[str, float]:
    """Train in `run` (a tracking handle); log the data splits, metrics, figures and the model
    (registered as `tracking.register` if set); return the final metrics."""
    register = cfg.tracking.get("register")  # a model name, or None
    if register and not cfg.tracking.log_model:
        raise UserError(f"tracking.register={register} needs the model: tracking.log_model=true")
    if cfg.tracking.get("system_metrics"):
        run.monitor_system()
    process.import_tensorflow()  # before any op: thread settings still apply
    from lstm_cli.data import SOURCE, load_digits, pixel_scale
    from lstm_cli.model import DigitsLSTM
    from lstm_cli.train import Trainer, configure_threads, set_seed

    in_force = configure_threads(_threads(cfg))
    run.set_tags({"tf_threads": str(in_force or "default")})
    set_seed(cfg.seed)
    data = load_digits(cfg.data.test_size, cfg.data.split_seed, cfg.data.scaling.value)
    splits = {"training": ("digits-train", data.x_train, data.y_train),
              "validation": ("digits-val", data.x_val, data.y_val)}  # fmt: skip
    run.log_datasets(splits, loader=SOURCE)
    run.mark_experiment()  # the UI opens it on training runs
    spec = {
        "model": {
            "input_size": data.input_size,
            "num_classes": data.num_classes,
            "hidden_size": cfg.hidden_size,
            "cell": cfg.cell.value,
            "init": cfg.init.value,
            "output_activation": cfg.output_activation.value,
            "seed": cfg.seed,
        },
        "scaling": cfg.data.scaling.value,
        "steps": data.steps,
    }
    model = DigitsLSTM(**spec["model"]).build()
    trainer = Trainer(
        model,
        cfg.learning_rate,
        cfg.batch_size,
        cfg.epochs,
        seed=cfg.seed,
        shuffle=cfg.data.shuffle,
    )
    progress = nullcontext(lambda m: None) if quiet else console.epoch_progress(cfg.epochs)
    start = time.perf_counter()
    with progress as update:

        def on_epoch(m):
            run.log_epoch(m.as_dict(), m.epoch)
            update(m)

        history = trainer.fit(data, on_epoch=on_epoch)
    summary = {
        **history[-1].as_dict(),
        "best_val_accuracy": max(h.val_accuracy for h in history),
        "train_seconds": time.perf_counter() - start,
    }
    _log_results(run, model, data, history)
    start = time.perf_counter()
    _log_insight(run, model, data)
    summary["insight_seconds"] = time.perf_counter() - start  # its cost, kept with every run
    run.log_metrics(
        {k: summary[k] for k in ("best_val_accuracy", "train_seconds", "insight_seconds")}
    )
    if cfg.tracking.log_model:
        raw = data.x_val[:EXAMPLE_IMAGES] / pixel_scale(spec["scaling"])  # 0..16, as stored
        run.log_model(model, spec["scaling"], raw)
    if register:
        registered = run.register_model(register)
        if not quiet:
            console.console.print(f"[bold]registered[/]    {registered}")
    return summary


def _log_results(run, model, data, history) -> None:
    """The learning curves and the held-out confusion matrix (figure and counts)."""
    from sklearn.metrics import confusion_matrix

    from lstm_cli import figures
    from lstm_cli.train import predict_proba

    predicted = predict_proba(model, data.x_val).argmax(axis=1)  # (n,)
    matrix = confusion_matrix(data.y_val, predicted, labels=range(data.num_classes))
    for name, fig in (
        ("learning_curves.png", figures.learning_curves([h.as_dict() for h in history])),
        ("confusion_matrix.png", figures.confusion_matrix(matrix)),
    ):
        run.log_figure(fig, name)
        figures.close(fig)
    labels = list(range(data.num_classes))
    run.log_dict({"labels": labels, "matrix": matrix.tolist()}, "confusion_matrix.json")


def _log_insight(run, model, data) -> None:
    """What the LSTM learned (see lstm_cli/insight.py): accuracy after k rows, gates, mistakes."""
    from lstm_cli import figures, insight

    seen = insight.analyse(model, data.x_val, data.y_val)
    run.log_steps("val_accuracy_by_rows", seen.accuracy_by_rows.tolist())  # step = rows read
    run.log_dict(seen.as_dict(), "insight.json")
    wrong = seen.misclassified
    for name, fig in (
        ("accuracy_by_rows.png", figures.accuracy_by_rows(seen.accuracy_by_rows)),
        (
            "gates.png",
            figures.gate_heatmaps(
                data.x_val[seen.examples],
                data.y_val[seen.examples],
                seen.predicted[seen.examples],
                seen.states,
            ),
        ),
        (
            "misclassified.png",
            figures.misclassified(
                data.x_val[wrong], data.y_val[wrong], seen.predicted[wrong], len(data.y_val)
            ),
        ),
    ):
        run.log_figure(fig, name)
        figures.close(fig)
