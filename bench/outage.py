"""Outage benchmark: the disk spool's append and replay rates, memory across a long outage, and the bytes the
daemon writes to its state directory when InfluxDB is healthy. Prints one JSON object.

Measured in the same run against named references:

* replay (draining the spool into influxd through the delivery loop) vs **the ceiling**: the same points
  POSTed straight to the same influxd with no spool in between, in requests of the same size (and, for
  reference, in the live path's 1,000-point batches);
* the segment spool (spool.py) vs **an SQLite spool** (one row per batch, WAL, synchronous=FULL, the same
  gzip payloads): append and read+delete rates and the bytes each writes to disk per batch.

RSS: ``homeiq run`` in a subprocess replays a recording at ``--outage-rate`` events/s (compressed in time:
``--outage-minutes`` of events fed ``--speed`` times faster) while its InfluxDB is down (killed); its RSS is
sampled every 0.25 s. Steady state: the same daemon with a healthy InfluxDB at 200 events/s in real time;
bytes written = ``write_bytes`` from /proc/<pid>/io (bytes the process sent to the block layer, any file)
plus the change in size of the state directory, extrapolated to an hour.

    .venv/bin/python bench/outage.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import platform
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from homeiq_daemon.config import MappingSettings, load_settings  # noqa: E402
from homeiq_daemon.delivery.loop import Delivery  # noqa: E402
from homeiq_daemon.delivery.spool import Spool  # noqa: E402
from homeiq_daemon.pipeline.mapping import PointMapper  # noqa: E402
from homeiq_daemon.runtime.logs import configure_logging  # noqa: E402
from homeiq_daemon.runtime.stats import Stats  # noqa: E402
from homeiq_daemon.sinks.influx.deadletter import DeadLetters  # noqa: E402
from homeiq_daemon.sinks.influx.writer import InfluxWriter  # noqa: E402
from homeiq_daemon.sources.replay import iter_changes  # noqa: E402
from tests.support.influxd import InfluxServer  # noqa: E402
from tests.support.outage import DaemonProcess, outage_settings, settings_env  # noqa: E402
from tests.support.recording import generate_events  # noqa: E402

BATCH = 1000
MiB = 1024 * 1024


def write_bytes(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_recording(path: Path, events: int, rate_per_s: float, seed: int = 3) -> Path:
    """``events`` realistic state_changed frames, written in chunks so the benchmark's own memory stays small."""
    start = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    chunk = 50_000
    with path.open("wb") as fh:
        for first in range(0, events, chunk):
            n = min(chunk, events - first)
            begin = start + timedelta(seconds=first / rate_per_s)
            for message in generate_events(n, seed=seed + first, start=begin, rate_per_s=rate_per_s):
                fh.write(orjson.dumps(message) + b"\n")
    return path


def encoded_batches(points: int, tmp: Path) -> list[bytes]:
    """Line-protocol batches of BATCH realistic points (the daemon's own mapping), ``points`` in all."""
    base_events = min(points, 50_000)
    recording = write_recording(tmp / "base.jsonl", base_events, rate_per_s=500.0)
    mapper = PointMapper(MappingSettings())
    lines = []
    for change in iter_changes(recording):
        if change.new_state is not None and (line := mapper.map_line(change.new_state)):
            lines.append(line)
    recording.unlink()
    # More points than the base recording: the same lines shifted in time, so every point is distinct.
    span = 10**15
    out: list[str] = []
    cycle = 0
    while len(out) < points:
        for line in lines:
            head, _, stamp = line.rpartition(" ")
            out.append(f"{head} {int(stamp) + cycle * span}")
            if len(out) == points:
                break
        cycle += 1
    return [("\n".join(out[i : i + BATCH]) + "\n").encode() for i in range(0, len(out), BATCH)]


# --- spool formats ----------------------------------------------------------------------------------------


