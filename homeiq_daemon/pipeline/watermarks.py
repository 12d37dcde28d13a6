"""Watermarks: up to when each Home Assistant entity's history is safely in the sink, kept across restarts.

A batch counts once the sink acknowledged it (InfluxDB or the embedded store answered) or it was appended
to the disk spool. Batches can be acknowledged out of order (a batch that overflows to the spool may land
before one still waiting in memory), so marks are committed in the order batches were handed on: a batch's
marks count only when every earlier batch is acknowledged too. What is still in memory is never covered, so
after a SIGKILL or a power cut the next start heals it from HA's recorder.

Two marks per run:

* ``entities``: the newest ``last_updated`` committed per entity;
* ``safe_until_ns``: the newest ``last_updated`` of a committed live batch. HA fires state changes in
  ``last_updated`` order, so every live change older than that is committed: an entity that was quiet all
  along needs no backfill from its own, older mark.

While a backfill for an entity is planned or running, its **floor** (where the backfill starts) is what is
saved, so a kill during a backfill starts it again from the same place.

The file (``watermarks.json`` in the state directory) is small and written rarely: at most every
``save_interval_s`` when something changed, once soon after the first commit of a fresh state directory,
and at stop; atomically (temporary file, fsync, rename). Only marks above ``safe_until_ns`` are saved.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson

from homeiq_daemon.model import Batch
from homeiq_daemon.runtime.logs import get_logger

log = get_logger("homeiq.watermarks")

FILE_NAME = "watermarks.json"
FORMAT_VERSION = 1
# Batches handed on but not yet acknowledged, beyond which the oldest is given up (a disk that refuses
# every write for hours drops batches; their marks must not pin memory).
MAX_OUTSTANDING = 100_000


class Watermarks:
    def __init__(self, path: Path, *, save_interval_s: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.path = path
        self.save_interval_s = save_interval_s
        self._clock = clock
        self._marks: dict[str, int] = {}
        self._floors: dict[str, int] = {}
        self.safe_until_ns: int | None = None
        self.previous_saved_at_ns: int | None = None  # wall time of the last save of the previous run
        self.loaded = False
        self._outstanding: deque[tuple[int, Batch | None]] = deque()
        self._next_seq = 0
        self._acked: set[int] = set()
        self._barriers: list[tuple[int, Callable[[], None]]] = []
        self._dirty = False
        self._last_save: float | None = None
        self.saves = 0

    # --- loading ---------------------------------------------------------------------------------

    def load(self) -> None:
        """Read the file of the previous run; a missing or damaged file means nothing is known."""
        try:
            raw = orjson.loads(self.path.read_bytes())
            entities = raw["entities"]
            if raw.get("version") != FORMAT_VERSION or not isinstance(entities, dict):
                raise ValueError("unknown format")
            self._marks = {str(k): int(v) for k, v in entities.items()}
            self._floors = {str(k): int(v) for k, v in raw.get("floors", {}).items()}
            safe = raw.get("safe_until_ns")
            self.safe_until_ns = int(safe) if safe is not None else None
            self.previous_saved_at_ns = int(raw["saved_at_ns"])
            self.loaded = True
            self._last_save = self._clock()  # the file is there: the first save of this run can wait
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            log.warning("watermarks.unreadable", path=str(self.path), error=str(exc)[:200], action="starting afresh")

    # --- what the backfill asks ------------------------------------------------------------------

    def start_for(self, entity_id: str) -> int | None:
        """Where the history of ``entity_id`` may have a hole (ns), or None when nothing is known."""
        floor = self._floors.get(entity_id)
        mark = self._marks.get(entity_id)
        safe = self.safe_until_ns
        best = max(mark, safe) if mark is not None and safe is not None else mark if mark is not None else safe
        if floor is not None:
            return floor if best is None else min(floor, best)
        return best

    def set_floors(self, floors: dict[str, int]) -> None:
        """A backfill starts at these marks: keep them as the saved marks until it is committed."""
        for entity_id, start_ns in floors.items():
            known = self._floors.get(entity_id)
            self._floors[entity_id] = start_ns if known is None else min(known, start_ns)
        self._dirty = True

    def clear_floors(self, entity_ids: Iterable[str], floors: dict[str, int]) -> None:
        """The backfill from ``floors`` is committed; a floor set lower meanwhile stays."""
        for entity_id in entity_ids:
            if self._floors.get(entity_id) == floors.get(entity_id):
                del self._floors[entity_id]
        self._dirty = True

    def when_committed(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once every batch handed on so far is committed."""
        last = self._next_seq - 1
        if not self._outstanding or self._outstanding[0][0] > last:
            callback()
        else:
            self._barriers.append((last, callback))

    # --- batches ---------------------------------------------------------------------------------

    def track(self, batch: Batch) -> None:
        """A batch is handed on to delivery (in order)."""
        batch.seq = self._next_seq
        self._next_seq += 1
        self._outstanding.append((batch.seq, batch))
        if len(self._outstanding) > MAX_OUTSTANDING:
            seq, _ = self._outstanding.popleft()  # given up: its points were dropped, counted elsewhere
            self._acked.discard(seq)
            self._commit()

    def acknowledged(self, batch: Batch) -> None:
        """The sink (or the spool) has the batch."""
        if batch.seq < 0:
            return  # not tracked (a batch from a part without watermarks)
        self._acked.add(batch.seq)
        if self._outstanding and self._outstanding[0][0] == batch.seq:
            self._commit()

    def _commit(self) -> None:
        outstanding = self._outstanding
        acked = self._acked
        marks = self._marks
        while outstanding and outstanding[0][0] in acked:
            seq, batch = outstanding.popleft()
            acked.discard(seq)
            if batch is None:
                continue
            for entity_id, ts in batch.marks.items():
                if ts > marks.get(entity_id, -1):
                    marks[entity_id] = ts
            live = batch.live_max_ns
            if live is not None and (self.safe_until_ns is None or live > self.safe_until_ns):
                self.safe_until_ns = live
            self._dirty = True
        if self._barriers:
            head = outstanding[0][0] if outstanding else self._next_seq
            due = [cb for last, cb in self._barriers if last < head]
            if due:
                self._barriers = [(last, cb) for last, cb in self._barriers if last >= head]
                for callback in due:
                    callback()

    # --- saving ----------------------------------------------------------------------------------

    def maybe_save(self) -> bool:
        """Save when due: soon after the first commit of a fresh state dir, then at most every interval."""
        if not self._dirty:
            return False
        if self._last_save is not None and self._clock() - self._last_save < self.save_interval_s:
            return False
        self.save()
        return True

    def save(self) -> None:
        """Write the file atomically. A failing disk is logged, never fatal (the marks stay in memory)."""
        # A mark at or below safe_until_ns adds nothing (start_for takes the larger of the two), and in a steady
        # state that is every mark: the file stays a few hundred bytes instead of one entry per entity.
        safe = self.safe_until_ns
        entities = dict(self._marks) if safe is None else {k: v for k, v in self._marks.items() if v > safe}
        body = orjson.dumps(
            {
                "version": FORMAT_VERSION,
                "saved_at_ns": time.time_ns(),
                "safe_until_ns": self.safe_until_ns,
                "entities": entities,
                "floors": self._floors,
            }
        )
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("watermarks.save_failed", path=str(self.path), error=str(exc))
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        self._dirty = False
        self._last_save = self._clock()
        self.saves += 1

    def __len__(self) -> int:
        return len(self._marks)
