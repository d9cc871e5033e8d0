"""A sweep's live line: counting, the line, the total Hydra will run (fast), and the CLI under a
pseudo-terminal and a pipe (slow)."""

from __future__ import annotations

import re
import threading
import time

import pytest

from lstm_cli.config import compose
from lstm_cli.sweeps import live_line
from lstm_cli.views import console
from tests.helpers import final_live_line, run_cli, run_in_terminal, sqlite_uri, visible_lines

TINY = ("epochs=2", "tracking.log_model=false")  # jobs that train for real, in a second


def child(status, overrides, val=None, pruned=False):
    """A child run as `tracking.progress.Children.read` gives it."""
    metrics = {} if val is None else {"val_accuracy": val}
    return {"status": status, "pruned": pruned, "overrides": overrides, "metrics": metrics}


CHILDREN = [
    child("FINISHED", "hidden_size=25 learning_rate=0.001 epochs=5", 0.95),
    child("FINISHED", "hidden_size=100 learning_rate=0.003 epochs=5", 0.9722),
    child("FINISHED", "hidden_size=50 learning_rate=0.003 epochs=5", 0.99, pruned=True),
    child("FAILED", "hidden_size=0 learning_rate=0.001 epochs=5"),
    child("KILLED", "hidden_size=200 learning_rate=0.001 epochs=5", 0.5),
    child("RUNNING", "hidden_size=25 learning_rate=0.003 epochs=5", 0.999),
]


# ---------------------------------------------------------------- counting and the line


def test_children_are_counted_by_how_they_ended():
    counts = live_line.count(CHILDREN)
    assert counts == live_line.Counts(done=2, pruned=1, failed=2)
    assert counts.ended == 5  # the running one is not
    assert live_line.count([]) == live_line.Counts()


def test_the_best_is_the_best_done_point_with_the_keys_that_differ():
    # Neither the pruned point (0.99) nor the running one (0.999) counts; epochs is the same
    # everywhere, so it is left out, as in the sweep's table.
    assert live_line.best(CHILDREN) == (0.9722, "hidden_size=100 learning_rate=0.003")
    assert (
        live_line.best([child("RUNNING", "hidden_size=8"), child("FAILED", "hidden_size=0")])
        is None
    )


def test_time_left_is_the_pace_so_far_over_the_points_left():
    assert live_line.time_left(190.0, ended=19, total=36) == pytest.approx(170.0)
    assert live_line.time_left(190.0, ended=0, total=36) is None  # nothing ended: no pace yet
    assert live_line.time_left(190.0, ended=19, total=None) is None
    assert live_line.time_left(190.0, ended=3, total=3) == 0.0


def test_clock():
    assert live_line.clock(190.9) == "03:10"
    assert live_line.clock(3790) == "1:03:10"


def test_the_line_says_what_ended_of_how_many_how_long_and_the_best():
    counts = live_line.Counts(done=12, pruned=5, failed=1)
    top = (0.9722, "hidden_size=100 learning_rate=0.003")
    assert live_line.line(counts, 36, 190.0, top) == (
        "sweep 12/36 done · 5 pruned · 1 failed · 03:10 elapsed · ~03:10 left · "
        "best val 0.9722 hidden_size=100 learning_rate=0.003"
    )
    # No total known: what is done, and no time left.
    assert live_line.line(counts, None, 190.0, None) == (
        "sweep 12 done · 5 pruned · 1 failed · 03:10 elapsed"
    )
    assert live_line.line(live_line.Counts(), 4, 1.0, None) == (
        "sweep 0/4 done · 0 pruned · 0 failed · 00:01 elapsed"
    )


# ---------------------------------------------------------------- the total


@pytest.mark.parametrize(
    ("argv", "total"),
    [
        (["hidden_size=8,16", "seed=1,2,3"], 6),
        (["hidden_size=8,16", "seed=range(1,4)"], 6),
        (["seed=range(0,10,3)", "epochs=2"], 4),
        (["hidden_size=8,16", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], 2),
        (["epochs=2"], 1),  # -m without a sweep: one job
        (["hparams_search=optuna"], 20),  # the preset's n_trials
        (["hparams_search=optuna", "hydra.sweeper.n_trials=7"], 7),
        (["learning_rate=interval(0.001,0.01)"], None),  # the basic sweeper refuses it
    ],
)
def test_the_total_is_what_hydra_will_launch(argv, total):
    assert compose.total_points(compose.preflight(["-m", *argv])) == total


def test_the_total_counts_the_sweepers_params_then_the_command_line(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "defaults:\n  - config\n  - _self_\n"
        "hydra:\n  sweeper:\n    params:\n      hidden_size: 8,16,32\n"
    )
    source = ["-m", "-cd", str(tmp_path), "-cn", "mine"]
    assert compose.total_points(compose.preflight([*source, "seed=1,2"])) == 6
    # The command line's value for a key of params replaces it, as in Hydra's BasicSweeper.
    assert compose.total_points(compose.preflight([*source, "hidden_size=8,16", "seed=1,2"])) == 4


def test_no_line_off_a_terminal_nor_in_a_job_scheduled_elsewhere(monkeypatch):
    request = compose.preflight(["-m", "hidden_size=8,16"])
    assert not live_line.is_live(request)  # pytest's stdout is not a terminal
    assert live_line.job_environment(request) == {}
    monkeypatch.setenv(console.LIVE_ENV, "1")
    assert console.shows_jobs()
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")  # the job logs to its own file
    assert not console.shows_jobs()


# ---------------------------------------------------------------- the thread


