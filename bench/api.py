"""API benchmark: latency of the local HTTP API under load. Prints one JSON object.

Setup (all on loopback): a fake Home Assistant (tests/support/fake_ha.py, its own process) with 50 areas,
800 devices and 5,000 entities, sending ``--events-per-s`` (1,000) state changes per second; ``homeiq run``
(its own process) connected to it, writing to a real influxd; this process as the HTTP client, sending
``--rps`` (200) requests per second on a fixed schedule (open loop: a slow answer does not slow the
schedule), rotating between ``GET /api/v1/entities/{random id}``, a 100-item page
(``/api/v1/entities?limit=100&cursor=<random place>``) and ``GET /healthz``. Latency = request sent ->
whole body read, over one keep-alive connection pool.

Named references, measured in the same run while the ingest goes on:

* **bare aiohttp server**: a server that answers a constant small JSON (its own process), requested by the
  same client alongside every /healthz — the floor this machine and client put under any answer;
* **raw sqlite3**: the same single-entity and 100-item lookups as plain ``sqlite3`` queries on the daemon's
  metadata file (read-only connection, this process) — the floor under the HTTP layer;
* **InfluxDB /query**: the latest state of one entity from influxd (``SELECT * FROM /.*/ WHERE domain=…
  AND entity_id=… ORDER BY time DESC LIMIT 1``), the lookup the metadata store replaces.

Targets: p99 < 5 ms for the single entity and /healthz, < 20 ms for the 100-item page.

    .venv/bin/python bench/api.py [--seconds 30] [--rps 200] [--events-per-s 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.influxd import InfluxServer, free_port  # noqa: E402

N_AREAS, N_DEVICES, N_ENTITIES = 50, 800, 5000
DOMAINS = ("sensor", "sensor", "sensor", "binary_sensor", "light", "switch")
UNITS = {"sensor": "W", "binary_sensor": None, "light": None, "switch": None}


def entity_ids() -> list[str]:
    return [f"{DOMAINS[i % len(DOMAINS)]}.bench_{i:05d}" for i in range(N_ENTITIES)]


# --- the fake Home Assistant process ----------------------------------------------------------------------


async def fake_ha_main(port: int, events_per_s: int, seconds: float) -> None:
    from tests.support.fake_ha import FakeHomeAssistant

    rng = random.Random(7)
    ha = FakeHomeAssistant()
    ha.registries["config/area_registry/list"] = [
        {"aliases": [], "area_id": f"area_{i:02d}", "icon": None, "name": f"Area {i}", "picture": None}
        for i in range(N_AREAS)
    ]
    ha.registries["config/device_registry/list"] = [
        {"area_id": f"area_{i % N_AREAS:02d}", "configuration_url": None, "config_entries": ["ce"], "connections": [],
         "disabled_by": None, "entry_type": None, "hw_version": None, "id": f"dev{i:04d}", "identifiers": [],
         "manufacturer": "Bench", "model": f"B{i % 7}", "name_by_user": None, "name": f"Device {i}",
         "serial_number": None, "sw_version": "1", "via_device_id": None}
        for i in range(N_DEVICES)
    ]  # fmt: skip
    ids = entity_ids()
    ha.registries["config/entity_registry/list"] = [
        {"area_id": None, "config_entry_id": "ce", "device_id": f"dev{i % N_DEVICES:04d}", "disabled_by": None,
         "entity_category": None, "entity_id": eid, "has_entity_name": True, "hidden_by": None, "icon": None,
         "id": f"r{i}", "labels": [], "name": None, "options": {}, "original_name": f"Bench {i}",
         "platform": "bench", "translation_key": None, "unique_id": f"u{i}"}
        for i, eid in enumerate(ids)
    ]  # fmt: skip

    def attrs(eid: str) -> dict[str, Any]:
        domain = eid.partition(".")[0]
        unit = UNITS[domain]
        base: dict[str, Any] = {"friendly_name": eid.partition(".")[2].replace("_", " ").title()}
        if unit:
            base.update(unit_of_measurement=unit, device_class="power", state_class="measurement")
        return base

    def value(eid: str) -> str:
        return f"{rng.uniform(0, 2000):.1f}" if eid.startswith("sensor.") else rng.choice(("on", "off"))

    for eid in ids:
        ha.set_state(eid, value(eid), attrs(eid), notify=False)
    await ha.start(port)
    await asyncio.wait_for(ha.connected.wait(), 120)
    print("fake-ha: connected", flush=True)
    tick_s = 0.01
    per_tick = max(1, events_per_s // 100)
    sent = 0
    started = time.monotonic()
    next_at = started
    while time.monotonic() - started < seconds:
        for _ in range(per_tick):
            eid = ids[rng.randrange(N_ENTITIES)]
            ha.set_state(eid, value(eid), attrs(eid))
        sent += per_tick
        next_at += tick_s
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    print(f"fake-ha: sent {sent}", flush=True)
    await ha.stop()


async def null_server_main(port: int, seconds: float) -> None:
    """The floor: a bare aiohttp server answering a constant small JSON, in its own process, under the same
    load. Its latency is what this machine and this client cost before the daemon does anything."""
    from aiohttp import web

    async def ok(request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type="application/json")

    app = web.Application()
    app.router.add_get("/ok", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.sleep(seconds)
    await runner.cleanup()


# --- measurement ---------------------------------------------------------------------------------------------


def pct(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"n": len(ordered), "p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99),
            "max_ms": round(ordered[-1] * 1000, 3), "mean_ms": round(statistics.fmean(ordered) * 1000, 3)}  # fmt: skip


def cursor_for(entity_id: str) -> str:
    return base64.urlsafe_b64encode(entity_id.encode()).decode().rstrip("=")


async def metric(session: aiohttp.ClientSession, base: str, name: str) -> float:
    async with session.get(base + "/metrics") as resp:
        text = await resp.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def server_side(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    """From the daemon's own histogram: requests per route and the share answered within 1, 5 and 20 ms
    (handler time, before the kernel and the client: tells the daemon's part of the tail from the machine's)."""
    async with session.get(base + "/metrics") as resp:
        text = await resp.text()
    buckets: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if line.startswith("homeiq_http_request_duration_seconds_bucket{"):
            labels, value = line.rsplit(" ", 1)
            route = labels.split('route="', 1)[1].split('"', 1)[0]
            le = labels.split('le="', 1)[1].split('"', 1)[0]
            buckets.setdefault(route, {})[le] = float(value)
    out: dict[str, Any] = {}
    for route, by_le in buckets.items():
        total = by_le.get("+Inf", 0.0)
        if total:
            out[route] = {"n": int(total), **{f"within_{ms}ms": round(by_le.get(le, 0.0) / total, 4)
                                             for ms, le in (("1", "0.001"), ("5", "0.005"), ("20", "0.02"))}}
    return out


async def http_load(
    base: str, floor_base: str, seconds: float, rps: int, ids: list[str]
) -> tuple[dict[str, list[float]], int]:
    rng = random.Random(11)
    results: dict[str, list[float]] = {"entity": [], "list_page_100": [], "healthz": [], "floor": []}
    errors = 0
    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def one(kind: str, path: str) -> None:
            nonlocal errors
            started = time.perf_counter()
            try:
                async with session.get(path if path.startswith("http") else base + path) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            elapsed = time.perf_counter() - started
            if ok:
                results[kind].append(elapsed)
            else:
                errors += 1

        for kind, path in (("entity", f"/api/v1/entities/{ids[0]}"), ("healthz", "/healthz")):
            for _ in range(20):  # warm the pool and the caches
                await one(kind, path)
        for values in results.values():
            values.clear()
        tasks: set[asyncio.Task[None]] = set()
        interval = 1.0 / rps
        start = time.perf_counter()
        count = int(seconds * rps)
        for i in range(count):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            kind = ("entity", "list_page_100", "healthz")[i % 3]
            if kind == "entity":
                path = f"/api/v1/entities/{ids[rng.randrange(len(ids))]}"
            elif kind == "list_page_100":
                path = f"/api/v1/entities?limit=100&cursor={cursor_for(ids[rng.randrange(len(ids) - 200)])}"
            else:
                path = "/healthz"
            batch = [(kind, path)]
            if kind == "healthz":
                batch.append(("floor", floor_base + "/ok"))
            for name, target in batch:
                task = asyncio.create_task(one(name, target))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    return results, errors


def raw_sqlite(db: Path, ids: list[str], n: int) -> dict[str, Any]:
    from homeiq_daemon.metadata.sql import ENTITY_SELECT, EntityQuery, entity_query_sql

    rng = random.Random(5)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    single: list[float] = []
    page: list[float] = []
    try:
        for _ in range(n):
            eid = ids[rng.randrange(len(ids))]
            t = time.perf_counter()
            conn.execute(ENTITY_SELECT + " WHERE e.entity_id = ?", (eid,)).fetchall()
            single.append(time.perf_counter() - t)
            sql, params = entity_query_sql(EntityQuery(after=ids[rng.randrange(len(ids) - 200)], limit=101))
            t = time.perf_counter()
            conn.execute(sql, params).fetchall()
            page.append(time.perf_counter() - t)
            time.sleep(0.002)
    finally:
        conn.close()
    return {"entity": pct(single), "list_page_100": pct(page)}


async def influx_latest(url: str, db: str, ids: list[str], n: int) -> dict[str, Any]:
    from homeiq_daemon.sinks.influx.query import influxql_string

    rng = random.Random(3)
    samples: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for _ in range(n):
            domain, _, object_id = ids[rng.randrange(len(ids))].partition(".")
            q = (f'SELECT * FROM /.*/ WHERE "domain" = {influxql_string(domain)} AND '
                 f'"entity_id" = {influxql_string(object_id)} ORDER BY time DESC LIMIT 1')  # fmt: skip
            t = time.perf_counter()
            async with session.get(f"{url}/query", params={"db": db, "q": q, "epoch": "ns"}) as resp:
                await resp.read()
                assert resp.status == 200
            samples.append(time.perf_counter() - t)
            await asyncio.sleep(0.02)
    return pct(samples)


def wait_http(url: str, timeout_s: float) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status in (200, 503):
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="homeiq-bench-api-"))
    influxd = InfluxServer(tmp / "influxd")
    influxd.start()
    influxd.create_database("bench")
    ha_port, http_port, floor_port = free_port(), free_port(), free_port()
    ha_seconds = args.seconds + 120
    fake = subprocess.Popen(
        [sys.executable, __file__, "--role", "fake-ha", "--port", str(ha_port), "--events-per-s",
         str(args.events_per_s), "--seconds", str(ha_seconds)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    floor = subprocess.Popen([sys.executable, __file__, "--role", "null-server", "--port", str(floor_port),
                              "--seconds", str(ha_seconds)], cwd=ROOT, start_new_session=True)  # fmt: skip
    state = tmp / "state"
    config = tmp / "homeiq.toml"
    config.write_text(
        f'state_dir = "{state}"\n[home_assistant]\nurl = "http://127.0.0.1:{ha_port}"\ntoken = "good-token"\n'
        f'[influxdb]\nurl = "{influxd.url}"\ndatabase = "bench"\n[http]\nport = {http_port}\n'
        '[log]\nlevel = "warning"\nformat = "json"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEIQ_")}
    env.update(item.split("=", 1) for item in args.daemon_env)  # e.g. HOMEIQ_METADATA__STATE_FLUSH_INTERVAL_S=1
    time.sleep(2.0)  # the fake builds 5,000 states before it listens
    daemon = subprocess.Popen([sys.executable, "-m", "homeiq_daemon", "--config", str(config), "run"], cwd=ROOT,
                              env=env, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{http_port}"
    try:
        wait_http(base + "/healthz", 60)
        ids = entity_ids()
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                async with session.get(f"{base}/api/v1/areas?limit=100") as resp:
                    if resp.status == 200 and (await resp.json())["count"] == N_AREAS:
                        break
                await asyncio.sleep(0.5)
            await asyncio.sleep(max(6.0, args.warmup))  # a state flush or two, InfluxDB batches flowing
            events_before = await metric(session, base, "homeiq_events_received_total")
            t0 = time.monotonic()
            http, errors = await http_load(base, f"http://127.0.0.1:{floor_port}", args.seconds, args.rps, ids)
            elapsed = time.monotonic() - t0
            events_after = await metric(session, base, "homeiq_events_received_total")
            sqlite_ref = await asyncio.to_thread(raw_sqlite, state / "homeiq.db", ids, 1000)
            influx_ref = await influx_latest(influxd.url, "bench", ids, args.influx_queries)
            points = await metric(session, base, "homeiq_points_written_total")
            server = await server_side(session, base)
            async with session.get(f"{base}/api/v1/entities?limit=1") as resp:
                sample_ok = resp.status == 200
        ingest_rate = (events_after - events_before) / elapsed
    finally:
        for proc in (daemon, fake, floor):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in (daemon, fake, floor):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        influxd.stop()
    results = {kind: pct(samples) for kind, samples in http.items() if kind != "floor"}
    targets = {"entity_p99_ms": 5.0, "healthz_p99_ms": 5.0, "list_page_100_p99_ms": 20.0}
    return {
        "benchmark": "api",
        "command": "python bench/api.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()},
        "setup": {
            "areas": N_AREAS,
            "devices": N_DEVICES,
            "entities": N_ENTITIES,
            "rps": args.rps,
            "seconds": args.seconds,
            "events_per_s_offered": args.events_per_s,
            "events_per_s_ingested": round(ingest_rate, 1),
            "points_written_total": points,
            "http_errors": errors,
            "api_ok": sample_ok,
            "daemon_env": args.daemon_env,
        },
        "http": results,
        "server_side": server,
        "reference": {
            "bare_aiohttp_server_same_load": pct(http["floor"]),
            "raw_sqlite3": sqlite_ref,
            "influxdb_query_latest_state": influx_ref,
        },
        "targets": targets,
        "met": {
            "entity": results["entity"].get("p99_ms", 1e9) < targets["entity_p99_ms"],
            "healthz": results["healthz"].get("p99_ms", 1e9) < targets["healthz_p99_ms"],
            "list_page_100": results["list_page_100"].get("p99_ms", 1e9) < targets["list_page_100_p99_ms"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=("bench", "fake-ha", "null-server"), default="bench")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--rps", type=int, default=200)
    parser.add_argument("--events-per-s", type=int, default=1000)
    parser.add_argument("--influx-queries", type=int, default=300)
    parser.add_argument("--daemon-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the daemon (its settings), repeatable")
    args = parser.parse_args()
    if args.role == "fake-ha":
        asyncio.run(fake_ha_main(args.port, args.events_per_s, args.seconds))
        return
    if args.role == "null-server":
        asyncio.run(null_server_main(args.port, args.seconds))
        return
    print(orjson.dumps(asyncio.run(run(args)), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
