"""Hydra multirun, summarised in MLflow: one parent run per sweep, every job a child of it.

`start` runs before Hydra launches anything: it creates the store, the experiment and the
parent run once (jobs, wherever they run, then only open them, which avoids SQLite's
schema-creation race); `experiment.run` gives every job the parent's id in its config.
`SweepCallback`, registered in conf/config.yaml, runs in the launching process after the last
job: it reads every child back from MLflow (jobs may have run in other processes or on other
machines) and logs the comparison on the parent.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import statistics
import sys
import threading
from collections import defaultdict
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from lstm_cli import console, libraries

PARENT_ENV = "LSTM_DIGITS_PARENT_RUN_ID"  # the running sweep's parent, in the launching process
IGNORED_FOR_GROUPING = ("seed", "tracking.uri")  # what may differ between repeats of a config
COLUMNS = ("job", "overrides", "status", "val_accuracy", "val_loss", "train_accuracy",
           "best_val_accuracy", "train_seconds", "run_id", "error")  # fmt: skip


def swept_keys(records: list[dict[str, Any]]) -> set[str]:
    """The override keys whose values differ between the jobs."""
    values: dict[str, set[str]] = defaultdict(set)
    for r in records:
        for override in r["overrides"].split():
            key, _, value = override.partition("=")
            values[key].add(value)
    return {k for k, v in values.items() if len(v) > 1 or len(records) == 1}


def label(overrides: str, keep: set[str], drop: tuple[str, ...] = ()) -> str:
    """A job's overrides limited to the keys in `keep` and not in `drop`."""
    kept = [
        o
        for o in overrides.split()
        if o.partition("=")[0] in keep and o.partition("=")[0] not in drop
    ]
    return " ".join(kept) or "(defaults)"


def results_table(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per job, best val accuracy first, failed jobs last."""
    keys = swept_keys(records)
    rows = []
    for r in records:
        m = r["metrics"]
        rows.append({
            "job": r["job"],
            "overrides": label(r["overrides"], keys),
            "status": r["status"],
            **{k: m.get(k, math.nan) for k in COLUMNS[3:8]},
            "run_id": r["run_id"],
            "error": r["error"],
        })  # fmt: skip
    finished = [r for r in rows if r["status"] == "FINISHED"]
    others = [r for r in rows if r["status"] != "FINISHED"]
    return sorted(finished, key=lambda r: -r["val_accuracy"]) + others


def seed_groups(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration repeated over seeds: n, mean and sample std of the final val accuracy.

    Empty unless some configuration ran with more than one seed. Only finished jobs count.
    """
    keys = swept_keys(records)
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["status"] == "FINISHED":
            key = tuple(
                sorted((k, v) for k, v in r["params"].items() if k not in IGNORED_FOR_GROUPING)
            )
            groups[key].append(r)
    if not any(len({r["params"].get("seed") for r in g}) > 1 for g in groups.values()):
        return []
    rows = []
    for members in groups.values():
        values = [r["metrics"]["val_accuracy"] for r in members]
        rows.append({
            "config": label(members[0]["overrides"], keys, drop=IGNORED_FOR_GROUPING),
            "seeds": " ".join(sorted(r["params"].get("seed", "?") for r in members)),
            "n": len(values),
            "val_accuracy_mean": statistics.fmean(values),
            "val_accuracy_std": statistics.stdev(values) if len(values) > 1 else 0.0,
        })  # fmt: skip
    return sorted(rows, key=lambda r: -r["val_accuracy_mean"])


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else list(COLUMNS))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def to_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no jobs)\n"

    def cell(v: Any) -> str:
        text = f"{v:.4f}" if isinstance(v, float) else str(v)
        return text.replace("|", "\\|")

    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(r[k]) for k in head) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def start(cfg: DictConfig, overrides: list[str]) -> str:
    """Before any job: open the store and the experiment once and create the parent run;
    returns its id (also kept in `PARENT_ENV` for this process's callback and `abort`)."""
    from lstm_cli import tracking

    uri = tracking.resolve_uri(cfg.tracking.uri)
    experiment_id = tracking.open_experiment(uri, cfg.tracking.experiment)
    text = " ".join(overrides)
    parent = tracking.start_parent_run(experiment_id, f"sweep {text}".strip(), {"overrides": text})
    os.environ[PARENT_ENV] = parent
    os.environ["MLFLOW_TRACKING_URI"] = uri  # jobs in other processes use the same store
    return parent


def _import_job_modules() -> int:
    """In a joblib worker: import what every job needs (TensorFlow, MLflow and its SQL store and
    model flavour, scikit-learn, matplotlib: about 5 s), out of the collector's way."""
    import importlib

    libraries.quiet()
    libraries.import_tensorflow()
    with libraries.importing():
        for module in ("experiment", "tracking", "train", "insight", "figures", "data"):
            importlib.import_module(f"lstm_cli.{module}")
        for module in ("sklearn.datasets", "sklearn.model_selection", "sklearn.metrics"):
            importlib.import_module(module)
        for module in ("mlflow.pyfunc", "mlflow.store.tracking.sqlalchemy_store"):
            importlib.import_module(module)
    return os.getpid()


_warming: list[threading.Thread] = []  # the warm-up started by `warm_up_workers`, if any


