"""One training run as a Hydra job: config -> data -> model -> training -> MLflow.

`run(argv)` hands the command line to Hydra's real entry point (`hydra.main`), so `-m`,
`--cfg`, launchers and sweepers behave as in any Hydra app. Before that, `preflight` composes
the config for every requested value so that typos fail with one line, before any job starts.
"""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException
from rich.markup import escape

from lstm_cli import config, console, libraries, sweep
from lstm_cli.errors import TrainingFailed, UserError, one_line

PARENT_KEY = "tracking.parent_run_id"  # set by `run` on every job of a sweep

config.register()


class Outcome:
    """What the last `run` reported: a single run's error, or the sweep jobs that failed.

    Jobs keep their errors instead of raising them, so that Hydra neither prints its own
    multi-line report nor stops a sweep at the first failure.
    """

    error: BaseException | None = None
    failed_jobs: list[str] = []  # noqa: RUF012 - reset by `run`


# ---------------------------------------------------------------- before Hydra starts


def _describe(ex: BaseException) -> str:
    """A Hydra/OmegaConf composition error as one line that says what to change."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(ex, OverrideParseException):
        return str(ex).splitlines()[0].replace("Error parsing", "cannot parse the")
    if isinstance(ex, MissingConfigException):  # an unknown config group option
        text = str(ex).split("Config search path:")[0]
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        missing = lines[0].split(": ", 1)[-1]
        return (
            f"{missing}; {lines[1].lower()} {', '.join(lines[2:])}" if len(lines) > 1 else missing
        )
    cause = ex.__cause__ if isinstance(ex.__cause__, OmegaConfBaseException) else ex
    key = getattr(cause, "full_key", None)
    if isinstance(cause, ConfigKeyError | ConfigAttributeError) and " not in " in str(cause):
        known = sorted(config.flatten(compose([])))
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
        return f"unknown config key '{key}'{hint}"
    lines = [line.strip() for line in str(getattr(cause, "msg", cause)).splitlines()]
    skip = ("full_key:", "object_type", "reference_type")
    text = " ".join(line for line in lines if line and not line.startswith(skip))
    return f"{key}: {text}" if key else text


def compose(overrides: list[str], hydra_node: bool = False) -> DictConfig:
    """The config for `overrides`, composed as Hydra would (its own `hydra` node if asked)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config.CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=hydra_node)


def _parse(overrides: list[str]) -> list:
    """Hydra's parsed overrides; a UserError if one cannot be parsed."""
    try:
        return OverridesParser.create().parse_overrides(overrides)
    except Exception as ex:
        raise UserError(_describe(ex)) from None


def preflight(argv: list[str]) -> tuple[DictConfig | None, list[str], bool]:
    """Compose the config for each value the command line asks for; raise UserError on a typo.

    A single run also gets its ranges checked here, so nothing is tracked for a bad value. In a
    sweep, ranges are checked per job, so one bad grid point fails alone. Returns the config
    composed without the swept values (None when Hydra only prints something), the overrides,
    and whether a sweep will run.
    """
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(argv)
    if args.help or args.hydra_help or args.info or args.shell_completion:
        return None, args.overrides, False
    parsed = _parse(args.overrides)
    swept = [o for o in parsed if o.is_sweep_override()]
    if swept and not args.multirun:
        raise UserError(
            f"{swept[0].input_line} asks for a sweep: add -m (or quote a list value: 'key=[a,b]')"
        )
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    variants = [fixed]
    for o in parsed:
        if o.is_sweep_override() and o.is_discrete_sweep():
            key = o.get_key_element()
            variants += [[*fixed, f"{key}={v}"] for v in o.sweep_string_iterator()]
    composed = []
    for overrides in variants:
        try:
            composed.append(compose(overrides))
        except Exception as ex:
            raise UserError(_describe(ex)) from None
    printing = args.cfg or args.resolve
    if not args.multirun and not printing:
        config.check(composed[0])
    return (None if printing else composed[0]), args.overrides, args.multirun and not printing


