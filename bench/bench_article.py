"""A default run end to end against the article's script end to end.

    make bench-article                           # 5 runs of each, interleaved
    python bench/bench_article.py --base 6699a78 --repeats 5   # an earlier commit too

`lstm-digits train` (the default experiment: the article's, with everything a run records)
and `python bench/article.py` (the article's TF1 script through `tf.compat.v1`: 100 epochs,
then its accuracy plot) each run in a fresh temporary directory, timed from the outside,
command start to exit. The runs alternate (AB BA ...); the ratio is of the medians. Each run
of ours uses a new SQLite store (`--store fresh`, the default: a user's first run) or one
made beforehand (`--store existing`: every later run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

from bench_versions import ROOT, checkout, command, time_run

ARTICLE = Path(__file__).with_name("article.py")
TARGET = 0.70  # our run end to end at most this fraction of the article's script


def ours(tree: Path, store: str, template: Path | None) -> float:
    """`lstm-digits train` from `tree`, in a fresh directory."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "m.db"
        if store == "existing" and template is not None:
            shutil.copy(template, db)
        cmd, env = command(tree, ["train", f"tracking.uri=sqlite:///{db}"])
        return time_run(cmd, env, Path(tmp))


def article() -> float:
    """The article's script, in a fresh directory."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        return time_run([sys.executable, str(ARTICLE)], env, Path(tmp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each (default 5)")
    parser.add_argument("--base", help="also time `lstm-digits train` from this commit")
    parser.add_argument("--store", choices=["fresh", "existing"], default="fresh")
    args = parser.parse_args()
    with (
        checkout(args.base) if args.base else nullcontext() as base,
        tempfile.TemporaryDirectory() as tmp,
    ):
        template = None
        if args.store == "existing":  # a store with the experiment and one run in it
            template = Path(tmp) / "m.db"
            cmd, env = command(ROOT, ["train", "epochs=1", f"tracking.uri=sqlite:///{template}"])
            time_run(cmd, env, Path(tmp))
        variants = {
            "lstm-digits train": lambda: ours(ROOT, args.store, template),
            "article.py": article,
        }
        if base is not None:
            variants["lstm-digits train (base)"] = lambda: ours(base, args.store, template)
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        for repeat in range(args.repeats):
            for name, run in list(variants.items())[:: -1 if repeat % 2 else 1]:
                seconds[name].append(run())
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    print(f"end to end, {args.store} store, {os.cpu_count()} cores, {args.repeats} runs each")
    for name, samples in seconds.items():
        runs = " ".join(f"{s:.2f}" for s in samples)
        print(f"  {name:26s} median {medians[name]:6.2f} s  ({runs})")
    ratio = medians["lstm-digits train"] / medians["article.py"]
    verdict = "PASS" if ratio <= TARGET else "MISS"
    print(f"  ours / article (medians) = {ratio:.2f} (target <= {TARGET}): {verdict}")
    if base is not None:
        before = medians["lstm-digits train (base)"] / medians["article.py"]
        print(f"  base / article (medians) = {before:.2f}")


if __name__ == "__main__":
    main()