def bench_segment_spool(batches: list[bytes], directory: Path, fsync: bool) -> dict[str, Any]:
    spool = Spool(directory, max_bytes=4096 * MiB, segment_bytes=8 * MiB, fsync=fsync)
    points = sum(b.count(b"\n") for b in batches)
    before = write_bytes()
    started = time.perf_counter()
    for body in batches:
        spool.append(body, body.count(b"\n"))
    append_s = time.perf_counter() - started
    written = write_bytes() - before
    size = spool.stats().bytes
    spool.close()
    started = time.perf_counter()
    reopened = Spool(directory, max_bytes=4096 * MiB, segment_bytes=8 * MiB, fsync=fsync)
    open_s = time.perf_counter() - started
    before = write_bytes()
    started = time.perf_counter()
    while (record := reopened.peek()) is not None:
        record.body()
        reopened.ack(record)
    read_s = time.perf_counter() - started
    read_written = write_bytes() - before
    reopened.close()
    return {
        "append_events_per_s": round(points / append_s),
        "read_ack_events_per_s": round(points / read_s),
        "open_scan_mb_per_s": round(size / MiB / open_s, 1),
        "bytes_on_disk_per_batch": size // len(batches),
        "disk_write_bytes_per_appended_batch": written // len(batches),
        "disk_write_bytes_per_acked_batch": read_written // len(batches),
    }


