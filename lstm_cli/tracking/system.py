"""MLflow's system metrics for a run (`tracking.system_metrics=true`): CPU, memory, disk and
network use as `system/...` metrics, sampled while the run lasts."""

from __future__ import annotations

from typing import Any

from lstm_cli.errors import UserError

# MLflow samples every 10 s by default, longer than most of our runs: they would log nothing.
EVERY_S = 1.0  # $MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides it


def start(run_id: str) -> Any:
    """Start sampling for run `run_id`; the monitor, for `stop`. A UserError without psutil."""
    try:
        import psutil  # noqa: F401 - MLflow's monitors read the system through it
    except ImportError:
        raise UserError(
            "system metrics need psutil, which is not installed: pip install psutil"
        ) from None
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=EVERY_S)
    monitor.start()
    return monitor


def stop(monitor: Any) -> None:
    """Stop sampling and write what was sampled. MLflow writes the mean of each interval's
    samples at the interval's end and drops the samples of an interval cut short: a run
    shorter than one interval would keep none. Those are written here, as one more step."""
    monitor.finish()  # joins its thread and writes what it wrote so far
    tail = monitor.aggregate_metrics()  # the samples since its last write, averaged
    if tail:
        monitor.publish_metrics(tail)
        monitor.mlflow_logger.flush()
