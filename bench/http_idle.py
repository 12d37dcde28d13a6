"""Idle-connection benchmark: /healthz latency while 2,000 idle connections are thrown at the daemon. Prints
one JSON object.

Setup (all on loopback, bounded): a real influxd; ``homeiq run --replay`` (its own process, descriptor limit
``--fd-limit`` = 1,024 as many systems default to) replaying ``--events`` recorded state changes at 300/s into
it; this process opens ``--idle`` connections that send nothing, then asks ``/healthz`` every
``--interval-ms`` (a fresh connection each, open loop) and a 50-entity API page alongside. Latency = connect
-> whole body read.

Phases, in the same run and against the same daemon:

* **reference**: no idle connections (the named reference this machine and client put under the figure);
* **idle**: ``--idle`` idle connections, each closed by the server stays closed (the issue's scenario);
* **stubborn**: the same, but each client reconnects 0.5 s after the server closed it.

Target: p99 of /healthz under 50 ms with the idle connections held; every probe answered.

    .venv/bin/python bench/http_idle.py [--idle 2000] [--probes 200] [--interval-ms 50] [--fd-limit 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.idle_load import LoadedDaemon, LoadResult, percentile, run_load  # noqa: E402
from tests.support.influxd import InfluxServer  # noqa: E402
from tests.support.pointcheck import compare, expected_points, stored_points, write_recording  # noqa: E402
from tests.support.recording import generate_events  # noqa: E402


def summary(result: LoadResult) -> dict[str, Any]:
    answered = [p.latency_s for p in result.healthz if p.latency_s is not None]
    ms = [s * 1000 for s in answered]
    return {
        "healthz_probes": len(result.healthz),
        "healthz_answered": len(answered),
        "healthz_ok": sum(1 for p in result.healthz if p.body_status == "ok"),
        "api_answered_200": sum(1 for p in result.api if p.http_status == 200),
        "api_probes": len(result.api),
        "p50_ms": round(statistics.median(ms), 2) if ms else None,
        "p99_ms": round(percentile(ms, 0.99), 2) if ms else None,
        "max_ms": round(max(ms), 2) if ms else None,
        "idle_connects": result.crowd.connects,
        "idle_closed_by_server": result.crowd.closed_by_server,
        "idle_connect_errors": result.crowd.connect_errors,
        "idle_peak_open_client_side": result.crowd.peak_open,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="homeiq-bench-idle-") as tmp:
        root = Path(tmp)
        influx = InfluxServer(root / "influxd")
        influx.start()
        try:
            influx.create_database("bench")
            replay = write_recording(root / "events.jsonl", generate_events(args.events, rate_per_s=300.0))
            daemon = LoadedDaemon(root / "daemon", influx.url, "bench", replay, replay_speed=1.0,
                                  fd_limit=args.fd_limit)  # fmt: skip
            daemon.start()
            try:
                await daemon.wait_http()
                phases: dict[str, Any] = {}
                for name, idle, reconnect in (("reference", 0, None), ("idle", args.idle, None),
                                              ("stubborn", args.idle, 0.5)):  # fmt: skip
                    result = await run_load(daemon, idle=idle, healthz_probes=args.probes,
                                            api_probes=args.probes // 4, interval_s=args.interval_ms / 1000,
                                            reconnect_delay_s=reconnect)  # fmt: skip
                    phases[name] = summary(result)
                deadline = time.monotonic() + 120
                while True:
                    diff = compare(expected_points(replay), stored_points(influx, "bench"))
                    if diff.ok or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.5)
            finally:
                code = daemon.stop()
            log = daemon.log_path.read_text(errors="replace")
        finally:
            influx.stop()
    return {
        "benchmark": "http_idle",
        "command": "python bench/http_idle.py " + " ".join(sys.argv[1:]),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "settings": {key: getattr(args, key) for key in ("idle", "probes", "interval_ms", "fd_limit", "events")},
        "phases": phases,
        "pipeline": {"expected_points": diff.expected, "stored_points": diff.stored, "nothing_lost": diff.ok},
        "daemon": {"exit_code": code, "log_lines": log.count("\n"), "emfile_lines": log.count("Too many open files")},
        "target": {"healthz_p99_ms_below": 50, "met": (phases["idle"]["p99_ms"] or 1e9) < 50},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--interval-ms", type=float, default=50.0)
    parser.add_argument("--fd-limit", type=int, default=1024)
    parser.add_argument("--events", type=int, default=9000, help="recorded changes, replayed at 300/s")
    args = parser.parse_args()
    if args.idle > 5000 or args.probes > 5000:
        parser.error("bounded on purpose: --idle and --probes at most 5000")
    print(orjson.dumps(asyncio.run(run(args)), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
