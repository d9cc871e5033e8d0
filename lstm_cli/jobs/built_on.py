"""Building on a recorded run: `lstm-digits train --from RUN [OVERRIDES]...` trains the run's
config as it recorded it (its config.yaml artifact; for a run from before that, its overrides
tag), then the new overrides, as a new run (or, with -m, a sweep) that names where it came from
(`tracking.from_run`; the run's tags `from_run` and its note in the UI).

The recorded config becomes overrides of its own: each key whose recorded value differs from
what the configs give with no override, unless the new command line sets that key (named, or
through a group, a preset or a sweep). Where it was tracked (tracking.uri, its sweep) is not
carried: the new run goes to the store RUN was found in, or the one the command line names;
nor is how its sweep pruned (prune.*: a sweep's, which a single run refuses).
"""

from __future__ import annotations

from typing import Any

from lstm_cli.config import compose, schema
from lstm_cli.config.files import WHERE_KEYS
from lstm_cli.jobs.resume_rules import recorded_config
from lstm_cli.runtime.errors import UserError
from lstm_cli.tracking.tags import OVERRIDES_TAG, PRUNED_TAG, SOURCE_TAG

SWEEP_ONLY = "prune"  # how a sweep compares its points (a single run refuses it): not carried
FROM_KEY = "tracking.from_run"


def argv_from(ref: str, argv: list[str]) -> list[str]:
    """The command line `train --from REF ARGV` runs: `argv` with, before its overrides, the
    recorded run's config as overrides (the keys `argv` does not set) and
    `tracking.from_run=<its id>`. A UserError for a run that cannot be built on; a note if the
    code is not the commit that trained it."""
    from lstm_cli.runtime import internals, process

    process.import_tracking()
    from lstm_cli.tracking import read, store

    asked = compose.touched(argv)
    uri = store.resolve_uri(asked.cfg.tracking.uri)
    run = read.find_run(uri, asked.cfg.tracking.experiment, ref)
    check(run)
    inherited = recorded(run, asked)
    _tell_commit(run)
    # Hydra reads the overrides as one run of words (after a flag's value, more are refused):
    # the recorded ones go just before the typed ones.
    args, _ = internals.hydra_arguments(argv)
    at = argv.index(args.overrides[0]) if args.overrides else 0
    return [*argv[:at], *inherited, f"{FROM_KEY}={run.run_id}", *argv[at:]]


def check(run: Any) -> None:
    """Refuse, in one line, a run whose config is no run to build on: a sweep's parent run (a
    command line, not a config) and a point pruning stopped."""
    if run.is_sweep_parent:
        raise UserError(
            f"run {run.run_id} is a sweep's parent run, not a run: build on one of its points "
            f"(`lstm-digits runs --sweep {run.run_id[:8]}` lists them)"
        )
    if PRUNED_TAG in run.tags:
        raise UserError(
            f"run {run.run_id} was pruned at epoch {run.tags[PRUNED_TAG]} (its sweep's other "
            "points did better): build on a run that finished"
        )


def recorded(run: Any, asked: compose.Touched) -> list[str]:
    """The recorded config of `run` as overrides, without the keys the command line sets."""
    from lstm_cli.tracking import read
    from lstm_cli.tracking.run_handle import SOURCE

    text = read.artifact_text(run.run_id, "config.yaml")
    if text is None:
        said = run.tags.get(OVERRIDES_TAG)
        if said is None or run.tags.get(SOURCE_TAG) != SOURCE:
            raise UserError(
                f"run {run.run_id} has no config.yaml: not an lstm-digits run, or it stopped "
                "before its config was stored"
            )
        kept = [o for o in said.split() if not _dropped(o.partition("=")[0], asked.keys)]
        return kept
    values = schema.flatten(recorded_config(text))
    defaults = schema.flatten(asked.default)
    changed = {
        k: v for k, v in values.items() if v != defaults.get(k) and not _dropped(k, asked.keys)
    }
    return compose.as_overrides(changed)


def _dropped(key: str, touched: frozenset[str]) -> bool:
    key = key.lstrip("+~")
    return key in WHERE_KEYS or key.split(".")[0] == SWEEP_ONLY or key in touched


def _tell_commit(run: Any) -> None:
    """One line when this code is not the commit that trained `run` (its `git_commit` tag)."""
    from lstm_cli.tracking.owner import git_commit
    from lstm_cli.views import console

    then, now = run.tags.get("git_commit", ""), git_commit()
    if then and now and then != now:
        console.note(
            f"run {run.run_id[:8]} was trained by commit {then[:10]}, this code is {now[:10]}: "
            "the same config may train otherwise"
        )
