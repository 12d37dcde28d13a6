"""End-to-end pipeline throughput: raw HA WebSocket frames -> parse -> map -> encode -> batch -> real influxd.

Compared in the same run with the reference path a user would write with the official client: orjson decode,
``influxdb_client.Point`` built the way HA's integration maps a state, ``to_line_protocol()``, and a POST
per 1,000 points to the same influxd. Each path runs in its own process (so peak RSS is its own) against
its own database. Prints one JSON object.

    .venv/bin/python bench/pipeline.py [--events 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from homeiq_daemon.sources.homeassistant import messages as hamessages  # noqa: E402
from tests.support.influxd import InfluxServer  # noqa: E402
from tests.support.recording import generate_frames  # noqa: E402


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss() -> None:
    """Reset VmHWM so the peak covers the measured run only, not loading the input frames."""
    Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mb() -> float:
    return _status_mb("VmHWM")


def changes(decode: Any, frame: bytes) -> list[Any]:
    """What the daemon's reader does with a frame: the typed fast path, else the general one."""
    fast = decode(frame)
    if fast is not None:
        return [change for _, change in fast]
    return [hamessages.parse_state_changed(data) for message in hamessages.decode_frame(frame)
            if (data := hamessages.state_changed_data(message)) is not None]


async def run_ours(frames: list[bytes], url: str, db: str, state_dir: Path) -> dict[str, Any]:
    from homeiq_daemon.config import load_settings
    from homeiq_daemon.delivery.loop import Delivery
    from homeiq_daemon.delivery.spool import Spool
    from homeiq_daemon.errors import ProtocolError
    from homeiq_daemon.pipeline.core import Pipeline
    from homeiq_daemon.runtime.stats import Stats
    from homeiq_daemon.sinks.influx.deadletter import DeadLetters
    from homeiq_daemon.sinks.influx.writer import InfluxWriter

    settings = load_settings(None, state_dir=state_dir, influxdb={"url": url, "database": db},
                             batch={"size": 1000, "flush_interval_s": 1.0})
    stats = Stats()
    writer = InfluxWriter(settings.influxdb, DeadLetters(state_dir / "deadletter"), stats)
    await writer.start()
    delivery = Delivery(writer, Spool(state_dir / "spool", max_bytes=1 << 30, segment_bytes=8 << 20), settings, stats)
    pipeline = Pipeline(settings.mapping, settings.batch, stats, on_batch=delivery.enqueue)
    tasks = [asyncio.create_task(delivery.run_writer()), asyncio.create_task(delivery.run_spooler())]
    submit = pipeline.submit
    decode = hamessages.StateChangedDecoder().decode
    started = time.perf_counter()
    for index, frame in enumerate(frames):
        try:
            for change in changes(decode, frame):
                submit(change)
        except ProtocolError:
            continue
        if index & 63 == 0:
            # Let the writer run (a read from the socket does this in the daemon): it POSTs the batches made so
            # far while the next ones are encoded; without it, encoding and writing take turns.
            await asyncio.sleep(0)
            await delivery.wait_for_room()
    await delivery.wait_for_room()
    pipeline.flush()
    accepted = sum(stats.events_received.values()) - sum(stats.events_skipped.values())
    while stats.points_written < accepted and time.perf_counter() - started < 300:
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - started
    for task in tasks:
        task.cancel()
    await writer.close()
    delivery.close()
    return {"events": len(frames), "points_written": stats.points_written, "seconds": elapsed,
            "events_per_s": len(frames) / elapsed, "spooled_points": stats.spool_points,
            "peak_rss_mb": _peak_rss_mb()}


def _reference_point(state: dict[str, Any]) -> Any:
    """The obvious mapping a user writes with the official client, following HA's schema."""
    from datetime import datetime

    from influxdb_client import Point, WritePrecision

    if state["state"] in ("unknown", "unavailable", ""):
        return None
    entity_id = state["entity_id"]
    domain, _, object_id = entity_id.partition(".")
    attributes = state["attributes"]
    point = Point(attributes.get("unit_of_measurement") or entity_id).tag("domain", domain).tag("entity_id", object_id)
    try:
        point.field("value", float(state["state"]))
    except ValueError:
        point.field("state", state["state"])
    for key, value in attributes.items():
        if key == "unit_of_measurement":
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            point.field(f"{key}_str", str(value))
        else:
            if math.isfinite(number):
                point.field(key, number)
    stamp = datetime.fromisoformat(state["last_updated"])
    point.time(int(stamp.timestamp() * 1e6) * 1000, WritePrecision.NS)
    return point


def run_reference(frames: list[bytes], url: str, db: str) -> dict[str, Any]:
    import orjson

    host = url.removeprefix("http://")
    conn = http.client.HTTPConnection(host, timeout=60)
    lines: list[str] = []
    written = 0

    def post() -> None:
        nonlocal written
        body = ("\n".join(lines)).encode()
        conn.request("POST", f"/write?db={db}&precision=ns", body=body)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 204:
            raise RuntimeError(f"reference write failed: {resp.status}")
        written += len(lines)
        lines.clear()

    started = time.perf_counter()
    for frame in frames:
        message = orjson.loads(frame)
        state = message["event"]["data"]["new_state"]
        point = _reference_point(state)
        if point is None:
            continue
        lines.append(point.to_line_protocol())
        if len(lines) >= 1000:
            post()
    if lines:
        post()
    elapsed = time.perf_counter() - started
    return {"events": len(frames), "points_written": written, "seconds": elapsed,
            "events_per_s": len(frames) / elapsed, "peak_rss_mb": _peak_rss_mb()}


