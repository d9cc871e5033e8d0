"""A sweep you can watch: one live line on a terminal while its jobs run.

    sweep 12/36 done · 5 pruned · 1 failed · 03:10 elapsed · ~04:50 left · best val 0.9722
    hidden_size=100 learning_rate=0.003                                      (one line, cut)

`watching` goes around a sweep's launch. On a terminal, a thread reads the sweep's children
from the store every `POLL_S` seconds (`tracking.progress`) and redraws the line
(`console.live_line`); what is printed meanwhile appears above it, and the line stays printed
as it last was. The jobs that share the terminal (the basic launcher's, in this process;
joblib's workers) then leave their start and end to the line (`shows_jobs`): a failed job
still prints its line. Anywhere else (a pipe, a file, CI, an sbatch log, TERM=dumb) there is
no line and no thread: the jobs print their plain lines.

Counting, from the children's status: FINISHED is done, or pruned with the pruning tag;
FAILED and KILLED are failed; RUNNING is under way. The best val is the best done point's.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lstm_cli.sweeps import summary
from lstm_cli.views import console

if TYPE_CHECKING:
    from lstm_cli.config.compose import Request

POLL_S = 2.0  # how often the store is read (one search)
JOIN_S = 5.0  # how long a stop waits for a read under way (then leaves it: it shows nothing)


@dataclass(frozen=True)
class Counts:
    """The sweep's points that have ended, by how."""

    done: int = 0
    pruned: int = 0
    failed: int = 0

    @property
    def ended(self) -> int:
        return self.done + self.pruned + self.failed


def _is_done(record: dict[str, Any]) -> bool:
    return record["status"] == "FINISHED" and not record["pruned"]


def count(records: list[dict[str, Any]]) -> Counts:
    """`records` (as `tracking.progress.Children.read` gives them) counted by how they ended."""
    return Counts(
        done=sum(1 for r in records if _is_done(r)),
        pruned=sum(1 for r in records if r["status"] == "FINISHED" and r["pruned"]),
        failed=sum(1 for r in records if r["status"] in ("FAILED", "KILLED")),
    )


def best(records: list[dict[str, Any]]) -> tuple[float, str] | None:
    """The best val accuracy of the done points, with its overrides (the keys that differ
    between the points, as in the sweep's table); None before a point is done."""
    scored = [r for r in records if _is_done(r) and "val_accuracy" in r["metrics"]]
    if not scored:
        return None
    top = max(scored, key=lambda r: r["metrics"]["val_accuracy"])
    return top["metrics"]["val_accuracy"], summary.label(
        top["overrides"], summary.swept_keys(records)
    )


def time_left(elapsed: float, ended: int, total: int | None) -> float | None:
    """The time the points not ended yet should take at the pace so far; None if unknown."""
    if total is None or ended == 0:
        return None
    return elapsed / ended * max(0, total - ended)


def clock(seconds: float) -> str:
    """03:10, or 1:03:10 past an hour."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def line(counts: Counts, total: int | None, elapsed: float, top: tuple[float, str] | None) -> str:
    """The live line's text (`top`: `best`'s)."""
    done = f"{counts.done}/{total}" if total is not None else str(counts.done)
    parts = [
        f"sweep {done} done",
        f"{counts.pruned} pruned",
        f"{counts.failed} failed",
        f"{clock(elapsed)} elapsed",
    ]
    left = time_left(elapsed, counts.ended, total)
    if left is not None:
        parts.append(f"~{clock(left)} left")
    if top is not None:
        parts.append(f"best val {top[0]:.4f} {top[1]}")
    return " · ".join(parts)


def is_live(request: Request) -> bool:
    """Whether the command line of `request` runs a sweep whose live line shows: on a
    terminal only."""
    return bool(request.multirun and request.cfg is not None and console.console.is_interactive)


def job_environment(request: Request) -> dict[str, str]:
    """What the jobs' environment gets while the sweep runs: set before the joblib workers
    start (they keep the environment they started with)."""
    return {console.LIVE_ENV: "1"} if is_live(request) else {}


class Watch:
    """The live line's thread: read the children, count, draw; every `POLL_S` until stopped.
    Nothing it does escapes it (a store away, a line that cannot be drawn): the sweep goes on.

    Args:
        read: the children so far (`tracking.progress.Children.read`); it may raise.
        total: the sweep's points, if known.
        show: draws the line's text (`console.live_line`'s).
    """

    def __init__(
        self,
        read: Callable[[], list[dict[str, Any]]],
        total: int | None,
        show: Callable[[str], None],
    ) -> None:
        self.read = read
        self.total = total
        self.show = show
        self.records: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self._stopped = threading.Event()
        self._drawing = threading.Lock()  # the thread draws nothing once `stop` has begun
        self._thread = threading.Thread(target=self._loop, name="sweep-live-line", daemon=True)

    def text(self) -> str:
        elapsed = time.monotonic() - self.started
        return line(count(self.records), self.total, elapsed, best(self.records))

    def _read(self) -> None:
        """The children as they are now; after a failed read (the store away or busy), as
        read last: the next read tries again."""
        with contextlib.suppress(Exception):
            self.records = self.read()

    def _draw(self) -> None:
        with contextlib.suppress(Exception):
            self.show(self.text())

    def _loop(self) -> None:
        while not self._stopped.wait(POLL_S):
            self._read()
            with self._drawing:
                if not self._stopped.is_set():
                    self._draw()

    def start(self) -> None:
        self._draw()
        self._thread.start()

    def stop(self, last_look: bool) -> None:
        """Stop the thread (a read under way is left to end alone: it draws nothing); with
        `last_look`, read and draw once more, from the caller's thread."""
        with self._drawing:
            self._stopped.set()
        self._thread.join(JOIN_S)
        if last_look:
            self._read()
            self._draw()


@contextmanager
def watching(request: Request, uri: str, parent_id: str) -> Iterator[None]:
    """Around the launch of the sweep of `request` whose parent run is `parent_id` in the store
    at `uri`: its live line, on a terminal (nothing elsewhere). The line ends before the block
    does, whatever ends it; after a launch that returned, it shows the final counts."""
    if not is_live(request):
        yield
        return
    from lstm_cli.config import compose
    from lstm_cli.tracking.children import Children

    total = compose.total_points(request)
    with console.live_line() as show:
        watch = Watch(Children(uri, parent_id).read, total, show)
        watch.start()
        launched = False
        try:
            yield
            launched = True
        finally:
            watch.stop(last_look=launched)
