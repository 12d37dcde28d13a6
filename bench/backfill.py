"""Backfill benchmark: importing Home Assistant's recorder history into influxd. Prints one JSON object.

A real Home Assistant 2024.3.3 (recorder on, SQLite) is filled with ``--states`` recorded state changes of a
mixed set of entities (numeric sensors with unit, device_class and state_class; binary sensors; switches;
text sensors; about 50 entities), made through HA's REST API. Then, in the same run, into two fresh databases
of one real influxd:

* **ours**: ``homeiq import-history --since 2h`` (a subprocess; the WebSocket command
  ``history/history_during_period`` paged by entity chunks and time windows, the daemon's mapping, one write
  per answer);
* **reference**: the importer a user would write today: HA's REST ``/api/history/period`` per entity (all
  changes, with attributes), one ``influxdb_client.Point`` per state (measurement, domain/entity_id tags,
  value/state and attribute fields, the state's ``last_updated``), written in batches of 5,000 to the same
  influxd's ``/write`` (the influxd here is 1.6, which has no ``/api/v2/write`` for influxdb_client's WriteApi).

``states_per_s`` = states imported / wall time of the import (connect to done); ``rss_growth_mib`` = peak RSS
minus RSS when the import starts (sampled every 20 ms from /proc); ``ratio`` = ours / reference.

    .venv/bin/python bench/backfill.py [--states 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.influxd import InfluxServer  # noqa: E402
from tests.support.real_ha import RealHomeAssistant, ensure_ha_venv  # noqa: E402

MiB = 1024 * 1024
REFERENCE_BATCH = 5000


def entity_mix() -> list[tuple[str, dict[str, Any], Any]]:
    """(entity_id, attributes, value maker) for about 50 entities of the kinds a home has."""
    mix: list[tuple[str, dict[str, Any], Any]] = []
    kinds = [
        ("temperature", "°C", "measurement", lambda i: f"{20 + (i % 70) / 10:.1f}"),
        ("humidity", "%", "measurement", lambda i: f"{40 + i % 30}"),
        ("power", "W", "measurement", lambda i: f"{(i * 37) % 3000 / 10:.1f}"),
        ("energy", "kWh", "total_increasing", lambda i: f"{i / 100:.2f}"),
    ]
    for room in range(8):
        for device_class, unit, state_class, value in kinds:
            attributes = {
                "unit_of_measurement": unit,
                "device_class": device_class,
                "state_class": state_class,
                "friendly_name": f"Room {room} {device_class}",
            }
            mix.append((f"sensor.room{room}_{device_class}", attributes, value))
    for n in range(8):
        attributes = {"device_class": "motion" if n % 2 else "door", "friendly_name": f"Sensor {n}"}
        mix.append((f"binary_sensor.contact_{n}", attributes, lambda i: "on" if i % 2 else "off"))
    for n in range(5):
        attributes = {"friendly_name": f"Plug {n}", "icon": "mdi:power-plug"}
        mix.append((f"switch.plug_{n}", attributes, lambda i: "on" if i % 2 else "off"))
    for n in range(5):
        attributes = {"friendly_name": f"Status {n}"}
        mix.append((f"sensor.status_{n}", attributes, lambda i: ("idle", "heating", "cooling", "off")[i % 4]))
    return mix


async def fill_recorder(ha: RealHomeAssistant, states: int) -> float:
    """``states`` changes through HA's REST API (8 at a time); returns seconds taken."""
    import aiohttp

    mix = entity_mix()
    per_entity = states // len(mix) + 1
    jobs = [(entity_id, attributes, make(i)) for i in range(per_entity) for entity_id, attributes, make in mix]
    headers = {"Authorization": f"Bearer {ha.token}"}
    started = time.monotonic()
    queue: asyncio.Queue[tuple[str, dict[str, Any], str]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    async with aiohttp.ClientSession(headers=headers) as session:

        async def worker() -> None:
            while not queue.empty():
                entity_id, attributes, state = queue.get_nowait()
                async with session.post(
                    f"{ha.base_url}/api/states/{entity_id}", json={"state": state, "attributes": attributes}
                ) as response:
                    response.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(8)))
    return time.monotonic() - started


