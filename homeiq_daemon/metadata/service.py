"""The metadata store's lifecycle as the app runs it: open, flush changed states periodically, stop.

Start (after the pipeline): open the store. The pipeline feeds it latest states (``store.note_state`` is a
pipeline listener); ``run_flush`` writes them every ``state_flush_interval_s`` in one transaction (SD-card
wear: not per event). Stop (after the sources and the delivery loop): a last flush, then the store closes.
The registry sync (sources/homeassistant/) and the HTTP API (api/) use the same store.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from homeiq_daemon.config import MetadataSettings
from homeiq_daemon.metadata.store import MetadataStore
from homeiq_daemon.runtime.logs import get_logger

log = get_logger("homeiq.metadata")


class MetadataService:
    def __init__(self, db_path: Path, settings: MetadataSettings) -> None:
        self.settings = settings
        self.store = MetadataStore(db_path)
        self.flushes = 0
        self.flush_failures = 0

    async def start(self) -> None:
        await self.store.start()

    async def run_flush(self) -> None:
        """Write the changed states every ``state_flush_interval_s``; a failing flush is logged and retried."""
        while True:
            await asyncio.sleep(self.settings.state_flush_interval_s)
            await self.flush()

    async def flush(self) -> bool:
        try:
            await self.store.flush_states()
        except sqlite3.Error as exc:  # disk full or broken: the states stay pending for the next flush
            self.flush_failures += 1
            log.error("metadata.flush_failed", error=str(exc)[:300], failures=self.flush_failures)
            return False
        self.flushes += 1
        return True

    async def stop(self) -> None:
        try:
            await self.store.flush_states(final=True)
        except (sqlite3.Error, RuntimeError) as exc:
            log.error("metadata.final_flush_failed", error=str(exc)[:300])
        await self.store.close()
