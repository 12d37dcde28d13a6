"""Soak benchmark: the daemon's steady-state budget on a Raspberry Pi's terms. Prints one JSON object.

A protocol-exact fake Home Assistant (its own process) holds ``--entities`` entities (with area, device and
entity registries) and changes ``--rate`` of them per second; ``homeiq run`` (its own process, default
settings) streams them into a real influxd. Measured over ``--seconds`` after a warm-up:

* ``cpu_percent_one_core``, ``cpu_us_per_event``: the daemon's user+system CPU (/proc/<pid>/stat);
* ``rss_mb_start`` (at the start of the window) and ``rss_mb_end``;
* ``state_dir_write_bytes_per_hour``: /proc/<pid>/io ``write_bytes`` (what the process sent to the block layer,
  any file) over the window, scaled to an hour, with a per-file breakdown under the state directory (size
  growth and inotify write events per file);
* ``floor_cpu_us_per_event``: in the same run, a bare WebSocket client (aiohttp + orjson, the same
  subscription) connected to the same fake HA, that only receives and decodes the frames: what this machine
  charges for the frames before the daemon does anything.

The state directory is primed first (the daemon runs once until connected and is stopped), as on a Pi that has
run before; that first start's writes are reported apart (``first_start_write_bytes``).

    .venv/bin/python bench/soak.py [--seconds 120] [--entities 5000] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.outage import DirWatch, rss_mb, write_bytes  # noqa: E402
from bench.runtime_venv import runtime_python  # noqa: E402
from tests.support.influxd import InfluxServer, free_port  # noqa: E402
from tests.support.outage import DaemonProcess, settings_env  # noqa: E402

DOMAINS = ("sensor", "sensor", "sensor", "sensor", "binary_sensor", "light", "switch")
TICKS_PER_S = 50


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the fake Home Assistant process -------------------------------------------------------------------------


def _attributes(index: int, domain: str) -> dict[str, Any]:
    name = f"Soak {domain.replace('_', ' ')} {index}"
    if domain == "sensor":
        kind = ("power", "temperature", "humidity", "energy")[index % 4]
        unit = {"power": "W", "temperature": "°C", "humidity": "%", "energy": "kWh"}[kind]
        return {"state_class": "measurement", "unit_of_measurement": unit, "device_class": kind, "friendly_name": name}
    if domain == "light":
        return {"supported_color_modes": ["brightness", "color_temp"], "color_mode": "brightness",
                "brightness": 128, "friendly_name": name, "supported_features": 40}  # fmt: skip
    return {"friendly_name": name}


async def fake_ha_main(port: int, entities: int, rate: float, counter: Path) -> None:
    from tests.support.fake_ha import FakeHomeAssistant

    rng = random.Random(17)
    ha = FakeHomeAssistant()
    devices = max(1, entities // 6)
    ha.registries["config/area_registry/list"] = [
        {"aliases": [], "area_id": f"area_{i:02d}", "icon": None, "name": f"Area {i}", "picture": None}
        for i in range(20)
    ]
    ha.registries["config/device_registry/list"] = [
        {"area_id": f"area_{i % 20:02d}", "configuration_url": None, "config_entries": ["ce"], "connections": [],
         "disabled_by": None, "entry_type": None, "hw_version": None, "id": f"dev{i:05d}", "identifiers": [],
         "manufacturer": "Soak", "model": f"S{i % 7}", "name_by_user": None, "name": f"Device {i}",
         "serial_number": None, "sw_version": "1", "via_device_id": None}
        for i in range(devices)
    ]  # fmt: skip
    ids = [f"{DOMAINS[i % len(DOMAINS)]}.soak_{i:05d}" for i in range(entities)]
    ha.registries["config/entity_registry/list"] = [
        {"area_id": None, "config_entry_id": "ce", "device_id": f"dev{i % devices:05d}", "disabled_by": None,
         "entity_category": None, "entity_id": eid, "has_entity_name": True, "hidden_by": None, "icon": None,
         "id": f"r{i}", "labels": [], "name": None, "options": {}, "original_name": f"Soak {i}",
         "platform": "soak", "translation_key": None, "unique_id": f"u{i}"}
        for i, eid in enumerate(ids)
    ]  # fmt: skip
    attrs = [_attributes(i, eid.partition(".")[0]) for i, eid in enumerate(ids)]

    def value(index: int) -> str:
        if ids[index].startswith("sensor."):
            return f"{rng.uniform(0, 2000):.1f}"
        return rng.choice(("on", "off"))

    for i, eid in enumerate(ids):
        ha.set_state(eid, value(i), attrs[i], notify=False)
    await ha.start(port)
    print("fake-ha: listening", flush=True)
    sent = 0
    next_at = time.monotonic()
    owed = 0.0
    last_report = 0.0
    while True:
        owed += rate / TICKS_PER_S
        while owed >= 1:
            index = rng.randrange(entities)
            ha.set_state(ids[index], value(index), attrs[index], notify=bool(ha.clients))
            sent += bool(ha.clients)
            owed -= 1
        now = time.monotonic()
        if now - last_report >= 0.25:
            counter.write_text(str(sent))
            last_report = now
        next_at += 1 / TICKS_PER_S
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


# --- the floor: a bare client that only receives and decodes ---------------------------------------------------


async def floor_main(port: int, counter: Path, subscription: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(
        f"http://127.0.0.1:{port}/api/websocket", max_msg_size=64 << 20
    ) as ws:
        await ws.receive()
        await ws.send_str(orjson.dumps({"type": "auth", "access_token": "good-token"}).decode())
        await ws.receive()
        await ws.send_str('{"id":1,"type":"supported_features","features":{"coalesce_messages":1}}')
        if subscription == "entities":
            await ws.send_str('{"id":2,"type":"subscribe_entities"}')
        else:
            await ws.send_str('{"id":2,"type":"subscribe_events","event_type":"state_changed"}')
        frames = 0
        async for frame in ws:
            orjson.loads(frame.data)
            frames += 1
            if frames % 64 == 0:
                counter.write_text(str(frames))


# --- measurement ------------------------------------------------------------------------------------------------


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _sizes(state: Path) -> dict[str, int]:
    return {str(p.relative_to(state)): p.stat().st_size for p in state.rglob("*") if p.is_file()}


def _spawn(role: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, __file__, "--role", role, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="homeiq-soak-"))
    influx = InfluxServer(tmp / "influx")
    influx.start()
    influx.create_database("soak")
    port = free_port()
    sent_file, floor_file = tmp / "sent", tmp / "floor"
    fake = _spawn("fake-ha", str(port), str(args.entities), str(args.rate), str(sent_file))
    assert fake.stdout is not None
    fake.stdout.readline()
    state = tmp / "state"
    values: dict[str, Any] = {
        "state_dir": state,
        "home_assistant": {"url": f"http://127.0.0.1:{port}", "token": "good-token", "subscription": args.subscription},
        "influxdb": {"url": influx.url, "database": "soak"},
        "http": {"enabled": True, "port": free_port()},
        "log": {"level": "info"},
    }
    env = settings_env(values)
    python = args.python or runtime_python()
    procs: list[Any] = [fake]
    try:
        # Prime: a first start creates the databases and every row; a Pi that has run before has them.
        first = DaemonProcess([], env, python)
        first.wait_for("ha.connected", 120)
        time.sleep(3.0)
        first_bytes = write_bytes(first.proc.pid)
        first.proc.send_signal(signal.SIGTERM)
        first.wait(60)
        daemon = DaemonProcess([], env, python)
        procs.append(daemon)
        daemon.wait_for("ha.connected", 120)
        floor = _spawn("floor", str(port), str(floor_file), args.subscription)
        procs.append(floor)
        pid = daemon.proc.pid
        watch = DirWatch(state)
        time.sleep(args.warmup)
        watch.poll()
        watch.writes.clear()
        sizes0, wb0, cpu0, fcpu0 = _sizes(state), write_bytes(pid), cpu_s(pid), cpu_s(floor.pid)
        sent0, rss0, t0 = _read_int(sent_file), rss_mb(pid), time.monotonic()
        while time.monotonic() - t0 < args.seconds:
            time.sleep(0.5)
            watch.poll()
        elapsed = time.monotonic() - t0
        sizes1, wb1, cpu1, fcpu1 = _sizes(state), write_bytes(pid), cpu_s(pid), cpu_s(floor.pid)
        sent1, rss1 = _read_int(sent_file), rss_mb(pid)
        watch.close()
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.wait(60)
    finally:
        for proc in reversed(procs):
            if isinstance(proc, DaemonProcess):
                proc.kill()
            elif proc.poll() is None:
                proc.kill()
                proc.wait(10)
        influx.stop()
    events = max(1, sent1 - sent0)
    per_hour = 3600 / elapsed
    cpu = cpu1 - cpu0
    return {
        "command": f".venv/bin/python bench/soak.py --seconds {args.seconds:g} --entities {args.entities} "
                   f"--rate {args.rate:g} --subscription {args.subscription}"
                   + (f" --python {args.python}" if args.python else ""),
        "daemon_python": "the given --python" if args.python else "runtime-only virtualenv (bench/runtime_venv.py)",
        "entities": args.entities,
        "rate_events_per_s": args.rate,
        "subscription": args.subscription,
        "measured_seconds": round(elapsed, 1),
        "events": events,
        "cpu_percent_one_core": round(100 * cpu / elapsed, 2),
        "cpu_us_per_event": round(cpu * 1e6 / events, 1),
        "floor_cpu_us_per_event": round((fcpu1 - fcpu0) * 1e6 / events, 1),
        "rss_mb_start": round(rss0, 1),
        "rss_mb_end": round(rss1, 1),
        "state_dir_write_bytes_per_hour": round((wb1 - wb0) * per_hour),
        "state_dir_by_file": {
            name: {"size_growth_bytes_per_hour": round((sizes1.get(name, 0) - sizes0.get(name, 0)) * per_hour),
                   "write_events": watch.writes.get(name.rpartition("/")[2], 0)}
            for name in sorted(set(sizes0) | set(sizes1))
        },
        # Files written and gone again within the window (an atomic save's temporary file), by name.
        "state_dir_write_events_other_files": {
            name: count for name, count in watch.writes.items()
            if name not in {n.rpartition("/")[2] for n in set(sizes0) | set(sizes1)}
        },
        "first_start_write_bytes": first_bytes,
        "method": "daemon CPU: utime+stime from /proc/<pid>/stat; writes: /proc/<pid>/io write_bytes (block layer, "
                  "any file) over the window scaled to 1 h; per file: size growth and inotify write events; "
                  "floor: a bare aiohttp client on the same fake HA in the same window, CPU per event sent",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--entities", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--subscription", choices=("entities", "state_changed"), default="entities",
                        help="what the daemon (and the floor client) subscribe to")
    parser.add_argument("--python", default=None,
                        help="interpreter for the daemon (default: a runtime-only virtualenv, as on a Pi)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds after connecting before measuring")
    parser.add_argument("--role", choices=("bench", "fake-ha", "floor"), default="bench", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.role == "fake-ha":
        asyncio.run(fake_ha_main(int(rest[0]), int(rest[1]), float(rest[2]), Path(rest[3])))
    elif args.role == "floor":
        asyncio.run(floor_main(int(rest[0]), Path(rest[1]), rest[2]))
    else:
        print(orjson.dumps(run(args), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
