"""The "A search space odyssey on the digits" page from real runs (`make study`).

    python docs/tools/study.py           # the sweep below (about 20 minutes), then the page
    python docs/tools/study.py --page    # the page again from the newest study sweep in the store

Runs `lstm-digits train -m experiment=study 'cell=glob(*)' data.reading=rows,pixels seed=1,2,3
hydra/launcher=joblib` (every cell on two readings, three seeds: 60 runs on 2 joblib workers)
into the default store (outputs/mlflow.db, here) and the preset's experiment,
lstm-digits-study. Then, from that sweep's runs in the store: the generated blocks of
docs/study.md (the set-up and its measured time, each cell's validation and test accuracy
over its seeds, what mattered) and docs/images/study/ (test accuracy per cell and reading,
the parent's importance and marginal-effects figures, the curves of lstm, gru and rnn on
pixels). The page's prose is written by hand from the run these blocks show.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "study.md"
IMAGES = ROOT / "docs" / "images" / "study"
CLI = str(Path(sys.executable).with_name("lstm-digits"))
EXPERIMENT = "lstm-digits-study"  # conf/experiment/study.yaml's
READINGS = ("rows", "pixels")
SWEEP = [
    "-m",
    "experiment=study",
    "cell=glob(*)",
    f"data.reading={','.join(READINGS)}",
    "seed=1,2,3",
    "hydra/launcher=joblib",
]
CURVE_CELLS = ("lstm", "gru", "rnn")  # the pixels' curves drawn
COPIED = {"importance.png": "importance.png", "marginal_effects.png": "marginal-effects.png"}


STORE = f"sqlite:///{ROOT / 'outputs' / 'mlflow.db'}"  # the checkout's default store


def run_sweep() -> float:
    """The study's sweep, into the default store of the checkout: its wall time in seconds."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the default
    start = time.monotonic()
    subprocess.run([CLI, "train", *SWEEP], cwd=ROOT, env=env, check=True)
    return time.monotonic() - start


