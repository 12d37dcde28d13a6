"""Batcher: collects encoded lines; hands a batch on at ``size`` lines or ``flush_interval_s`` after the
first line entered it, whichever comes first. Never blocks: a full batch goes to the delivery loop, which
keeps a bounded number in memory and sends the rest to the disk spool."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Batch:
    lines: list[str]
    created_at: float = field(default_factory=time.monotonic)
    _body: bytes | None = None

    @property
    def points(self) -> int:
        return len(self.lines)

    def body(self) -> bytes:
        if self._body is None:
            self._body = ("\n".join(self.lines) + "\n").encode()
        return self._body


class Batcher:
    def __init__(self, size: int, flush_interval_s: float, on_batch: Callable[[Batch], None]) -> None:
        self.size = size
        self.flush_interval_s = flush_interval_s
        self._on_batch = on_batch
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._lines)

    def add(self, line: str) -> None:
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
        batch = Batch(self._lines)
        self._lines = []
        self._on_batch(batch)