def run(argv: list[str]) -> None:
    """Run `lstm-digits train ARGV` through Hydra; raise what went wrong, as `cli` reports it."""
    libraries.quiet()
    cfg, overrides, multirun = preflight(argv)
    if multirun:  # first: the workers take seconds to start
        fixed = [o.input_line for o in _parse(overrides) if not o.is_sweep_override()]
        sweep.warm_up_workers(compose(fixed, hydra_node=True).hydra.launcher)
    if cfg is not None:
        with libraries.importing():  # MLflow
            from lstm_cli import tracking
    if multirun:
        parent = sweep.start(cfg, overrides)  # before any job: store, experiment, parent run
        argv = [*argv, f"{PARENT_KEY}={parent}"]  # every job's config names its parent
    elif cfg is not None:
        tracking.check_store(tracking.resolve_uri(cfg.tracking.uri))  # before any output dir
    Outcome.error, Outcome.failed_jobs = None, []
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra's own errors reach the CLI, told in one line
    sys.argv = ["lstm-digits train", *argv]
    try:
        hydra_entry()
    except BaseException as ex:  # Ctrl-C, or Hydra or a launcher failed: nothing left RUNNING
        interrupted = isinstance(ex, KeyboardInterrupt)
        reason = "interrupted (Ctrl-C)" if interrupted else one_line(ex)
        sweep.abort(reason, "KILLED" if interrupted else "FAILED")
        raise
    if Outcome.error is not None:
        raise Outcome.error
    if Outcome.failed_jobs:
        failed = Outcome.failed_jobs
        jobs = ", ".join(failed)
        raise TrainingFailed(f"{len(failed)} sweep job(s) failed (job {jobs}): see above")


# ---------------------------------------------------------------- the job


@hydra.main(config_path=str(config.CONF_DIR), config_name="config", version_base="1.3")
def hydra_entry(cfg: DictConfig) -> float:
    """The Hydra task: train once; return the final val accuracy (a sweeper's objective)."""
    hc = HydraConfig.get()
    job = str(hc.job.num) if hc.mode == RunMode.MULTIRUN else None
    try:
        return train(cfg, job=job)
    except Exception as ex:  # KeyboardInterrupt goes through: Ctrl-C stops a sweep too
        if job is None:
            Outcome.error = ex
        else:  # the sweep goes on; its summary and the exit code report the failure
            reason = escape(f"{hc.job.override_dirname}: {one_line(ex)}")
            console.job_line(job, f"[red]FAILED[/] {reason}")
            Outcome.failed_jobs.append(job)
        return float("nan")


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


