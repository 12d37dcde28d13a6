"""What every point sink offers the delivery loop (InfluxDB writer, embedded history store)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class WriteResult:
    written: int
    rejected: int


class BatchWriter(Protocol):
    @property
    def describe(self) -> str: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ensure_database(self) -> None: ...

    async def ping(self) -> bool: ...

    async def write(self, body: bytes, points: int, *, gzipped: bytes | None = None) -> WriteResult:
        """Write a batch. Raises TransientSinkError (try later) or SinkAuthError; content rejections are
        handled inside (isolated and dead-lettered) and reported in the result."""
        ...