def warm_up_workers(launcher: DictConfig) -> None:
    """Start the joblib launcher's workers now, importing what jobs need, while this process
    prepares and launches the sweep (nothing for other launchers). The launcher reuses them:
    joblib keeps its workers for calls with the same settings, and Hydra's jobs queue behind the
    warm-up. The workers start before the parent run exists: jobs learn it from their config
    (`tracking.parent_run_id`), not the environment."""
    if "joblib" not in str(launcher.get("_target_", "")):
        return
    from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
    from joblib import Parallel, delayed

    settings = {k: v for k, v in launcher.items() if k != "_target_"}
    settings["backend"] = "loky"  # as the launcher does
    process_joblib_cfg(settings)
    workers = Parallel(**settings)._effective_n_jobs()

    def warm() -> None:
        # Nothing escapes this thread: a Ctrl-C reaches the workers too (the terminal signals
        # the process group), and the main thread reports it. A failed warm-up (a worker killed
        # while importing) breaks the shared workers: the launcher then fails in one line.
        with contextlib.suppress(BaseException):
            Parallel(**settings)(delayed(_import_job_modules)() for _ in range(workers))

    thread = threading.Thread(target=warm, name="warm-up-workers", daemon=True)
    thread.start()
    _warming.append(thread)


def stop_workers() -> None:
    """Before the process exits: stop the joblib launcher's workers, kept for reuse (each would
    tear TensorFlow down), and wait for them and for an unfinished warm-up (Ctrl-C), so that
    their locks and temporary folders are released once, before the exit hooks run. Twice: a
    warm-up interrupted early may create the workers only meanwhile."""

    def shut_down() -> None:
        reusable = sys.modules.get("joblib.externals.loky.reusable_executor")
        executor = getattr(reusable, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=True, kill_workers=True)

    shut_down()
    for thread in _warming:
        thread.join(timeout=10)
    shut_down()


def abort(reason: str, status: str) -> None:
    """A sweep stopped early (Ctrl-C: KILLED; an error: FAILED): end the parent and its
    unfinished children with `status` and the reason."""
    parent = os.environ.pop(PARENT_ENV, None)
    if parent is None:
        return
    from lstm_cli import tracking

    tracking.end_sweep(parent, status, reason)


class SweepCallback(Callback):
    """Hydra's hooks around a sweep: notes where it writes, then summarises its jobs.

    `experiment.run` creates the parent run (`start`) before Hydra launches anything, so that a
    store problem is one error line, not a warning followed by jobs without a parent.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from lstm_cli import tracking

        parent = os.environ.get(PARENT_ENV)
        if parent is None:  # launched without `lstm-digits train`: no parent, no summary
            return
        tracking.log_to_run(parent, tags={"sweep_dir": str(config.hydra.sweep.dir)})
        uri = tracking.resolve_uri(config.tracking.uri)
        console.console.print(f"[bold]sweep[/] parent run {parent} in {uri}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from lstm_cli import tracking
        from lstm_cli.experiment import Outcome

        parent = os.environ.get(PARENT_ENV)
        if parent is None:
            return
        try:
            failed = summarise(parent, tracking.resolve_uri(config.tracking.uri))
            os.environ.pop(PARENT_ENV)
        except Exception as ex:  # Hydra would only warn: make it the command's error
            Outcome.error = ex
            abort(f"the sweep summary failed: {ex}", "FAILED")
            raise
        Outcome.failed_jobs = sorted(set(Outcome.failed_jobs) | set(failed))


def summarise(parent: str, uri: str) -> list[str]:
    """Log the comparison on the parent run, end it, print it; return the failed jobs."""
    from lstm_cli import figures, tracking

    tracking.close_children(parent, "FAILED", "the job ended without closing its run")
    records = tracking.child_runs(parent)
    rows = results_table(records)
    finished = [r for r in rows if r["status"] == "FINISHED"]
    failed = [r for r in rows if r["status"] != "FINISHED"]
    texts = {"sweep_results.csv": to_csv(rows), "sweep_results.md": to_markdown(rows)}
    labels = {r["run_id"]: r["overrides"] for r in rows}
    figs = {"sweep_comparison.png": figures.sweep_comparison(records, labels)}
    metrics = {"jobs": float(len(rows)), "failed_jobs": float(len(failed))}
    tags: dict[str, str] = {}
    if finished:
        best = next(r for r in records if r["run_id"] == finished[0]["run_id"])
        metrics["best_val_accuracy"] = best["metrics"]["val_accuracy"]
        tags = {"best_run_id": best["run_id"], "best_overrides": best["overrides"]}
        tags |= {f"best.{k}": v for k, v in best["params"].items()}
    groups = seed_groups(records)
    if groups:
        texts |= {"seed_summary.csv": to_csv(groups), "seed_summary.md": to_markdown(groups)}
        figs["seed_summary.png"] = figures.seed_summary(groups)
        metrics["best_config_val_accuracy_mean"] = groups[0]["val_accuracy_mean"]
        metrics["best_config_val_accuracy_std"] = groups[0]["val_accuracy_std"]
    tracking.log_to_run(parent, tags=tags, metrics=metrics, texts=texts, figures=figs)
    for fig in figs.values():
        figures.close(fig)
    tracking.end_parent_run(parent, "FAILED" if failed else "FINISHED")
    console.show_sweep(rows, groups, parent, uri)
    return [str(r["job"]) for r in failed]