def cpu_only(frames: list[bytes]) -> dict[str, float]:
    """Both paths without any IO: decode -> map -> encode only (process CPU time)."""
    import orjson

    from homeiq_daemon.config import MappingSettings
    from homeiq_daemon.pipeline.mapping import PointMapper

    mapper = PointMapper(MappingSettings())
    decode = hamessages.StateChangedDecoder().decode
    started = time.process_time()
    for frame in frames:
        for change in changes(decode, frame):
            if change.new_state is not None:
                mapper.map_line(change.new_state)
    ours = len(frames) / (time.process_time() - started)
    started = time.process_time()
    for frame in frames:
        point = _reference_point(orjson.loads(frame)["event"]["data"]["new_state"])
        if point is not None:
            point.to_line_protocol()
    reference = len(frames) / (time.process_time() - started)
    return {"homeiq_events_per_cpu_s": ours, "reference_events_per_cpu_s": reference}


def ceiling(frames: list[bytes], url: str, db: str) -> dict[str, float]:
    """influxd alone: the same points, pre-encoded, POSTed in batches of 1,000 over one connection."""
    from homeiq_daemon.config import MappingSettings
    from homeiq_daemon.pipeline.mapping import PointMapper

    mapper = PointMapper(MappingSettings())
    lines = []
    for frame in frames:
        state = hamessages.parse_state_changed(hamessages.state_changed_data(hamessages.decode_frame(frame)[0]))
        line = mapper.map_line(state.new_state) if state.new_state else None
        if line:
            lines.append(line)
    bodies = [("\n".join(lines[i:i + 1000]) + "\n").encode() for i in range(0, len(lines), 1000)]
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=60)
    started = time.perf_counter()
    for body in bodies:
        conn.request("POST", f"/write?db={db}&precision=ns", body=body)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 204:
            raise RuntimeError(f"ceiling write failed: {resp.status}")
    elapsed = time.perf_counter() - started
    return {"points": len(lines), "points_per_s": len(lines) / elapsed,
            "bytes_per_point": sum(map(len, bodies)) / len(lines)}


def child(path: str, frames_file: str, url: str, db: str) -> None:
    frames = Path(frames_file).read_bytes().splitlines()
    rss_with_input = _status_mb("VmRSS")
    _reset_peak_rss()
    if path == "cpu":
        print(json.dumps(cpu_only(frames)))
        return
    if path == "ceiling":
        print(json.dumps(ceiling(frames, url, db)))
        return
    if path == "ours":
        with tempfile.TemporaryDirectory() as state_dir:
            result = asyncio.run(run_ours(frames, url, db, Path(state_dir)))
    else:
        result = run_reference(frames, url, db)
    result["rss_with_input_mb"] = rss_with_input
    result["peak_rss_growth_mb"] = result["peak_rss_mb"] - rss_with_input
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--child", choices=["ours", "reference", "ceiling", "cpu"])
    parser.add_argument("--frames")
    parser.add_argument("--url")
    parser.add_argument("--db")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.frames, args.url, args.db)
        return
    with tempfile.TemporaryDirectory() as tmp:
        frames_file = Path(tmp) / "frames.jsonl"
        frames_file.write_bytes(b"\n".join(generate_frames(args.events, rate_per_s=1000.0)) + b"\n")
        server = InfluxServer(Path(tmp) / "influxd")
        server.start()
        try:
            results = {}
            for path in ("ceiling", "ours", "reference", "cpu"):
                db = f"bench_{path}"
                server.create_database(db)
                out = subprocess.run([sys.executable, __file__, "--child", path, "--frames", str(frames_file),
                                      "--url", server.url, "--db", db], check=True, capture_output=True, text=True)
                results[path] = json.loads(out.stdout.strip().splitlines()[-1])
        finally:
            server.stop()
    ours, ref = results["ours"], results["reference"]
    print(json.dumps({
        "benchmark": "pipeline",
        "command": f".venv/bin/python bench/pipeline.py --events {args.events}",
        "events": args.events,
        "influxd": "Debian influxdb 1.6.7 on 127.0.0.1 (started by the benchmark)",
        "homeiq": {k: round(v, 3) if isinstance(v, float) else v for k, v in ours.items()},
        "reference_influxdb_client_point": {k: round(v, 3) if isinstance(v, float) else v for k, v in ref.items()},
        "speedup_vs_reference": round(ours["events_per_s"] / ref["events_per_s"], 2),
        "influxd_ceiling_same_points": {k: round(v, 1) for k, v in results["ceiling"].items()},
        "cpu_only_no_io": {k: round(v) for k, v in results["cpu"].items()},
        "cpu_only_speedup": round(results["cpu"]["homeiq_events_per_cpu_s"]
                                  / results["cpu"]["reference_events_per_cpu_s"], 2),
        "e2e_vs_ceiling": round(ours["events_per_s"] / results["ceiling"]["points_per_s"], 2),
        "machine": f"{os.cpu_count()} cores",
        "targets": {"events_per_s": 120_000, "speedup": 3.0, "cpu_only_speedup": 3.0, "e2e_vs_ceiling": 0.6},
    }, indent=2))


if __name__ == "__main__":
    main()