def newest_sweep(client, experiment_id: str):
    """The newest sweep's parent run of the study's experiment."""
    found = client.search_runs(
        [experiment_id],
        "tags.`lstm_digits.sweep` = 'parent'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not found:
        sys.exit(f"no study sweep in experiment {EXPERIMENT}: run `make study` first")
    return found[0]


def spread(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def per_cell(jobs: list[dict], cells: list[str]) -> list[dict]:
    """Per cell and reading: the finished runs' validation and test accuracy over their seeds
    (mean, std), their training seconds; `chosen`: the best validation mean of its reading
    (every one of a tie)."""
    rows = []
    for reading in READINGS:
        mine = []
        for cell in cells:
            runs = [
                j
                for j in jobs
                if j["params"].get("cell") == cell
                and j["params"].get("data.reading") == reading
                and j["status"] == "FINISHED"
                and "test_accuracy" in j["metrics"]
            ]
            if not runs:
                continue
            val = spread([r["metrics"]["val_accuracy"] for r in runs])
            test = spread([r["metrics"]["test_accuracy"] for r in runs])
            seconds = statistics.fmean(r["metrics"].get("train_seconds", 0.0) for r in runs)
            mine.append(
                {
                    "cell": cell,
                    "reading": reading,
                    "n": len(runs),
                    "val": val,
                    "test": test,
                    "seconds": seconds,
                    "chosen": False,
                }
            )
        best = max((r["val"][0] for r in mine), default=None)
        for r in mine:  # ties (a mean of three of 180 digits each) are all chosen
            r["chosen"] = abs(r["val"][0] - best) < 1e-9
        rows += mine
    return rows


def results_table(rows: list[dict], cells: list[str]) -> str:
    head = ["cell"]
    for reading in READINGS:
        head += [f"{reading}: val", f"{reading}: **test**", "s/run"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    by = {(r["cell"], r["reading"]): r for r in rows}
    for cell in cells:
        row = [f"`{cell}`"]
        for reading in READINGS:
            r = by.get((cell, reading))
            if r is None:
                row += ["failed", "", ""]
                continue
            val = f"{r['val'][0]:.3f} ± {r['val'][1]:.3f}"
            test = f"{r['test'][0]:.3f} ± {r['test'][1]:.3f}"
            if r["chosen"]:
                val, test = f"**{val}** ★", f"**{test}**"
            row += [val, test, f"{r['seconds']:.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def importance_tables(parent, jobs: list[dict]) -> str:
    """What mattered: the parent's importances (as the sweep logged them), then each
    reading's own (computed here by the same function, not logged on the parent)."""
    from lstm_cli.sweeps import importance

    logged = {
        k.removeprefix("importance/"): v
        for k, v in parent.data.metrics.items()
        if k.startswith("importance/")
    }
    lines = [
        "The sweep's parent run (`importance/<key>`; `lstm-digits importance "
        f"{parent.info.run_id[:8]} --experiment {EXPERIMENT}` prints it again):",
        "",
        "| key | importance |",
        "| --- | --- |",
    ]
    for key, value in sorted(logged.items(), key=lambda kv: -kv[1]):
        lines.append(f"| `{key}`{' (the floor)' if key == 'seed' else ''} | {value:.3f} |")
    lines += [
        "",
        "Within each reading, every cell and the gated ones alone (without `rnn`): the cell "
        "against the seed's floor, computed here by the same function from the same runs "
        "(not logged on the parent):",
        "",
        "| reading | cells | `cell` | `seed` (the floor) | points |",
        "| --- | --- | --- | --- | --- |",
    ]
    for reading in READINGS:
        for which, keep in (("all ten", lambda c: True), ("the nine gated", lambda c: c != "rnn")):
            mine = [
                j
                for j in jobs
                if j["params"].get("data.reading") == reading and keep(j["params"].get("cell"))
            ]
            result, _ = importance.analyse(mine)
            if result.reason:
                lines.append(f"| {reading} | {which} | {result.reason} | | |")
                continue
            by = {r["key"]: r for r in result.rows}
            cell, seed = by["cell"], by["seed"]
            lines.append(
                f"| {reading} | {which} | {cell['importance']:.3f} ± {cell['std']:.3f} | "
                f"{seed['importance']:.3f} ± {seed['std']:.3f} | {result.points} |"
            )
    return "\n".join(lines)


def command(client, parent) -> str:
    """The sweep's command line, as its parent run kept it (sweep.json), without the store."""
    import json

    with tempfile.TemporaryDirectory() as tmp:
        argv = json.loads(
            Path(client.download_artifacts(parent.info.run_id, "sweep.json", tmp)).read_text()
        )["argv"]
    kept = [a for a in argv if not a.startswith("tracking.uri=")]
    return "lstm-digits train " + " ".join(quoted(kept))


def setup_text(parent, jobs: list[dict], wall: float | None, ran: str) -> str:
    seconds = (parent.info.end_time - parent.info.start_time) / 1000
    commits = sorted({j.get("commit", "") for j in jobs} - {""})
    failed = [j for j in jobs if j["status"] != "FINISHED"]
    day = datetime.fromtimestamp(parent.info.start_time / 1000, tz=timezone.utc)
    total = f" (`make study` in all: {wall / 60:.1f} minutes)" if wall else ""
    return "\n".join(
        [
            f"Made by `make study` on {day:%Y-%m-%d}: `{ran}`"
            f" (sweep `{parent.info.run_id}`, commit `{', '.join(c[:10] for c in commits)}`): "
            f"{len(jobs)} runs, {len(failed)} failed. The sweep took **{seconds / 60:.1f} "
            f"minutes** from its parent run's start to its end{total}, on this page's machine: "
            "2 cores, shared with other work while it ran.",
        ]
    )


def quoted(argv: list[str]) -> list[str]:
    return [f"'{a}'" if "(" in a else a for a in argv]


def curves(client, jobs: list[dict]) -> dict:
    """Validation accuracy and training loss per epoch of CURVE_CELLS on pixels, by seed."""
    panels: dict[str, dict[str, list[list[float]]]] = {"val_accuracy": {}, "train_loss": {}}
    for cell in CURVE_CELLS:
        runs = [
            j
            for j in jobs
            if j["params"].get("cell") == cell
            and j["params"].get("data.reading") == "pixels"
            and j["status"] == "FINISHED"
        ]
        for metric, by in panels.items():
            by[cell] = [
                [
                    m.value
                    for m in sorted(
                        client.get_metric_history(r["run_id"], metric), key=lambda m: m.step
                    )
                ]
                for r in runs
            ]
    return panels


def write_block(page: str, name: str, text: str) -> str:
    start, end = f"<!-- study:{name} -->", f"<!-- /study:{name} -->"
    if start not in page:
        sys.exit(f"{PAGE.relative_to(ROOT)} has no {start} ... {end} block")
    return re.sub(f"{start}.*?{end}", lambda _: f"{start}\n{text}\n{end}", page, flags=re.S)


def make_page(wall: float | None) -> None:
    """The page's blocks and images from the newest study sweep in the default store."""
    from mlflow.tracking import MlflowClient

    from lstm_cli.config.choices import Cell, names
    from lstm_cli.tracking.parent_run import Parent
    from lstm_cli.views import figures

    uri = STORE
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        sys.exit(f"no experiment {EXPERIMENT} in {uri}: run `make study` first")
    parent = newest_sweep(client, experiment.experiment_id)
    jobs = Parent(parent.info.run_id, uri).children()
    for job in jobs:
        job["commit"] = client.get_run(job["run_id"]).data.tags.get("git_commit", "")
    cells = names(Cell)
    rows = per_cell(jobs, cells)
    IMAGES.mkdir(parents=True, exist_ok=True)
    test_rows = [{**r, "mean": r["test"][0], "std": r["test"][1]} for r in rows]
    metric = "test accuracy (mean ± std over 3 seeds; ★: best validation mean)"
    fig = figures.accuracy_per_cell(test_rows, metric, READINGS)
    fig.savefig(IMAGES / "test-accuracy.png", dpi=100)
    fig = figures.curve_bands(curves(client, jobs))
    fig.savefig(IMAGES / "pixels-curves.png", dpi=100)
    with tempfile.TemporaryDirectory() as tmp:
        for name, picture in COPIED.items():
            got = client.download_artifacts(parent.info.run_id, name, tmp)
            shutil.copy(got, IMAGES / picture)
    page = PAGE.read_text()
    page = write_block(page, "setup", setup_text(parent, jobs, wall, command(client, parent)))
    page = write_block(page, "results", results_table(rows, cells))
    page = write_block(page, "importance", importance_tables(parent, jobs))
    PAGE.write_text(page)
    print(
        f"wrote {PAGE.relative_to(ROOT)} and {IMAGES.relative_to(ROOT)}/ from sweep "
        f"{parent.info.run_id}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--page", action="store_true", help="only the page, from the newest study sweep"
    )
    args = parser.parse_args()
    wall = None if args.page else run_sweep()
    make_page(wall)


if __name__ == "__main__":
    main()
