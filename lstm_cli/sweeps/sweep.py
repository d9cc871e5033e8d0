"""Hydra multirun, summarised in MLflow: one parent run per sweep, every job a child of it.

`start` runs before Hydra launches anything: it opens the store and the experiment once and
creates the parent run, whose id reaches every job through its config
(`tracking.parent_run_id`). After the last job, `Sweep.summarise` reads every child back from
the store (jobs may have run in other processes or on other machines), logs the comparison on
the parent and ends it. Whatever stops the sweep early ends the parent and its unfinished
children too (see `tracking.sweep.start_parent`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lstm_cli.runtime import internals, masking
from lstm_cli.runtime.errors import one_line
from lstm_cli.sweeps import importance, summary
from lstm_cli.tracking import store
from lstm_cli.tracking.parent_run import Parent, start_parent, told
from lstm_cli.tracking.tags import FROM_RUN_TAG
from lstm_cli.views import console


class Sweep:
    """A running sweep: its parent run and the store it lives in."""

    def __init__(self, parent: Parent, uri: str) -> None:
        self.parent = parent
        self.uri = uri

    @property
    def parent_id(self) -> str:
        return self.parent.run_id

    def summarise(self) -> list[str]:
        """Log the comparison on the parent run, end it, print it; return the failed jobs."""
        from lstm_cli.views import figures  # matplotlib: only once the jobs are done

        parent = self.parent
        parent.close_children("FAILED", "the job ended without closing its run")
        records = parent.children()
        rows = summary.results_table(records)
        finished = [r for r in rows if r["status"] == "FINISHED"]
        pruned = [r for r in rows if r["status"] == summary.PRUNED]
        failed = [r for r in rows if r["status"] not in ("FINISHED", summary.PRUNED)]
        texts = {
            "sweep_results.csv": summary.to_csv(rows),
            "sweep_results.md": summary.to_markdown(rows),
        }
        labels = {r["run_id"]: r["overrides"] for r in rows}
        figs = {"sweep_comparison.png": figures.sweep_comparison(records, labels)}
        metrics = {
            "jobs": float(len(rows)),
            "failed_jobs": float(len(failed)),
            "pruned_jobs": float(len(pruned)),
        }
        tags = _sweep_dir(records)
        if finished:
            best = next(r for r in records if r["run_id"] == finished[0]["run_id"])
            metrics["best_val_accuracy"] = best["metrics"]["val_accuracy"]
            tags |= {"best_run_id": best["run_id"], "best_overrides": best["overrides"]}
            tags |= {f"best.{k}": v for k, v in best["params"].items()}
        groups = summary.seed_groups(records)
        if groups:
            texts["seed_summary.csv"] = summary.to_csv(groups)
            texts["seed_summary.md"] = summary.to_markdown(groups)
            figs["seed_summary.png"] = figures.seed_summary(groups)
            metrics["best_config_val_accuracy_mean"] = groups[0]["val_accuracy_mean"]
            metrics["best_config_val_accuracy_std"] = groups[0]["val_accuracy_std"]
        mattered, effects = _analysed(records)
        more = what_mattered(mattered, effects)
        tags, metrics = tags | more.tags, metrics | more.metrics
        texts, figs = texts | more.texts, figs | more.figures
        parent.log(tags=tags, metrics=metrics, texts=texts, figures=figs)
        for fig in figs.values():
            figures.close(fig)
        parent.end("FAILED" if failed else "FINISHED")
        console.show_sweep(
            rows,
            groups,
            parent.run_id,
            masking.mask(self.uri),
            lambda: console.show_importance(mattered, effects),
        )
        return [str(r["job"]) for r in failed]

    def told(self) -> str:
        """What a failed sweep left, and how to go on (see `tracking.sweep.told`)."""
        return told(self.parent_id, "FAILED", self.parent.unfinished())


@dataclass
class Logged:
    """What a sweep's parent run gets: tags, metrics, text files and figures."""

    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)


def what_mattered(result: importance.Importance, effects: list[dict[str, Any]]) -> Logged:
    """What a sweep's parent run gets of what mattered: `importance/<key>` for every swept key
    (the seed's too: the floor), the table (importance.csv, .md) and its chart (importance.png),
    the marginal effects (marginal_effects.csv, .md, .png); or the line saying why there is no
    importance (the tag `importance`)."""
    from lstm_cli.views import figures

    logged = Logged()
    if result.reason:
        logged.tags["importance"] = result.reason
    else:
        rows = importance.table(result)
        logged.tags["importance"] = importance.METHOD
        logged.metrics = {f"importance/{r['key']}": r["importance"] for r in result.rows}
        logged.texts = {
            "importance.csv": summary.to_csv(rows),
            "importance.md": summary.to_markdown(rows),
        }
        logged.figures["importance.png"] = figures.importance_bars(
            result.rows, result.metric, result.points
        )
    if effects:
        logged.texts["marginal_effects.csv"] = summary.to_csv(effects)
        logged.texts["marginal_effects.md"] = summary.to_markdown(effects)
        logged.figures["marginal_effects.png"] = figures.marginal_effects(effects, result.metric)
    return logged


def _analysed(
    records: list[dict[str, Any]],
) -> tuple[importance.Importance, list[dict[str, Any]]]:
    """`importance.analyse`; if it fails, the line that says why, and the sweep's summary goes
    on without it (its jobs' records are what matters)."""
    try:
        return importance.analyse(records)
    except Exception as ex:
        reason = f"no importance: it failed ({one_line(ex)})"
        return importance.Importance([], 0, importance.METRIC, {}, reason), []


def _sweep_dir(records: list[dict[str, Any]]) -> dict[str, str]:
    """The sweep's output directory (its jobs' directories are its subdirectories)."""
    dirs = {str(Path(r["output_dir"]).parent) for r in records if r["output_dir"]}
    return {"sweep_dir": dirs.pop()} if len(dirs) == 1 else {}


@contextmanager
def start(
    uri: str,
    experiment: str,
    overrides: list[str],
    argv: list[str],
    reopen: str | None = None,
    from_run: str | None = None,
) -> Iterator[Sweep]:
    """Before any job: open the store and the experiment once and create the parent run, the
    command line `argv` kept for a resume (and the run it builds on, `from_run`, as a tag); or
    reopen the stopped sweep `reopen`.

    If anything stops the sweep (Ctrl-C, SIGTERM, a launcher's error), the joblib workers are
    stopped first, so that no job still writes when the parent and its children are closed.
    """
    experiment_id = store.open_experiment(uri, experiment, reopen)
    text = masking.mask(" ".join(overrides))
    named = " ".join(o for o in overrides if o.partition("=")[0] != "tracking.uri")
    command = {"argv": [masking.mask(a) for a in argv]}
    name = f"sweep {named}".strip()
    tags = {"overrides": text} | ({FROM_RUN_TAG: from_run} if from_run else {})
    with start_parent(experiment_id, name, tags, command, reopen) as parent:
        went_on = "goes on" if reopen else "parent run"
        console.console.print(f"[bold]sweep[/] {went_on} {parent.run_id} in {masking.mask(uri)}")
        try:
            yield Sweep(parent, uri)
        except BaseException:
            internals.stop_workers()
            raise
