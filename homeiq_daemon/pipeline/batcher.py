"""Batcher: collects encoded lines; hands a batch on at ``size`` lines or ``flush_interval_s`` after the
first line entered it, whichever comes first. Never blocks: a full batch goes to the delivery loop, which
keeps a bounded number in memory and sends the rest to the disk spool.

A batch also carries, per Home Assistant entity, the newest ``last_updated`` in it and the newest of its
live lines: the watermarks (pipeline/watermarks.py) commit them once the batch is safely in the sink.
``Batch`` itself lives in model.py: delivery and the sinks take it without importing the pipeline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from homeiq_daemon.model import Batch

__all__ = ["Batch", "Batcher"]


class Batcher:
    def __init__(self, size: int, flush_interval_s: float, on_batch: Callable[[Batch], None]) -> None:
        self.size = size
        self.flush_interval_s = flush_interval_s
        self._on_batch = on_batch
        self._lines: list[str] = []
        self._marks: dict[str, int] = {}
        self._live_max_ns: int | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._lines)

    def add(self, line: str, entity_id: str | None = None, time_ns: int = 0, *, live: bool = False) -> None:
        """Add one encoded line; ``entity_id`` and ``time_ns`` (its ``last_updated``) feed the watermarks."""
        if entity_id is not None:
            marks = self._marks
            if time_ns > marks.get(entity_id, -1):
                marks[entity_id] = time_ns
            if live and (self._live_max_ns is None or time_ns > self._live_max_ns):
                self._live_max_ns = time_ns
        lines = self._lines
        lines.append(line)
        if len(lines) == 1:
            self._timer = asyncio.get_running_loop().call_later(self.flush_interval_s, self.flush)
        if len(lines) >= self.size:
            self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        batch = Batch(self._lines, marks=self._marks, live_max_ns=self._live_max_ns)
        self._lines = []
        self._marks = {}
        self._live_max_ns = None
        self._on_batch(batch)
