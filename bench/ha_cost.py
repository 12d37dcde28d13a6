"""Whole-system cost: the real Home Assistant (2024.3.3) changing states at ``--rate`` per second, with HA's own
``influxdb:`` integration vs with this daemon subscribed. Prints one JSON object.

A benchmark-only integration (bench/ha_load) changes sensor states from inside HA's event loop, so producing
them costs HA the same in every phase. CPU (user+system, /proc/<pid>/stat) over ``--seconds`` per phase,
in one run, against one influxd:

1. HA alone;
2. HA with the daemon subscribed, once per subscription (``state_changed`` events, ``subscribe_entities``):
   HA's CPU and the daemon's;
3. HA restarted with its own ``influxdb:`` integration writing into the same influxd.

``system_cost_vs_ha_integration`` = (HA with the daemon - HA alone + the daemon) / (HA with its integration -
HA alone): below 1 the daemon costs the machine less than HA's own integration.
The daemon runs from a runtime-only virtualenv (bench/runtime_venv.py), as on a Pi.

    .venv/bin/python bench/ha_cost.py [--seconds 60] [--rate 200] [--entities 500]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.outage import rss_mb  # noqa: E402
from bench.runtime_venv import runtime_python  # noqa: E402
from bench.soak import cpu_s  # noqa: E402
from tests.support.influxd import InfluxServer, free_port  # noqa: E402
from tests.support.outage import DaemonProcess, settings_env  # noqa: E402
from tests.support.real_ha import RealHomeAssistant, ensure_ha_venv  # noqa: E402

INFLUX_BLOCK = """
influxdb:
  host: 127.0.0.1
  port: {port}
  database: ha_native
  max_retries: 2
"""


def _window(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """CPU % of one core of each process over ``seconds``."""
    before = {name: cpu_s(pid) for name, pid in pids.items()}
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    return {name: round(100 * (cpu_s(pid) - before[name]) / elapsed, 2) for name, pid in pids.items()}


def _start_ha(root: Path, venv: Path, args: argparse.Namespace, extra: str) -> RealHomeAssistant:
    ha = RealHomeAssistant(root, venv, extra_yaml=f"homeiq_bench_load:\n  entities: {args.entities}\n"
                                                   f"  rate: {args.rate}\n" + extra)  # fmt: skip
    target = root / "config" / "custom_components" / "homeiq_bench_load"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "bench" / "ha_load", target, dirs_exist_ok=True)
    ha.start()
    return ha


def run(args: argparse.Namespace) -> dict[str, Any]:
    venv = ensure_ha_venv()
    tmp = Path(tempfile.mkdtemp(prefix="homeiq-ha-cost-"))
    influx = InfluxServer(tmp / "influx")
    influx.start()
    for db in ("homeiq", "ha_native"):
        influx.create_database(db)
    phases: dict[str, Any] = {}
    try:
        ha = _start_ha(tmp / "ha", venv, args, "")
        assert ha.process is not None
        try:
            time.sleep(args.warmup)
            phases["ha_alone"] = _window({"ha": ha.process.pid}, args.seconds)
            for subscription in args.subscriptions:
                values = {
                    "state_dir": tmp / f"state-{subscription}",
                    "home_assistant": {"url": ha.base_url, "token": ha.token, "subscription": subscription},
                    "influxdb": {"url": influx.url, "database": "homeiq"},
                    "http": {"enabled": True, "port": free_port()},
                    "log": {"level": "info"},
                }
                daemon = DaemonProcess([], settings_env(values), runtime_python())
                try:
                    daemon.wait_for("ha.connected", 120)
                    time.sleep(args.warmup)
                    cpu = _window({"ha": ha.process.pid, "daemon": daemon.proc.pid}, args.seconds)
                    cpu["daemon_rss_mb"] = round(rss_mb(daemon.proc.pid), 1)
                    phases[f"ha_with_daemon_{subscription}"] = cpu
                    daemon.proc.send_signal(signal.SIGTERM)
                    daemon.wait(60)
                finally:
                    daemon.kill()
            phases["ha_alone_again"] = _window({"ha": ha.process.pid}, args.seconds)
        finally:
            ha.stop()
        ha = _start_ha(tmp / "ha-influx", venv, args, INFLUX_BLOCK.format(port=influx.http_port))
        assert ha.process is not None
        try:
            time.sleep(args.warmup)
            phases["ha_with_integration"] = _window({"ha": ha.process.pid}, args.seconds)
        finally:
            ha.stop()
        written = {db: influx.query("SELECT count(*) FROM /.*/", db=db) for db in ("homeiq", "ha_native")}
    finally:
        influx.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    alone = (phases["ha_alone"]["ha"] + phases["ha_alone_again"]["ha"]) / 2
    integration = phases["ha_with_integration"]["ha"] - alone
    result: dict[str, Any] = {
        "command": f".venv/bin/python bench/ha_cost.py --seconds {args.seconds:g} --rate {args.rate:g} "
        f"--entities {args.entities}",
        "rate_changes_per_s": args.rate,
        "entities": args.entities,
        "seconds_per_phase": args.seconds,
        "cpu_percent_one_core": phases,
        "ha_alone_percent": round(alone, 2),
        "ha_integration_cost_percent": round(integration, 2),
        "points_seen_in_influxd": bool(written["homeiq"]) and bool(written["ha_native"]),
    }
    for subscription in args.subscriptions:
        with_daemon = phases[f"ha_with_daemon_{subscription}"]
        ha_extra = with_daemon["ha"] - alone
        result[f"ha_serving_daemon_cost_percent_{subscription}"] = round(ha_extra, 2)
        result[f"daemon_percent_{subscription}"] = with_daemon["daemon"]
        ratio = (ha_extra + with_daemon["daemon"]) / integration if integration > 0 else None
        result[f"system_cost_vs_ha_integration_{subscription}"] = round(ratio, 2) if ratio is not None else None
    best = min(
        (s for s in args.subscriptions if result[f"system_cost_vs_ha_integration_{s}"] is not None),
        key=lambda s: result[f"system_cost_vs_ha_integration_{s}"],
        default=None,
    )
    result["system_cost_vs_ha_integration"] = result.get(f"system_cost_vs_ha_integration_{best}")
    result["cheapest_subscription"] = best
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--entities", type=int, default=500)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--subscriptions", nargs="+", default=["state_changed", "entities"],
                        choices=("state_changed", "entities"))  # fmt: skip
    print(orjson.dumps(run(parser.parse_args()), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
