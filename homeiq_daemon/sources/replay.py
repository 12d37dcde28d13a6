"""Replay source: feeds recorded ``state_changed`` events from a JSONL file into the pipeline.

Each line is one WebSocket frame as HA sent it (an ``event`` message, or a coalesced array of them), a
bare event, or the event's ``data``. Bad lines are logged, counted and skipped. With ``speed`` 0 the file
is fed as fast as the sink takes it (the replay waits when the in-memory queue is full and InfluxDB is up,
so a long file does not spill to the spool); otherwise the recorded pacing is kept, scaled by ``speed``.
With ``shift_to_now`` all timestamps move by the same amount so the last event lands at the present; with
``shift_to_ns`` it lands at that fixed time instead, so a second replay of the same file writes the very same
points (a demo run twice adds nothing). Progress (lines of the file, rate, ETA) is reported on the stats'
progress board, on a terminal and in the log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

from homeiq_daemon.errors import ConfigError, ProtocolError
from homeiq_daemon.model import EntityState, StateChange, TimestampOutOfRange, iso_to_ns, ns_to_iso, time_ns_in_range
from homeiq_daemon.pipeline.core import Pipeline
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.progress import Progress
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sources.homeassistant import messages as hamessages

log = get_logger("homeiq.replay")

MAX_LINE_BYTES = 64 * 1024 * 1024


def iter_changes(path: Path, stats: Stats | None = None) -> Iterator[StateChange]:
    """Changes in file order; malformed lines are skipped (and counted in ``stats``)."""
    for _, change in _numbered_changes(path, stats):
        yield change


def count_lines(path: Path) -> int:
    lines = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            lines += chunk.count(b"\n")
    return lines


def _numbered_changes(path: Path, stats: Stats | None) -> Iterator[tuple[int, StateChange]]:
    decoder = hamessages.StateChangedDecoder()
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line or line.startswith(b"#"):
                continue
            fast = decoder.decode(line, "replay") if len(line) <= MAX_LINE_BYTES else None
            if fast is not None:
                for _, change in fast:
                    yield number, change
                continue
            try:
                if len(line) > MAX_LINE_BYTES:
                    raise ProtocolError("line too long")
                for message in hamessages.decode_frame(line):
                    data = hamessages.state_changed_data(message)
                    if data is None:
                        continue
                    yield number, hamessages.parse_state_changed(data, "replay")
            except ProtocolError as exc:
                if stats is not None:
                    stats.malformed_messages["replay"] += 1
                log.warning("replay.line_skipped", file=str(path), line=number, reason=str(exc)[:200])


def _shift(state: EntityState | None, delta_ns: int) -> EntityState | None:
    """The state moved by ``delta_ns``; raises TimestampOutOfRange when that leaves the storable range."""
    if state is None or not delta_ns:
        return state
    updated = state.last_updated_ns + delta_ns
    if not time_ns_in_range(updated):
        raise TimestampOutOfRange(f"{state.entity_id}: shifted last_updated leaves the storable years 1677-2262")
    try:
        changed = ns_to_iso(iso_to_ns(state.last_changed) + delta_ns)
    except ValueError:
        changed = ns_to_iso(updated)
    return dataclasses.replace(state, last_updated=ns_to_iso(updated), last_changed=changed, last_updated_ns=updated)


class ReplaySource:
    def __init__(
        self,
        path: Path,
        pipeline: Pipeline,
        stats: Stats,
        *,
        speed: float = 0.0,
        shift_to_now: bool = False,
        shift_to_ns: int | None = None,
    ) -> None:
        if not path.is_file():
            raise ConfigError(f"replay.path: {path} is not a readable file")
        self.path = path
        self._pipeline = pipeline
        self._stats = stats
        self.speed = speed
        self.shift_to_now = shift_to_now
        self.shift_to_ns = shift_to_ns
        self.done = asyncio.Event()
        self.replayed = 0

    def _delta_ns(self) -> int:
        if self.shift_to_ns is None and not self.shift_to_now:
            return 0
        last = 0
        for change in iter_changes(self.path):
            if change.new_state is not None:
                last = max(last, change.new_state.last_updated_ns)
        target = self.shift_to_ns if self.shift_to_ns is not None else time.time_ns()
        return target - last if last else 0

    async def run(self) -> None:
        delta = self._delta_ns()
        first_event_ns: int | None = None
        started = time.monotonic()
        log.info(
            "replay.started", file=str(self.path), speed=self.speed, shift_ns=delta, shift_to_now=self.shift_to_now
        )
        progress = Progress("replay", total=count_lines(self.path), unit="lines", board=self._stats.progress)
        for count, (line, change) in enumerate(_numbered_changes(self.path, self._stats), start=1):
            if delta:
                try:
                    change = StateChange(change.entity_id, _shift(change.new_state, delta), None, change.origin)
                except TimestampOutOfRange as exc:
                    self._stats.malformed_messages["replay"] += 1
                    log.warning("replay.event_skipped", file=str(self.path), reason=str(exc)[:200])
                    continue
            if self.speed > 0 and change.new_state is not None:
                event_ns = change.new_state.last_updated_ns
                if first_event_ns is None:
                    first_event_ns = event_ns
                due = started + (event_ns - first_event_ns) / 1e9 / self.speed
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            elif count % 256 == 0:
                await self._pipeline.wait_for_room()
                await asyncio.sleep(0)  # let the writer and the HTTP server run
            self._pipeline.submit(change)
            self.replayed = count
            progress.update(line, detail=f"{count:,} events")
        self._pipeline.flush()
        progress.update(progress.total or 0)
        progress.finish()
        log.info(
            "replay.finished", file=str(self.path), events=self.replayed, seconds=round(time.monotonic() - started, 2)
        )
        self.done.set()