def wait_recorded(ha: RealHomeAssistant, since_iso: str, timeout_s: float = 120.0) -> int:
    """Recorded states of the mix, once the count stopped growing (the recorder committed everything)."""
    deadline = time.monotonic() + timeout_s
    entity_ids = [entity_id for entity_id, _, _ in entity_mix()]
    last = -1
    while True:
        total = sum(len(ha.history(entity_id, since_iso)) for entity_id in entity_ids)
        if total == last or time.monotonic() > deadline:
            return total
        last = total
        time.sleep(2.0)


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.baseline: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def mark_baseline(self) -> None:
        self.baseline = self.rss()
        self.peak = self.baseline

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.baseline is not None:
                self.peak = max(self.peak, self.rss())
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def run_child(args: list[str], env: dict[str, str], start_event: str, done_event: str) -> dict[str, Any]:
    """A child process logging JSON lines on stderr; RSS baseline at ``start_event``, result at ``done_event``."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = RssSampler(proc.pid)
    result: dict[str, Any] = {}
    other: list[str] = []
    assert proc.stderr is not None
    for raw in proc.stderr:
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            other.append(raw.decode(errors="replace").rstrip())
            continue
        if event.get("event") == start_event:
            sampler.mark_baseline()
        elif event.get("event") == done_event:
            result = event
    proc.wait(timeout=600)
    sampler.stop()
    if proc.returncode != 0 or not result:
        tail = "\n".join(other[-15:])
        raise RuntimeError(f"{args[1:3]} failed with {proc.returncode}:\n{tail}")
    result["rss_growth_mib"] = round((sampler.peak - (sampler.baseline or 0)) / MiB, 2)
    result["rss_peak_mib"] = round(sampler.peak / MiB, 1)
    return result


# --- the reference importer (runs as a child: `bench/backfill.py --reference ...`) --------------------------


def reference_main(influx_url: str, db: str, since_iso: str) -> None:
    """REST /api/history/period per entity + influxdb_client.Point + batched /write: what a user writes."""
    import urllib.parse
    import urllib.request
    from datetime import datetime

    import influxdb_client

    def log(event: str, **fields: Any) -> None:
        sys.stderr.write(orjson.dumps({"event": event, **fields}).decode() + "\n")
        sys.stderr.flush()

    ha_url = os.environ["HOMEIQ_HOME_ASSISTANT__URL"]
    headers = {"Authorization": f"Bearer {os.environ['HOMEIQ_HOME_ASSISTANT__TOKEN']}"}
    log("reference.starting")
    started = time.monotonic()
    request = urllib.request.Request(f"{ha_url}/api/states", headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        entity_ids = sorted(state["entity_id"] for state in orjson.loads(response.read()))
    states = 0
    points: list[str] = []

    def flush() -> None:
        body = ("\n".join(points) + "\n").encode()
        write = urllib.request.Request(f"{influx_url}/write?db={db}&precision=ns", data=body, method="POST")
        with urllib.request.urlopen(write, timeout=60) as response:
            assert response.status == 204
        points.clear()

    for entity_id in entity_ids:
        query = urllib.parse.urlencode({"filter_entity_id": entity_id, "significant_changes_only": "0"})
        url = f"{ha_url}/api/history/period/{urllib.parse.quote(since_iso)}?{query}"
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=120) as response:
            series = orjson.loads(response.read())
        domain, _, object_id = entity_id.partition(".")
        for row in (state for group in series for state in group):
            states += 1
            attributes = row.get("attributes", {})
            point = influxdb_client.Point(attributes.get("unit_of_measurement", entity_id))
            point.tag("domain", domain).tag("entity_id", object_id)
            try:
                point.field("value", float(row["state"]))
            except ValueError:
                point.field("state", row["state"])
            for key, value in attributes.items():
                if key == "unit_of_measurement":
                    continue
                if isinstance(value, int | float) and not isinstance(value, bool):
                    point.field(key, value)
                else:
                    point.field(f"{key}_str", str(value))
            point.time(datetime.fromisoformat(row["last_updated"]), write_precision="ns")
            points.append(point.to_line_protocol())
            if len(points) >= REFERENCE_BATCH:
                flush()
    if points:
        flush()
    log("reference.done", states=states, seconds=round(time.monotonic() - started, 3))


# --- the run ----------------------------------------------------------------------------------------------


def import_env(root: Path, ha: RealHomeAssistant, influx: InfluxServer, database: str) -> dict[str, str]:
    """The environment of a ``homeiq import-history`` child: this HA, this influxd database, JSON logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEIQ_")}
    env.update(
        {
            "HOMEIQ_STATE_DIR": str(root / "state"),
            "HOMEIQ_HOME_ASSISTANT__URL": ha.base_url,
            "HOMEIQ_HOME_ASSISTANT__TOKEN": ha.token,
            "HOMEIQ_INFLUXDB__URL": influx.url,
            "HOMEIQ_INFLUXDB__DATABASE": database,
            "HOMEIQ_LOG__FORMAT": "json",
            "HOMEIQ_HTTP__ENABLED": "false",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--states", type=int, default=20_000)
    parser.add_argument("--reference", nargs=3, metavar=("INFLUX", "DB", "SINCE"))
    args = parser.parse_args()
    if args.reference:
        reference_main(*args.reference)
        return

    root = Path(tempfile.mkdtemp(prefix="homeiq-bench-backfill-"))
    influx = InfluxServer(root / "influxd")
    influx.start()
    ha = RealHomeAssistant(root / "ha", ensure_ha_venv(), recorder=True, commit_interval_s=1)
    ha.start()
    try:
        from datetime import UTC, datetime, timedelta

        since_iso = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
        fill_s = asyncio.run(fill_recorder(ha, args.states))
        sys.stderr.write(f"filled {args.states} states in {fill_s:.1f} s\n")
        recorded = wait_recorded(ha, since_iso)
        sys.stderr.write(f"recorder holds {recorded}\n")
        env = import_env(root, ha, influx, "ours")
        command = [sys.executable, "-m", "homeiq_daemon", "import-history", "--since", "2h"]
        ours = run_child(command, env, "import.starting", "import.done")
        influx.create_database("reference")
        reference = run_child(
            [sys.executable, __file__, "--reference", influx.url, "reference", since_iso],
            {**env, "PYTHONPATH": str(ROOT)},
            "reference.starting",
            "reference.done",
        )
    finally:
        ha.stop()
        influx.stop()
    ours_rate = ours["states"] / ours["seconds"]
    reference_rate = reference["states"] / reference["seconds"]
    result = {
        "bench": "backfill",
        "command": f"python bench/backfill.py --states {args.states}",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "home_assistant": "2024.3.3, recorder on SQLite (commit_interval 1 s)",
        "entities": len(entity_mix()),
        "recorded_states": recorded,
        "fill_seconds": round(fill_s, 1),
        "ours": {
            "states": ours["states"],
            "points": ours["points"],
            "seconds": ours["seconds"],
            "states_per_s": round(ours_rate),
            "rss_growth_mib": ours["rss_growth_mib"],
            "rss_peak_mib": ours["rss_peak_mib"],
        },
        "reference": {
            "what": "REST /api/history/period per entity + influxdb_client.Point + /write in batches of 5,000",
            "states": reference["states"],
            "seconds": reference["seconds"],
            "states_per_s": round(reference_rate),
            "rss_growth_mib": reference["rss_growth_mib"],
        },
        "states_per_s": round(ours_rate),
        "ratio": round(ours_rate / reference_rate, 2),
        "targets": {"states_per_s": 20_000, "ratio": 2.0},
    }
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
