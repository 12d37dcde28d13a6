"""Writes that overlap on the metadata store's one writer connection (real SQLite file)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from homeiq_daemon.metadata.registry import Area
from homeiq_daemon.metadata.store import MetadataStore


async def test_overlapping_transactions_all_commit(tmp_path: Path) -> None:
    """A registry update and other writes may start while a flush is inside its transaction: each one waits
    its turn instead of failing with "cannot start a transaction within a transaction"."""
    store = MetadataStore(tmp_path / "homeiq.db")
    await store.start()
    try:
        lists = [[Area(f"area_{n}_{i}", f"Area {n}.{i}") for i in range(50)] for n in range(8)]
        results = await asyncio.gather(*(store.replace_areas(areas) for areas in lists), return_exceptions=True)
        assert [r for r in results if isinstance(r, BaseException)] == []
        # The last list to commit is what the store holds, whole: no write was lost half-way.
        stored = {row["area_id"] for row in await store.areas(limit=1000)}
        assert stored == {a.area_id for a in lists[-1]}
    finally:
        await store.close()
