"""The spool against a real influxd: a damaged spool is recovered at start, a full spool drops by policy and
keeps running, and draining alternates with live batches."""

from __future__ import annotations

import asyncio
import errno
import os
import struct
import zlib
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from homeiq_daemon.app import App
from homeiq_daemon.config import Settings
from homeiq_daemon.delivery.loop import Delivery
from homeiq_daemon.delivery.spool import FLAG_GZIP, HEADER_SIZE, MAGIC, Spool
from homeiq_daemon.model import Batch
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sinks.base import WriteResult
from homeiq_daemon.sinks.influx.deadletter import DeadLetters
from homeiq_daemon.sinks.influx.writer import InfluxWriter
from tests.support.influxd import InfluxServer, free_port
from tests.support.outage import caught_up, outage_settings, stop_app, wait_until

pytestmark = [pytest.mark.influxd]

MiB = 1024 * 1024
BASE_NS = 1_790_000_000_000_000_000


def lines(batch_no: int, count: int, *, noise: int = 0) -> list[str]:
    """``count`` points of one numbered batch; ``noise`` random hex characters each (incompressible)."""
    out = []
    for i in range(count):
        blob = f',blob="{os.urandom(noise // 2).hex()}"' if noise else ""
        out.append(f"spooltest,domain=sensor,entity_id=b{batch_no} value={i}{blob} {BASE_NS + batch_no * 10_000 + i}")
    return out


def stored_batches(server: InfluxServer, db: str) -> dict[int, int]:
    """Points per batch number in InfluxDB."""
    series = server.query('SELECT count("value") FROM "spooltest" GROUP BY "entity_id"', db)
    return {int(s["tags"]["entity_id"][1:]): s["values"][0][1] for s in series}


def record_offsets(path: Path) -> list[int]:
    data = path.read_bytes()
    offsets, pos = [], 0
    while pos < len(data):
        offsets.append(pos)
        pos += HEADER_SIZE + int.from_bytes(data[pos + 4 : pos + 8], "big")
    return offsets


async def test_damaged_spool_starts_recovers_valid_records_and_reports_damage(
    tmp_path: Path, influxd_server: InfluxServer, influx_db: str
) -> None:
    state = tmp_path / "state"
    # Three segments of four records (each session appends to a new segment).
    for segment in range(3):
        spool = Spool(state / "spool", max_bytes=64 * MiB, segment_bytes=8 * MiB)
        for n in range(4):
            body = ("\n".join(lines(segment * 4 + n, 50)) + "\n").encode()
            spool.append(body, 50)
        spool.close()
    seg1, seg2, seg3 = sorted((state / "spool").glob("*.seg"))
    with seg1.open("r+b") as fh:  # a zeroed length prefix in the middle of the first segment (record 1)
        fh.seek(record_offsets(seg1)[1] + 4)
        fh.write(bytes(4))
    with seg2.open("r+b") as fh:  # one flipped bit in the checksum of record 6
        at = record_offsets(seg2)[2] + HEADER_SIZE - 2
        fh.seek(at)
        byte = fh.read(1)[0]
        fh.seek(at)
        fh.write(bytes([byte ^ 0x01]))
    os.truncate(seg3, record_offsets(seg3)[3] + 40)  # a torn tail: record 11 cut mid-header+payload

    app = App(Settings(**outage_settings(state, influxd_server.url, influx_db)))
    with capture_logs() as logs:
        task = asyncio.create_task(app.run())
        try:
            await wait_until(lambda: caught_up(app, 0), 30, "the spool to drain")
        finally:
            await stop_app(app, task)
    damaged = [e for e in logs if e["event"] == "spool.damaged"]
    assert len(damaged) == 3, damaged
    assert {e["reason"].split()[0] for e in damaged} == {"length", "checksum"}
    assert app.stats.spool_damaged_regions == 3
    assert app.stats.spool_damaged_bytes > 0
    assert app.stats.spool_drained_points == 9 * 50
    drain = app.stats.progress.get("spool drain")  # what the status page's "long work" shows
    assert drain is not None
    assert drain.finished
    assert (drain.done, drain.total, drain.unit) == (9 * 50, 9 * 50, "points")
    assert drain.snapshot().eta_s is None
    done = [e for e in logs if e["event"] == "progress.done" and e["task"] == "spool drain"]
    assert [e["done"] for e in done] == [9 * 50]
    assert stored_batches(influxd_server, influx_db) == {n: 50 for n in range(12) if n not in (1, 6, 11)}
    assert list((state / "spool").glob("*.seg")) == []


