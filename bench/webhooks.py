"""Webhook latency: a state change reaching the daemon -> the signed POST arriving at a loopback receiver.

The daemon side is the real path: ``Pipeline.submit`` (where every source hands over an event) -> the rule
engine (a pipeline listener) -> the outbox row committed to SQLite (WAL) -> the dispatcher's signed POST.
The receiver is a separate process (aiohttp on 127.0.0.1) that stamps each arrival with CLOCK_MONOTONIC,
which is comparable across processes on Linux. Events come at a fixed rate, every one matching a rule.

Reference, measured in the same run against the same receiver: the floor of a bare aiohttp POST of the
same body made directly at the same rate (no rules, no outbox, no signing). The seed design polled for
webhook conditions every 15 s; its latency is modelled (uniform over the interval), not measured.

    .venv/bin/python bench/webhooks.py [--rate 50] [--seconds 20]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from homeiq_daemon.config import load_settings  # noqa: E402
from homeiq_daemon.delivery.loop import Delivery  # noqa: E402
from homeiq_daemon.delivery.spool import Spool  # noqa: E402
from homeiq_daemon.model import EntityState, StateChange, ns_to_iso  # noqa: E402
from homeiq_daemon.pipeline.core import Pipeline  # noqa: E402
from homeiq_daemon.runtime.logs import configure_logging  # noqa: E402
from homeiq_daemon.runtime.stats import Stats  # noqa: E402
from homeiq_daemon.sinks.embedded import HistoryStore  # noqa: E402
from homeiq_daemon.webhooks.service import WebhookService  # noqa: E402
from homeiq_daemon.webhooks.signing import encode_secret  # noqa: E402

SEED_POLL_INTERVAL_S = 15.0


# --- the receiver process ---------------------------------------------------------------------------


def serve(port: int) -> None:
    arrivals: list[tuple[str, int, int]] = []

    async def hook(request: web.Request) -> web.Response:
        arrived = time.monotonic_ns()
        body = json.loads(await request.read())
        arrivals.append((body.get("bench_path", "ours"), int(body["new_state"]["attributes"]["seq"]), arrived))
        return web.Response(text="ok")

    async def results(request: web.Request) -> web.Response:
        data = list(arrivals)
        arrivals.clear()
        return web.json_response(data)

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/results", results)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, handle_signals=True)


# --- the measuring side -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentiles(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    if not ordered:
        return {}

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"p50_ms": pick(0.50), "p90_ms": pick(0.90), "p99_ms": pick(0.99), "max_ms": round(ordered[-1], 3)}


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def paced(rate: float, count: int, fire: Any) -> dict[int, int]:
    """Call ``fire(seq)`` at ``rate`` per second; returns seq -> monotonic ns just before the call."""
    sent: dict[int, int] = {}
    start = time.monotonic() + 0.2
    for seq in range(count):
        delay = start + seq / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[seq] = time.monotonic_ns()
        fire(seq)
    return sent


async def collect(base: str, path: str, sent: dict[int, int], timeout_s: float = 30.0) -> list[float]:
    got: dict[int, int] = {}
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while len(got) < len(sent) and time.monotonic() < deadline:
            async with session.get(f"{base}/results") as response:
                for kind, seq, arrived in await response.json():
                    if kind == path and seq in sent:
                        got[seq] = arrived
            await asyncio.sleep(0.2)
    missing = sorted(set(sent) - set(got))
    if missing:
        print(f"{path}: no arrival for seq {missing[:10]}", file=sys.stderr)
    return [(got[seq] - sent[seq]) / 1e6 for seq in sent if seq in got]


async def run_ours(base: str, rate: float, count: int, state_dir: Path) -> dict[str, Any]:
    settings = load_settings(
        None,
        state_dir=state_dir,
        http={"enabled": False},
        webhooks={
            "targets": {"bench": {"url": f"{base}/hook", "secret": encode_secret(os.urandom(32))}},
            "rules": [{"name": "bench", "entities": ["sensor.bench_*"], "target": "bench"}],
        },
    )
    stats = Stats()
    history = HistoryStore(state_dir / "history.db", retention_days=1)
    await history.start()
    delivery = Delivery(history, Spool(state_dir / "spool", max_bytes=64 << 20, segment_bytes=1 << 20), settings, stats)
    writer = asyncio.create_task(delivery.run_writer())
    pipeline = Pipeline(settings.mapping, settings.batch, stats, on_batch=delivery.enqueue)
    service = WebhookService(settings.webhooks, state_dir / "webhooks.db")
    await service.start()
    pipeline.add_listener(service.on_change)
    service_tasks = [asyncio.create_task(service.run_writer()), asyncio.create_task(service.dispatcher.run())]
    # The marker tells the receiver which path a request came from: the rule engine copies attributes.
    previous: dict[str, EntityState] = {}

    def fire(seq: int) -> None:
        entity_id = f"sensor.bench_{seq % 10}"
        stamp_ns = time.time_ns()
        stamp = ns_to_iso(stamp_ns)
        state = EntityState(entity_id, str(seq), {"seq": seq, "unit_of_measurement": "W"}, stamp, stamp, stamp_ns)
        pipeline.submit(StateChange(entity_id, state, previous.get(entity_id), "live"))
        previous[entity_id] = state

    # Warm-up: one delivery opens the keep-alive connection and the SQLite file.
    fire(-1)
    await asyncio.sleep(0.5)
    cpu0 = cpu_s()
    sent = await paced(rate, count, fire)
    latencies = await collect(base, "ours", sent)
    cpu_used = cpu_s() - cpu0
    await service.stop(time.monotonic() + 5)
    await delivery.stop(time.monotonic() + 5)
    writer.cancel()
    for task in service_tasks:
        task.cancel()
    delivery.close()
    await history.close()
    return {
        **percentiles(latencies),
        "delivered": len(latencies),
        "sent": count,
        "cpu_ms_per_event": round(cpu_used * 1000 / count, 3),
        "dead_letters": service.stats.dead_letters,
        "retries": service.stats.retries,
    }


async def run_reference(base: str, rate: float, count: int) -> dict[str, Any]:
    session = aiohttp.ClientSession()
    tasks: set[asyncio.Task[Any]] = set()

    async def post(body: bytes) -> None:
        async with session.post(f"{base}/hook", data=body, headers={"Content-Type": "application/json"}) as r:
            await r.read()

    def fire(seq: int) -> None:
        body = orjson.dumps(
            {
                "bench_path": "reference",
                "rule": "bench",
                "entity_id": f"sensor.bench_{seq % 10}",
                "new_state": {"state": str(seq), "attributes": {"seq": seq, "unit_of_measurement": "W"}},
            }
        )
        task = asyncio.create_task(post(body))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    fire(-1)
    await asyncio.sleep(0.5)
    cpu0 = cpu_s()
    sent = await paced(rate, count, fire)
    latencies = await collect(base, "reference", sent)
    cpu_used = cpu_s() - cpu0
    await session.close()
    return {
        **percentiles(latencies),
        "delivered": len(latencies),
        "sent": count,
        "cpu_ms_per_event": round(cpu_used * 1000 / count, 3),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    configure_logging("console", "warning")
    port = free_port()
    receiver = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(f"{base}/results"):
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
        count = int(args.rate * args.seconds)
        with tempfile.TemporaryDirectory(prefix="homeiq-bench-webhooks-") as tmp:
            ours = await run_ours(base, args.rate, count, Path(tmp))
        reference = await run_reference(base, args.rate, count)
    finally:
        receiver.terminate()
        receiver.wait(10)
    seed = {
        "p50_ms": SEED_POLL_INTERVAL_S * 500,
        "p99_ms": SEED_POLL_INTERVAL_S * 990,
        "note": "modelled: a 15 s polling loop delays a change by U(0, 15 s); not measured",
    }
    return {
        "benchmark": "webhooks: event received -> signed POST arrives at a loopback receiver",
        "command": f".venv/bin/python bench/webhooks.py --rate {args.rate:g} --seconds {args.seconds:g}",
        "rate_per_s": args.rate,
        "events": count,
        "cpus": os.cpu_count(),
        "ours": ours,
        "reference_direct_aiohttp_post": reference,
        "seed_design_15s_polling": seed,
        "target_p99_ms": 20,
        "meets_target": bool(ours.get("p99_ms", 1e9) < 20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="matching events per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    main()