def bench_sqlite_spool(batches: list[bytes], path: Path) -> dict[str, Any]:
    """The alternative design: a separate SQLite file, one row per (gzip) batch."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE spool (id INTEGER PRIMARY KEY, points INTEGER, spooled_at_ms INTEGER, payload BLOB)")
    points = sum(b.count(b"\n") for b in batches)
    before = write_bytes()
    started = time.perf_counter()
    for body in batches:
        payload = gzip.compress(body, compresslevel=1, mtime=0)  # the same work the segment spool does
        conn.execute("BEGIN")
        conn.execute("INSERT INTO spool (points, spooled_at_ms, payload) VALUES (?, ?, ?)",
                     (body.count(b"\n"), int(time.time() * 1000), payload))
        conn.execute("COMMIT")
    append_s = time.perf_counter() - started
    written = write_bytes() - before
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = path.stat().st_size
    before = write_bytes()
    started = time.perf_counter()
    while True:
        row = conn.execute("SELECT id, payload FROM spool ORDER BY id LIMIT 1").fetchone()
        if row is None:
            break
        gzip.decompress(row[1])
        conn.execute("BEGIN")
        conn.execute("DELETE FROM spool WHERE id = ?", (row[0],))
        conn.execute("COMMIT")
    read_s = time.perf_counter() - started
    read_written = write_bytes() - before
    conn.close()
    return {
        "append_events_per_s": round(points / append_s),
        "read_delete_events_per_s": round(points / read_s),
        "bytes_on_disk_per_batch": size // len(batches),
        "disk_write_bytes_per_appended_batch": written // len(batches),
        "disk_write_bytes_per_deleted_batch": read_written // len(batches),
    }


# --- replay into influxd ----------------------------------------------------------------------------------


async def replay_through_delivery(batches: list[bytes], url: str, db: str, state: Path) -> dict[str, Any]:
    settings = load_settings(None, state_dir=state, influxdb={"url": url, "database": db},
                             batch={"size": BATCH}, http={"enabled": False})
    spool = Spool(state / "spool", max_bytes=4096 * MiB, segment_bytes=8 * MiB)
    for body in batches:
        spool.append(body, body.count(b"\n"))
    points = spool.stats().points
    spool.close()
    stats = Stats()
    writer = InfluxWriter(settings.influxdb, DeadLetters(state / "deadletter"), stats)
    await writer.start()
    started = time.perf_counter()
    delivery = Delivery(writer, Spool(state / "spool", max_bytes=4096 * MiB, segment_bytes=8 * MiB), settings, stats)
    tasks = [asyncio.create_task(delivery.run_writer()), asyncio.create_task(delivery.run_spooler())]
    while stats.spool_records or stats.spool_drained_points < points:
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    delivery.close()
    await writer.close()
    return {"points": points, "seconds": round(elapsed, 3), "events_per_s": round(points / elapsed),
            "gzip_to_influxd": settings.influxdb.use_gzip, "drain_batch_points": settings.spool.drain_batch_points,
            "requests": stats.batches_written}


async def straight_to_influxd(batches: list[bytes], url: str, db: str, state: Path, per_request: int
                              ) -> dict[str, Any]:
    """The ceiling: the same points, same writer, no spool, ``per_request`` points per POST."""
    settings = load_settings(None, state_dir=state, influxdb={"url": url, "database": db}, http={"enabled": False})
    lines = b"".join(batches).splitlines(keepends=True)
    bodies = [b"".join(lines[i : i + per_request]) for i in range(0, len(lines), per_request)]
    stats = Stats()
    writer = InfluxWriter(settings.influxdb, DeadLetters(state / "deadletter"), stats)
    await writer.start()
    points = 0
    started = time.perf_counter()
    for body in bodies:
        points += (await writer.write(body, body.count(b"\n"))).written
    elapsed = time.perf_counter() - started
    await writer.close()
    return {"points_per_request": per_request, "points": points, "seconds": round(elapsed, 3),
            "events_per_s": round(points / elapsed)}


# --- the daemon in a subprocess ---------------------------------------------------------------------------


def replay_rss(recording: Path, state: Path, server: InfluxServer, db: str, speed: float) -> dict[str, Any]:
    """RSS of ``homeiq run`` replaying ``recording`` (sampled every 0.25 s), against ``server`` as it is."""
    values = outage_settings(state, server.url, db, batch={"size": BATCH, "flush_interval_s": 5.0,
                                                           "max_pending_batches": 8},
                             influxdb={"timeout_s": 10.0, "write_attempts": 3, "retry_max_s": 30.0})
    daemon = DaemonProcess(["--replay", str(recording), "--replay-speed", str(speed)], settings_env(values))
    samples: list[tuple[float, float]] = []
    try:
        daemon.wait_for("replay.started", 30)
        started = time.monotonic()
        while daemon.proc.poll() is None and daemon.seen("replay.finished") is None:
            samples.append((time.monotonic() - started, rss_mb(daemon.proc.pid)))
            time.sleep(0.25)
        spooled_mb = tree_bytes(state / "spool") / MiB
        rc = daemon.wait(60)  # the replay ended: the daemon stops by itself (no --keep-running)
    finally:
        daemon.kill()
    duration = samples[-1][0] if samples else 0.0
    warm = [rss for t, rss in samples if t >= 0.1 * duration]
    second = [rss for t, rss in samples if t >= 0.5 * duration]
    finished = daemon.seen("replay.finished") or {}
    return {
        "events": finished.get("events"),
        "wall_seconds": round(duration, 1),
        "rss_mb_at_10pct": round(warm[0], 1),
        "rss_mb_peak": round(max(rss for _, rss in samples), 1),
        "rss_mb_end": round(samples[-1][1], 1),
        "rss_growth_mb_after_warmup": round(max(warm) - warm[0], 1),
        "rss_range_mb_second_half": round(max(second) - min(second), 1),
        "rss_mb_by_decile": [round(samples[min(len(samples) - 1, int(len(samples) * d / 10))][1], 1)
                             for d in range(11)],
        "spool_mb_at_end": round(spooled_mb, 1),
        "exit_code": rc,
    }


def outage_rss(tmp: Path, server: InfluxServer, minutes: float, rate: float, speed: float) -> dict[str, Any]:
    """The outage run, and the same replay with InfluxDB healthy as the control: RSS growth that both show
    comes from the event path (caches), not from the outage."""
    events = int(minutes * 60 * rate)
    recording = write_recording(tmp / "outage.jsonl", events, rate_per_s=rate, seed=101)
    try:
        server.create_database("control")
        control = replay_rss(recording, tmp / "control-state", server, "control", speed)
        server.create_database("outage")
        server.kill()  # the outage covers the whole run
        outage = replay_rss(recording, tmp / "outage-state", server, "outage", speed)
        server.start()
    finally:
        recording.unlink(missing_ok=True)
    return {
        "simulated_outage_minutes": minutes,
        "events_per_s_simulated": rate,
        "time_compression": speed,
        "outage": outage,
        "control_influxdb_healthy": control,
        "rss_growth_mb_due_to_outage": round(
            outage["rss_growth_mb_after_warmup"] - control["rss_growth_mb_after_warmup"], 1),
        "rss_end_mb_outage_minus_control": round(outage["rss_mb_end"] - control["rss_mb_end"], 1),
    }


class DirWatch:
    """inotify on a directory (Linux): names of files created or written in it, with the count of writes."""

    IN_MODIFY, IN_CREATE, IN_DELETE = 0x2, 0x100, 0x200

    def __init__(self, path: Path) -> None:
        import ctypes

        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK)
        if self.fd < 0 or self._libc.inotify_add_watch(
            self.fd, str(path).encode(), self.IN_MODIFY | self.IN_CREATE | self.IN_DELETE
        ) < 0:
            raise OSError(ctypes.get_errno(), "inotify")
        self.writes: dict[str, int] = {}
        self.created: list[str] = []

    def poll(self) -> None:
        import struct

        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            pos = 0
            while pos < len(data):
                _, mask, _, length = struct.unpack_from("iIII", data, pos)
                name = data[pos + 16 : pos + 16 + length].rstrip(b"\0").decode()
                pos += 16 + length
                if mask & self.IN_MODIFY:
                    self.writes[name] = self.writes.get(name, 0) + 1
                if mask & self.IN_CREATE:
                    self.created.append(name)

    def close(self) -> None:
        os.close(self.fd)


def steady_state_writes(tmp: Path, server: InfluxServer, seconds: float, rate: float) -> dict[str, Any]:
    events = int(seconds * rate) + int(10 * rate)
    recording = write_recording(tmp / "steady.jsonl", events, rate_per_s=rate, seed=202)
    server.create_database("steady")
    state = tmp / "steady-state"
    (state / "spool").mkdir(parents=True, mode=0o700)
    values = outage_settings(state, server.url, "steady", batch={"size": BATCH, "flush_interval_s": 5.0})
    daemon = DaemonProcess(["--replay", str(recording), "--replay-speed", "1"], settings_env(values))
    spool_watch = DirWatch(state / "spool")
    state_watch = DirWatch(state)
    try:
        daemon.wait_for("replay.started", 30)
        time.sleep(5.0)  # past start-up (state directory and database files created)
        spool_watch.poll()
        state_watch.poll()
        spool_watch.writes.clear()
        spool_watch.created.clear()
        state_watch.writes.clear()
        sizes_before = {str(p.relative_to(state)): p.stat().st_size for p in state.rglob("*") if p.is_file()}
        bytes_before = write_bytes(daemon.proc.pid)
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            time.sleep(0.5)
            spool_watch.poll()
            state_watch.poll()
        elapsed = time.monotonic() - started
        bytes_after = write_bytes(daemon.proc.pid)
        sizes_after = {str(p.relative_to(state)): p.stat().st_size for p in state.rglob("*") if p.is_file()}
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.wait(30)
    finally:
        daemon.kill()
        spool_watch.close()
        state_watch.close()
        recording.unlink(missing_ok=True)
    per_hour = 3600 / elapsed
    spool_bytes = sum(size for name, size in sizes_after.items() if name.startswith("spool/"))
    return {
        "events_per_s": rate,
        "measured_seconds": round(elapsed, 1),
        "spool_dir_bytes_written": spool_bytes if (spool_watch.writes or spool_watch.created) else 0,
        "spool_dir_write_events": spool_watch.writes,
        "spool_dir_files_created": spool_watch.created,
        "daemon_write_bytes_per_hour_all_files": round((bytes_after - bytes_before) * per_hour),
        "state_dir_write_events_by_file": state_watch.writes,
        "state_dir_size_growth_bytes_per_hour": {
            name: round((sizes_after.get(name, 0) - sizes_before.get(name, 0)) * per_hour)
            for name in sorted(set(sizes_before) | set(sizes_after))
        },
        "method": "spool: inotify on the spool directory (any create or write counts); whole daemon: "
                  "/proc/<pid>/io write_bytes (block-layer writes of the process, any file), scaled to 1 h; "
                  "per file: inotify write events and size growth under the state directory",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, shorter runs (a smoke run)")
    parser.add_argument("--points", type=int, default=300_000, help="points in the spool for the rate tests")
    parser.add_argument("--outage-minutes", type=float, default=10.0)
    parser.add_argument("--outage-rate", type=float, default=500.0, help="events/s during the simulated outage")
    parser.add_argument("--speed", type=float, default=20.0, help="time compression of the simulated outage")
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    parser.add_argument("--only", help="comma-separated parts: spool,replay,steady,outage (default: all)")
    args = parser.parse_args()
    configure_logging("json", "warning", stream=sys.stderr)  # stdout is the result
    if args.quick:
        args.points, args.outage_minutes, args.steady_seconds = 50_000, 2.0, 15.0

    only = set(args.only.split(",")) if args.only else {"spool", "replay", "steady", "outage"}
    tmp = Path(tempfile.mkdtemp(prefix="homeiq-bench-outage-"))
    server = InfluxServer(tmp / "influxd")
    server.start()
    try:
        result: dict[str, Any] = {
            "command": " ".join([".venv/bin/python", "bench/outage.py", *sys.argv[1:]]),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
            "batch_points": BATCH,
        }
        targets: dict[str, bool] = {}
        if only & {"spool", "replay"}:
            batches = encoded_batches(args.points, tmp)
            result["points"] = sum(b.count(b"\n") for b in batches)
        if "spool" in only:
            result["segment_spool_fsync"] = bench_segment_spool(batches, tmp / "seg-fsync", fsync=True)
            result["segment_spool_no_fsync"] = bench_segment_spool(batches, tmp / "seg-nofsync", fsync=False)
            result["reference_sqlite_spool_fsync"] = bench_sqlite_spool(batches, tmp / "spool.db")
        if "replay" in only:
            # The ceiling with the replay's request size before and after the replay (influxd slows down as it
            # fills), and once with the live path's 1,000-point batches for reference.
            drain = load_settings(None, http={"enabled": False}).spool.drain_batch_points
            for name in ("ceiling1", "replay", "ceiling2", "live_size"):
                server.create_database(name)
            ceiling = [asyncio.run(straight_to_influxd(batches, server.url, "ceiling1", tmp / "c1", drain))]
            replay = asyncio.run(replay_through_delivery(batches, server.url, "replay", tmp / "replay-state"))
            ceiling.append(asyncio.run(straight_to_influxd(batches, server.url, "ceiling2", tmp / "c2", drain)))
            result["replay_spool_to_influxd"] = replay
            result["reference_ceiling_straight_to_influxd"] = ceiling
            result["reference_straight_to_influxd_live_batch_size"] = asyncio.run(
                straight_to_influxd(batches, server.url, "live_size", tmp / "c3", BATCH))
            mean = sum(c["events_per_s"] for c in ceiling) / len(ceiling)
            result["replay_vs_ceiling"] = round(replay["events_per_s"] / mean, 2)
            targets["replay_events_per_s_ge_100000"] = replay["events_per_s"] >= 100_000
        if only & {"spool", "replay"}:
            del batches
        if "steady" in only:
            steady = steady_state_writes(tmp, server, args.steady_seconds, 200.0)
            result["steady_state_healthy"] = steady
            targets["steady_state_spool_writes_0_bytes"] = steady["spool_dir_bytes_written"] == 0
        if "outage" in only:
            outage = outage_rss(tmp, server, args.outage_minutes, args.outage_rate, args.speed)
            result["outage_rss"] = outage
            targets["rss_flat_within_5_mb"] = abs(outage["rss_growth_mb_due_to_outage"]) <= 5.0
        result["targets_met"] = targets
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

if __name__ == "__main__":
    main()