def delivery_settings(tmp_path: Path, url: str, db: str, *, gzip: bool = False, **spool: int) -> Settings:
    return Settings(
        **outage_settings(tmp_path / "state", url, db, spool=spool, influxdb={"write_attempts": 1, "gzip": gzip})
    )


async def start_delivery(settings: Settings, stats: Stats) -> tuple[Delivery, list[asyncio.Task[None]]]:
    writer = InfluxWriter(settings.influxdb, DeadLetters(settings.state_dir / "deadletter"), stats)
    await writer.start()
    spool = Spool(settings.state_dir / "spool", max_bytes=settings.spool.max_bytes,
                  segment_bytes=settings.spool.segment_bytes)
    delivery = Delivery(writer, spool, settings, stats)
    tasks = [asyncio.create_task(delivery.run_writer()), asyncio.create_task(delivery.run_spooler())]
    return delivery, tasks


async def close_delivery(delivery: Delivery, tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    delivery.close()
    await delivery.writer.close()


async def test_full_spool_drops_oldest_counts_logs_once_and_keeps_running(
    tmp_path: Path, influxd_private: InfluxServer
) -> None:
    server = influxd_private
    server.create_database("full")
    server.kill()  # InfluxDB is down from the start: everything goes to the spool
    stats = Stats()
    settings = delivery_settings(tmp_path, server.url, "full", max_bytes=1 * MiB)
    delivery, tasks = await start_delivery(settings, stats)
    total = 0
    try:
        with capture_logs() as logs:
            for n in range(60):  # about 3 MB of incompressible points into a 1 MiB spool
                delivery.enqueue(Batch(lines(n, 100, noise=400)))
                total += 100
                await delivery.wait_for_room()
            await wait_until(lambda: delivery.backlog == 0, 30, "everything to be spooled")
            dropped = stats.points_dropped["spool_full"]
            assert dropped > 0
            assert stats.spool_bytes <= 1 * MiB
            assert stats.spool_points == total - dropped
            # Still running: later batches are spooled as before.
            for n in range(60, 70):
                delivery.enqueue(Batch(lines(n, 100, noise=400)))
                total += 100
            await wait_until(lambda: delivery.backlog == 0, 30, "the later batches to be spooled")
            dropped = stats.points_dropped["spool_full"]
            assert stats.spool_points == total - dropped
        full_logs = [e for e in logs if e["event"] == "spool.full_dropping_oldest"]
        assert len(full_logs) == 1, "logged once per episode, not per drop"
        assert delivery.spool.dropped_points == dropped

        await asyncio.to_thread(server.start)
        await wait_until(lambda: delivery.is_up and stats.spool_records == 0, 30, "the spool to drain")
    finally:
        await close_delivery(delivery, tasks)
    stored = stored_batches(server, "full")
    assert sum(stored.values()) == total - dropped  # exact: every point is either stored or counted
    kept = sorted(stored)
    assert kept == list(range(kept[0], 70))  # the oldest went, the newest stayed, with no gaps
    assert all(count == 100 for count in stored.values())


async def test_draining_alternates_with_live_batches(
    tmp_path: Path, influxd_server: InfluxServer, influx_db: str
) -> None:
    """Two spooled batches per drain request (their gzip payloads sent as they are, one multi-member gzip
    stream, which influxd reads whole), then live batches, and so on."""
    settings = delivery_settings(tmp_path, influxd_server.url, influx_db, gzip=True, drain_batch_points=40)
    spool = Spool(settings.state_dir / "spool", max_bytes=64 * MiB, segment_bytes=8 * MiB)
    for n in range(100):
        spool.append(("\n".join(lines(n, 20)) + "\n").encode(), 20)
    spool.close()
    stats = Stats()
    delivery, tasks = await start_delivery(settings, stats)
    order: list[str] = []
    inner_write = delivery.writer.write

    async def observed(body: bytes, points: int, *, gzipped: bytes | None = None) -> WriteResult:
        order.append("spool" if gzipped is not None else "live")
        return await inner_write(body, points, gzipped=gzipped)

    delivery.writer.write = observed  # type: ignore[method-assign]  # observe the order, write for real
    try:
        for n in range(100, 104):
            delivery.enqueue(Batch(lines(n, 20)))
        await wait_until(lambda: stats.spool_records == 0 and delivery.backlog == 0, 30, "everything written")
    finally:
        await close_delivery(delivery, tasks)
    # Queued live batches travel together up to the drain size too (2 x 20 points per request).
    assert order.count("live") == 2
    assert order.count("spool") == 50
    assert order[:4] in (["spool", "live"] * 2, ["live", "spool"] * 2)  # live data did not wait for the drain
    assert stored_batches(influxd_server, influx_db) == {n: 20 for n in range(104)}


async def test_record_that_passes_its_crc_but_will_not_inflate_is_dropped_and_counted(
    tmp_path: Path, influxd_server: InfluxServer, influx_db: str
) -> None:
    settings = delivery_settings(tmp_path, influxd_server.url, influx_db)
    spool = Spool(settings.state_dir / "spool", max_bytes=64 * MiB, segment_bytes=8 * MiB)
    spool.append(("\n".join(lines(0, 10)) + "\n").encode(), 10)
    spool.close()
    # A record whose crc is right but whose "gzip" payload is not gzip (a bug or a tool writing the file).
    payload = b"not gzip at all"
    crc = zlib.crc32(payload, zlib.crc32(struct.pack(">IBQ", 7, FLAG_GZIP, 1)))
    with next((settings.state_dir / "spool").glob("*.seg")).open("ab") as fh:
        fh.write(struct.pack(">4sIIBQI", MAGIC, len(payload), 7, FLAG_GZIP, 1, crc) + payload)
    spool = Spool(settings.state_dir / "spool", max_bytes=64 * MiB, segment_bytes=8 * MiB)
    spool.append(("\n".join(lines(1, 10)) + "\n").encode(), 10)
    spool.close()
    stats = Stats()
    with capture_logs() as logs:
        delivery, tasks = await start_delivery(settings, stats)
        try:
            await wait_until(lambda: stats.spool_records == 0 and stats.spool_drained_points == 20, 20, "the drain")
        finally:
            await close_delivery(delivery, tasks)
    assert stats.points_dropped["spool_corrupt"] == 7
    assert [e for e in logs if e["event"] == "spool.record_dropped"]
    assert stored_batches(influxd_server, influx_db) == {0: 10, 1: 10}


async def test_unwritable_disk_keeps_a_bounded_number_of_batches_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """InfluxDB unreachable (a closed port) and the disk refusing writes (EIO, injected): memory stays bounded,
    the excess is dropped and counted, one log line; when the disk works again the rest is spooled."""
    real_write = os.write

    def broken_disk(fd: int, data: bytes | memoryview) -> int:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr("homeiq_daemon.delivery.spool.os.write", broken_disk)
    settings = delivery_settings(tmp_path, f"http://127.0.0.1:{free_port()}", "none")
    stats = Stats()
    with capture_logs() as logs:
        delivery, tasks = await start_delivery(settings, stats)
        try:
            limit = settings.batch.max_pending_batches * 4
            for n in range(limit + 10):
                delivery.enqueue(Batch(lines(n, 10)))
            await wait_until(lambda: not delivery.is_up, 10, "the sink to be marked down")
            await wait_until(lambda: stats.points_dropped["spool_unwritable"] > 0, 10, "the excess to be dropped")
            assert delivery.backlog <= limit
            dropped_before = stats.points_dropped["spool_unwritable"]
            for n in range(limit + 10, limit + 30):  # more arrive while the disk is still broken
                delivery.enqueue(Batch(lines(n, 10)))
            # The next refused write drops the excess again: memory stays bounded while the disk is broken.
            await wait_until(lambda: stats.points_dropped["spool_unwritable"] > dropped_before
                             and delivery.backlog <= limit + 1, 30, "the new excess to be dropped")
            monkeypatch.setattr("homeiq_daemon.delivery.spool.os.write", real_write)
            await wait_until(lambda: delivery.backlog == 0, 10, "the disk to take the rest")
        finally:
            await close_delivery(delivery, tasks)
    assert stats.spool_points + stats.points_dropped["spool_unwritable"] == (limit + 30) * 10
    assert len([e for e in logs if e["event"] == "spool.write_failed"]) == 1
    assert [e for e in logs if e["event"] == "spool.write_recovered"]
