"""Progress of long work (a replay, a spool drain, a history import or backfill): rate, ETA, where it shows.

One ``Progress`` per piece of work. Callers report what is done (``advance``/``update``), optionally the
total when it is known, and ``finish``. It shows up in three places:

* on a terminal (the stream is a tty): one line redrawn in place at most every ``redraw_s``
  (``replay  1,234/5,000 events  2,345/s  ETA 0:02``), ended with a newline when the work finishes;
* otherwise, in the log (journald, JSON): a structured ``progress`` line every ``log_every_s`` and a
  ``progress.done`` line at the end, with ``task``, ``done``, ``total``, ``rate_per_s`` and ``eta_s`` as fields;
* on a ``ProgressBoard`` (the daemon keeps one in its stats): the status page and ``homeiq status`` list
  the work in progress and the last finished ones.

The rate is a moving one (an exponentially weighted average of recent samples), so an ETA reacts to a
sink that slows down instead of averaging over the whole run. Pure bookkeeping plus a write to a stream:
no threads, no tasks; the clock is injectable for tests.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from homeiq_daemon.runtime.logs import get_logger

log = get_logger("homeiq.progress")

Clock = Callable[[], float]

# A rate sample covers at least this long, so a burst of tiny updates does not make the rate jitter.
_SAMPLE_S = 0.5
_RATE_WEIGHT = 0.3  # weight of the newest sample in the moving rate


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    task: str
    unit: str
    done: int
    total: int | None
    rate_per_s: float | None
    eta_s: float | None
    elapsed_s: float
    finished: bool
    detail: str | None
    started_at: float  # wall time

    @property
    def fraction(self) -> float | None:
        if self.total is None or self.total <= 0:
            return None
        return min(1.0, self.done / self.total)

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "unit": self.unit,
            "done": self.done,
            "total": self.total,
            "fraction": None if self.fraction is None else round(self.fraction, 4),
            "rate_per_s": None if self.rate_per_s is None else round(self.rate_per_s, 1),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "elapsed_s": round(self.elapsed_s, 1),
            "finished": self.finished,
            "detail": self.detail,
            "started_at": round(self.started_at, 3),
        }


class ProgressBoard:
    """Work in progress and the last few finished, by task name (bounded)."""

    def __init__(self, keep_finished: int = 8) -> None:
        self._items: OrderedDict[str, Progress] = OrderedDict()
        self._keep_finished = keep_finished

    def add(self, progress: Progress) -> None:
        self._items.pop(progress.task, None)
        self._items[progress.task] = progress
        self.trim()

    def trim(self) -> None:
        finished = [name for name, item in self._items.items() if item.finished]
        for name in finished[: max(0, len(finished) - self._keep_finished)]:
            del self._items[name]

    def get(self, task: str) -> Progress | None:
        return self._items.get(task)

    def snapshots(self) -> list[ProgressSnapshot]:
        return [item.snapshot() for item in self._items.values()]

    def active(self) -> list[ProgressSnapshot]:
        return [snap for snap in self.snapshots() if not snap.finished]


def format_count(value: float) -> str:
    if value >= 10_000_000:
        return f"{value / 1e6:,.1f}M"
    return f"{value:,.0f}"


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def render_line(snap: ProgressSnapshot, width: int = 100) -> str:
    """``replay  [#####-----]  52%  1,234/2,345 events  2,345/s  ETA 0:02`` (no trailing newline)."""
    parts = [snap.task]
    fraction = snap.fraction
    if fraction is not None:
        cells = 20
        filled = int(fraction * cells)
        parts.append(f"[{'#' * filled}{'-' * (cells - filled)}] {fraction * 100:3.0f}%")
        parts.append(f"{format_count(snap.done)}/{format_count(snap.total or 0)} {snap.unit}")
    else:
        parts.append(f"{format_count(snap.done)} {snap.unit}")
    if snap.rate_per_s is not None:
        parts.append(f"{format_count(snap.rate_per_s)}/s")
    if snap.finished:
        parts.append(f"done in {format_duration(snap.elapsed_s)}")
    elif snap.eta_s is not None:
        parts.append(f"ETA {format_duration(snap.eta_s)}")
    if snap.detail:
        parts.append(snap.detail)
    return "  ".join(parts)[:width]


class Progress:
    def __init__(
        self,
        task: str,
        *,
        total: int | None = None,
        unit: str = "items",
        board: ProgressBoard | None = None,
        stream: TextIO | None = None,
        terminal: bool | None = None,
        log_every_s: float = 10.0,
        redraw_s: float = 0.2,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        self.task = task
        self.unit = unit
        self.total = total
        self.done = 0
        self.detail: str | None = None
        self.finished = False
        self._clock = clock
        self._stream = stream if stream is not None else sys.stderr
        self._terminal = is_tty(self._stream) if terminal is None else terminal
        self._log_every_s = log_every_s
        self._redraw_s = redraw_s
        self._started = clock()
        self._started_wall = wall_clock()
        self._ended: float | None = None
        self._sample_at = self._started
        self._sample_done = 0
        self._rate: float | None = None
        self._logged_at = self._started
        self._drawn_at: float | None = None
        self._drawn_width = 0
        self._board = board
        if board is not None:
            board.add(self)

    # --- reporting --------------------------------------------------------------------------------

    def advance(self, amount: int = 1) -> None:
        self.update(self.done + amount)

    def update(self, done: int, *, total: int | None = None, detail: str | None = None) -> None:
        if self.finished:
            return
        self.done = max(0, done)
        if total is not None:
            self.total = total
        if detail is not None:
            self.detail = detail
        now = self._clock()
        self._sample(now)
        if self._terminal:
            if self._drawn_at is None or now - self._drawn_at >= self._redraw_s:
                self._draw(now)
        elif now - self._logged_at >= self._log_every_s:
            self._logged_at = now
            log.info("progress", **self._fields(self.snapshot()))

    def set_total(self, total: int | None) -> None:
        self.total = total

    def finish(self, detail: str | None = None) -> ProgressSnapshot:
        if self.finished:
            return self.snapshot()
        if detail is not None:
            self.detail = detail
        now = self._clock()
        self._sample(now, force=True)
        self._ended = now
        self.finished = True
        if self._board is not None:
            self._board.trim()
        snap = self.snapshot()
        if self._terminal:
            self._draw(now, final=True)
        else:
            log.info("progress.done", **self._fields(snap))
        return snap

    # --- reading ----------------------------------------------------------------------------------

    def snapshot(self) -> ProgressSnapshot:
        end = self._ended if self._ended is not None else self._clock()
        elapsed = max(0.0, end - self._started)
        rate = self._rate
        if self.finished or rate is None:
            rate = self.done / elapsed if elapsed > 0 and self.done else rate
        eta: float | None = None
        if not self.finished and self.total is not None and rate:
            eta = max(0.0, (self.total - self.done) / rate)
        return ProgressSnapshot(
            task=self.task,
            unit=self.unit,
            done=self.done,
            total=self.total,
            rate_per_s=rate,
            eta_s=eta,
            elapsed_s=elapsed,
            finished=self.finished,
            detail=self.detail,
            started_at=self._started_wall,
        )

    # --- internals --------------------------------------------------------------------------------

    def _sample(self, now: float, *, force: bool = False) -> None:
        span = now - self._sample_at
        if span < _SAMPLE_S and not (force and span > 0):
            return
        if span <= 0:
            return
        rate = (self.done - self._sample_done) / span
        self._rate = rate if self._rate is None else _RATE_WEIGHT * rate + (1 - _RATE_WEIGHT) * self._rate
        self._sample_at = now
        self._sample_done = self.done

    def _draw(self, now: float, *, final: bool = False) -> None:
        self._drawn_at = now
        line = render_line(self.snapshot())
        pad = " " * max(0, self._drawn_width - len(line))
        self._drawn_width = len(line)
        try:
            self._stream.write(f"\r{line}{pad}" + ("\n" if final else ""))
            self._stream.flush()
        except (OSError, ValueError):  # a closed terminal must not stop the work it reports on
            self._terminal = False

    @staticmethod
    def _fields(snap: ProgressSnapshot) -> dict[str, Any]:
        fields = snap.as_dict()
        del fields["started_at"], fields["finished"]
        if fields["detail"] is None:
            del fields["detail"]
        return fields


def is_tty(stream: TextIO) -> bool:
    """True for a terminal; False for files, pipes, closed streams and objects without ``isatty``."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