def _threads(cfg: DictConfig) -> int | None:
    """TensorFlow threads: the config's, else by model size within the cores this job may use
    (a parallel launcher's share)."""
    from lstm_cli.train import default_threads

    if cfg.threads is not None:
        return cfg.threads
    hc = HydraConfig.get()
    cores = None  # all of them
    if hc.mode == RunMode.MULTIRUN:
        launcher = hc.launcher
        available = os.cpu_count() or 1
        if "joblib" in launcher.get("_target_", ""):
            n_jobs = launcher.get("n_jobs", -1)
            workers = available if n_jobs is None or n_jobs < 1 else min(n_jobs, available)
            cores = max(1, available // workers)
        elif launcher.get("cpus_per_task"):
            cores = int(launcher.cpus_per_task)
    return default_threads(cfg.hidden_size, cores)


def train(cfg: DictConfig, job: str | None) -> float:
    """Train and track one configuration; `job` is the sweep job number (None: a single run)."""
    from lstm_cli import tracking

    hc = HydraConfig.get()
    uri = tracking.resolve_uri(cfg.tracking.uri)
    experiment_id = tracking.open_experiment(uri, cfg.tracking.experiment)
    params = config.flatten(cfg)
    overrides = " ".join(o for o in hc.overrides.task if not o.startswith(f"{PARENT_KEY}="))
    commit = _git_commit()
    tags = {
        "overrides": overrides,
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
        "output_dir": hc.runtime.output_dir,
    }
    run_name = hc.job.override_dirname or "defaults"
    if job is None:
        console.show_config(params)
    else:
        tags["sweep_job"] = job
        console.job_line(job, f"start {overrides or '(defaults)'}")
    parent = cfg.tracking.parent_run_id
    with tracking.tracked_run(experiment_id, run_name, params, tags, parent) as run_id:
        config.check(cfg)
        tracking.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        result = _fit_and_log(cfg, quiet=job is not None)
    if job is None:
        console.show_result(
            result, run_id, uri, _ui_command(uri, cfg.tracking.experiment, experiment_id, run_id)
        )
    else:
        console.job_line(job, f"done  val_accuracy={result['val_accuracy']:.4f} run {run_id}")
    return result["val_accuracy"]


def _ui_command(uri: str, experiment: str, experiment_id: str, run_id: str) -> str:
    """How to look at the run: the server's page, else the `ui` command for this store."""
    from lstm_cli.tracking import default_uri, is_server

    if is_server(uri):
        return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    command = "lstm-digits ui" if uri == default_uri() else f"lstm-digits ui --tracking-uri {uri}"
    if experiment != config.conf_default("tracking.experiment"):
        command += f" --experiment {experiment}"
    return command


def _fit_and_log(cfg: DictConfig, quiet: bool) -> dict[str, float]:
    """Train in the active run; log metrics, figures and the model; return final metrics."""
    libraries.import_tensorflow()  # before any op: thread settings still apply
    from lstm_cli import tracking
    from lstm_cli.data import load_digits
    from lstm_cli.model import DigitsLSTM
    from lstm_cli.train import Trainer, configure_threads, set_seed

    in_force = configure_threads(_threads(cfg))
    tracking.set_tags({"tf_threads": str(in_force or "default")})
    set_seed(cfg.seed)
    data = load_digits(cfg.data.test_size, cfg.data.split_seed, cfg.data.scaling.value)
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
            tracking.log_epoch(m.as_dict(), m.epoch)
            update(m)

        history = trainer.fit(data, on_epoch=on_epoch)
    summary = {
        **history[-1].as_dict(),
        "best_val_accuracy": max(h.val_accuracy for h in history),
        "train_seconds": time.perf_counter() - start,
    }
    _log_results(model, data, history)
    start = time.perf_counter()
    _log_insight(model, data)
    summary["insight_seconds"] = time.perf_counter() - start  # its cost, kept with every run
    tracking.log_summary(
        {k: summary[k] for k in ("best_val_accuracy", "train_seconds", "insight_seconds")}
    )
    if cfg.tracking.log_model:
        tracking.log_model(spec, model.get_weights())
    return summary


def _log_results(model, data, history) -> None:
    """The learning curves and the held-out confusion matrix (figure and counts)."""
    from sklearn.metrics import confusion_matrix

    from lstm_cli import figures, tracking
    from lstm_cli.train import predict_proba

    predicted = predict_proba(model, data.x_val).argmax(axis=1)  # (n,)
    matrix = confusion_matrix(data.y_val, predicted, labels=range(data.num_classes))
    for name, fig in (
        ("learning_curves.png", figures.learning_curves([h.as_dict() for h in history])),
        ("confusion_matrix.png", figures.confusion_matrix(matrix)),
    ):
        tracking.log_figure(fig, name)
        figures.close(fig)
    labels = list(range(data.num_classes))
    tracking.log_dict({"labels": labels, "matrix": matrix.tolist()}, "confusion_matrix.json")


def _log_insight(model, data) -> None:
    """What the LSTM learned (see lstm_cli/insight.py): accuracy after k rows, gates, mistakes."""
    from lstm_cli import figures, insight, tracking

    seen = insight.analyse(model, data.x_val, data.y_val)
    tracking.log_steps("val_accuracy_by_rows", seen.accuracy_by_rows.tolist())  # step = rows read
    tracking.log_dict(seen.as_dict(), "insight.json")
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
        tracking.log_figure(fig, name)
        figures.close(fig)