class FlakyStore:
    """Children as a store would give them, failing on the reads asked for."""

    def __init__(self, failing: set[int]) -> None:
        self.reads = 0
        self.failing = failing

    def read(self) -> list[dict]:
        self.reads += 1
        if self.reads in self.failing:
            raise ConnectionError("the store is away")
        return CHILDREN[: self.reads]


def test_a_failing_store_never_stops_the_line_and_the_stop_leaves_no_thread(monkeypatch):
    monkeypatch.setattr(live_line, "POLL_S", 0.01)
    store = FlakyStore(failing={2, 3, 4})
    shown: list[str] = []
    line = live_line.Watch(store.read, 6, shown.append)
    line.start()
    deadline = time.monotonic() + 10
    while store.reads < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    line.stop(last_look=True)
    assert "sweep-live-line" not in [t.name for t in threading.enumerate()]
    assert shown[0].startswith("sweep 0/6 done · 0 pruned · 0 failed · 00:00 elapsed")
    # While the store failed, the line kept what it knew: one point done, then more.
    assert all(text.startswith("sweep 1/6 done") for text in shown[2:5])
    assert shown[-1].startswith("sweep 2/6 done · 1 pruned · 2 failed")
    count = len(shown)
    time.sleep(0.05)
    assert len(shown) == count  # nothing is drawn after the stop


def test_a_stop_after_an_error_draws_nothing_more(monkeypatch):
    monkeypatch.setattr(live_line, "POLL_S", 60.0)
    shown: list[str] = []
    reads: list[int] = []
    line = live_line.Watch(lambda: reads.append(1) or [], None, shown.append)
    line.start()
    line.stop(last_look=False)  # Ctrl-C, an error: the store is not read again
    assert shown == ["sweep 0 done · 0 pruned · 0 failed · 00:00 elapsed"] and reads == []
    assert "sweep-live-line" not in [t.name for t in threading.enumerate()]


# ---------------------------------------------------------------- end to end

JOB_LINES = re.compile(r"\[job \d+\] (start|done|pruned)")


@pytest.mark.slow
def test_a_sweep_in_a_terminal_shows_one_live_line_instead_of_its_jobs_lines(tmp_path):
    """Three points, two of them hopeless (tests/test_sweep_pruning.py: asha prunes them at
    epoch 2), on the basic launcher: in this process, through the same console."""
    uri = sqlite_uri(tmp_path)
    code, raw = run_in_terminal(
        "train",
        "-m",
        "learning_rate=0.01,3e-05,3e-05",
        "prune=asha",
        "prune.grace_epochs=2",
        "epochs=4",
        "hidden_size=8",
        "tracking.log_model=false",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert code == 0, raw
    assert "\r\x1b[2Ksweep 0/3 done" in raw  # redrawn in place
    last = final_live_line(raw)
    assert last.startswith("sweep 1/3 done · 2 pruned · 0 failed · "), last
    assert re.search(r"~00:00 left · best val 0\.\d{4} learning_rate=0\.01$", last), last
    assert not JOB_LINES.search(raw), raw
    screen = visible_lines(raw)
    assert sum(line == last for line in screen) == 1  # the final state, printed once
    assert screen.index(last) < next(i for i, s in enumerate(screen) if "Sweep results" in s)
    assert "\x1b[?25h" in raw[raw.rindex("elapsed") :]  # the cursor shown again


@pytest.mark.slow
def test_joblib_workers_leave_their_lines_to_the_live_line_but_a_failure(tmp_path):
    uri = sqlite_uri(tmp_path)
    code, raw = run_in_terminal(
        "train",
        "-m",
        "hidden_size=8,0,16",
        *TINY,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert code == 1, raw
    last = final_live_line(raw)
    assert last.startswith("sweep 2/3 done · 0 pruned · 1 failed · "), last
    assert not JOB_LINES.search(raw), raw
    screen = visible_lines(raw)
    failed = [line for line in screen if line.startswith("[job 1] FAILED")]
    assert len(failed) == 1 and "hidden_size=0 is invalid" in failed[0], raw


@pytest.mark.slow
def test_ctrl_c_ends_the_live_line_then_the_sweep(tmp_path):
    uri = sqlite_uri(tmp_path)
    code, raw = run_in_terminal(
        "train",
        "-m",
        "hidden_size=8,16",
        "epochs=200",
        "tracking.log_model=false",
        f"tracking.uri={uri}",
        cwd=tmp_path,
        interrupt_on=r"00:(0[4-9]|[1-5]\d) elapsed",  # 4 s in, or the first second shown after
    )
    assert code == 130, raw
    screen = visible_lines(raw)
    last = final_live_line(raw)
    assert last.startswith("sweep 0/2 done"), last
    after = screen[screen.index(last) + 1 :]
    said = [line for line in after if line.strip()]
    assert len(said) == 1, raw
    named = r"error: interrupted: sweep (\w+) is KILLED( with 1 run\(s\) unfinished \(\w+\))?; "
    assert re.fullmatch(named + r"go on with: lstm-digits resume \1", said[0]), raw
    assert "Traceback" not in raw and "\x1b[?25h" in raw[raw.rindex("elapsed") :]


@pytest.mark.slow
def test_a_piped_sweep_prints_its_jobs_lines_and_no_live_line(tmp_path):
    uri = sqlite_uri(tmp_path)
    result = run_cli(
        "train",
        "-m",
        "hidden_size=8,16",
        *TINY,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"tracking.uri={uri}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "elapsed" not in result.stdout and "\x1b" not in result.stdout
    for job in ("0", "1"):
        assert f"[job {job}] start " in result.stdout
        assert re.search(rf"\[job {job}\] done  val_accuracy=", result.stdout)
