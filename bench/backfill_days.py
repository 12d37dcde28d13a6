"""Long-history import benchmark: ``--days`` of recorder history of ``--entities`` entities into influxd, and what it
costs in memory. Prints one JSON object.

A real Home Assistant 2024.3.3 creates its recorder database (SQLite, schema 42) and is stopped; the recorder's
``states_meta``, ``state_attributes`` and ``states`` tables are then filled directly with the history a house of
that size records in that time (numeric sensors every 10 minutes, power sensors every 2 minutes, binary sensors,
switches and lights every 2 hours, each with jitter; one attributes row per entity, as HA shares unchanged
attributes), and its first recorder run is moved to where that history starts. Filling through HA's REST API would
take hours for this many rows; HA then serves them like any other recorded state. HA is started again, every
entity gets its current state through the REST API (so it exists, as in a running house), and
``homeiq import-history --since <days>d`` runs as a subprocess into a fresh influxd database.

``rss_growth_mib`` = peak RSS of the import (sampled every 20 ms from /proc) minus its RSS when the import starts;
target <= 20 (the importer holds at most two answers of about ``states_per_request`` states each, so this does not
grow with the days or the entity count). ``states_per_s`` = imported states / wall time. ``points`` = points
influxd acknowledged (one per recorded state).

    .venv/bin/python bench/backfill_days.py [--days 10] [--entities 500] [--ask-days 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.backfill import import_env, run_child  # noqa: E402
from tests.support.influxd import InfluxServer  # noqa: E402
from tests.support.real_ha import RealHomeAssistant, ensure_ha_venv  # noqa: E402

# (share of the entities, seconds between changes, domain, attributes, value maker)
KINDS: list[tuple[float, float, str, dict[str, Any], Any]] = [
    (0.10, 120.0, "sensor", {"unit_of_measurement": "W", "device_class": "power", "state_class": "measurement"},
     lambda i: f"{(i * 37) % 3000 / 10:.1f}"),
    (0.20, 600.0, "sensor", {"unit_of_measurement": "°C", "device_class": "temperature",
                             "state_class": "measurement"}, lambda i: f"{20 + (i % 70) / 10:.1f}"),
    (0.20, 600.0, "sensor", {"unit_of_measurement": "%", "device_class": "humidity", "state_class": "measurement"},
     lambda i: f"{40 + i % 30}"),
    (0.20, 7200.0, "binary_sensor", {"device_class": "motion"}, lambda i: ("on", "off")[i % 2]),
    (0.15, 7200.0, "switch", {}, lambda i: ("on", "off")[i % 2]),
    (0.15, 7200.0, "light", {"supported_color_modes": ["brightness"], "color_mode": "brightness",
                             "brightness": 180, "supported_features": 40}, lambda i: ("on", "off")[i % 2]),
]  # fmt: skip


def house(entities: int) -> list[tuple[str, dict[str, Any], float, Any]]:
    """(entity_id, attributes, interval_s, value maker) for ``entities`` entities in the KINDS shares."""
    out: list[tuple[str, dict[str, Any], float, Any]] = []
    for share, interval, domain, attributes, make in KINDS:
        for _ in range(max(1, round(share * entities))):
            n = len(out)
            name = f"Bench {domain.replace('_', ' ')} {n}"
            out.append((f"{domain}.bench_{n:04d}", {**attributes, "friendly_name": name}, interval, make))
    return out[:entities]


def fill_database(db: Path, entities: list[tuple[str, dict[str, Any], float, Any]], days: float) -> int:
    """Rows for ``days`` of history up to a minute ago, written the way HA's recorder writes them."""
    rng = random.Random(7)
    now = time.time() - 60.0
    start = now - days * 86_400.0 + 600.0  # inside the recorder's purge_keep_days
    connection = sqlite3.connect(db)
    rows = 0
    try:
        for entity_id, attributes, interval, make in entities:
            cursor = connection.execute("INSERT INTO states_meta (entity_id) VALUES (?)", (entity_id,))
            metadata_id = cursor.lastrowid
            shared = orjson.dumps(attributes).decode()
            cursor = connection.execute(
                "INSERT INTO state_attributes (hash, shared_attrs) VALUES (?, ?)", (rng.getrandbits(32), shared)
            )
            attributes_id = cursor.lastrowid
            batch = []
            t = start + rng.random() * interval
            i = 0
            while t < now:
                # last_changed_ts is NULL where it equals last_updated_ts, as HA stores it.
                batch.append((make(i), t, metadata_id, attributes_id, rng.randbytes(16)))
                i += 1
                t += interval * (0.5 + rng.random())
            connection.executemany(
                "INSERT INTO states (state, last_changed_ts, last_updated_ts, metadata_id, attributes_id, "
                "origin_idx, context_id_bin) VALUES (?, NULL, ?, ?, ?, 0, ?)",
                batch,
            )
            rows += len(batch)
        # A recorder that has run for these days has a run from their start; HA answers nothing for a window
        # that ends before its first run.
        first_run = datetime.fromtimestamp(start - 60.0, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        connection.execute(
            "UPDATE recorder_runs SET start = ?, created = ? WHERE run_id = (SELECT min(run_id) FROM recorder_runs)",
            (first_run, first_run),
        )
        connection.commit()
    finally:
        connection.close()
    return rows


async def set_current(ha: RealHomeAssistant, entities: list[tuple[str, dict[str, Any], float, Any]]) -> None:
    import aiohttp

    headers = {"Authorization": f"Bearer {ha.token}"}
    queue = list(entities)
    async with aiohttp.ClientSession(headers=headers) as session:

        async def worker() -> None:
            while queue:
                entity_id, attributes, _, make = queue.pop()
                async with session.post(
                    f"{ha.base_url}/api/states/{entity_id}", json={"state": make(10**6), "attributes": attributes}
                ) as response:
                    response.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(8)))


def recorded(db: Path, since: float) -> int:
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(connection.execute("SELECT count(*) FROM states WHERE last_updated_ts >= ?", (since,)).fetchone()[0])
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=10.0)
    parser.add_argument("--entities", type=int, default=500)
    parser.add_argument(
        "--ask-days",
        type=float,
        default=None,
        help="import this far back (default --days; more asks for days the recorder does not hold)",
    )
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="homeiq-bench-days-"))
    influx = InfluxServer(root / "influxd")
    influx.start()
    ha = RealHomeAssistant(root / "ha", ensure_ha_venv(), recorder=True, commit_interval_s=1)
    db = ha.config_dir / "home-assistant_v2.db"
    entities = house(args.entities)
    try:
        ha.start()  # creates the recorder's schema
        ha.stop()
        started = time.monotonic()
        rows = fill_database(db, entities, args.days)
        fill_s = time.monotonic() - started
        sys.stderr.write(f"wrote {rows} recorder rows in {fill_s:.1f} s\n")
        ha.start()
        asyncio.run(set_current(ha, entities))
        time.sleep(3.0)  # the recorder commits every second here
        ask_days = args.days if args.ask_days is None else args.ask_days
        since = time.time() - ask_days * 86_400.0
        in_recorder = recorded(db, since)
        env = import_env(root, ha, influx, "days")
        command = [sys.executable, "-m", "homeiq_daemon", "import-history", "--since", f"{ask_days:g}d"]
        ours = run_child(command, env, "import.starting", "import.done")
    finally:
        ha.stop()
        influx.stop()
    result = {
        "bench": "backfill_days",
        "command": f".venv/bin/python bench/backfill_days.py --days {args.days:g} --entities {args.entities}"
        + ("" if args.ask_days is None else f" --ask-days {args.ask_days:g}"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "home_assistant": "2024.3.3, recorder on SQLite",
        "days": args.days,
        "asked_days": ask_days,
        "entities": len(entities),
        "recorded_states": in_recorder,
        "states": ours["states"],
        "points": ours["points"],
        "seconds": ours["seconds"],
        "states_per_s": round(ours["states"] / ours["seconds"]),
        "rss_growth_mib": ours["rss_growth_mib"],
        "rss_peak_mib": ours["rss_peak_mib"],
        "targets": {"rss_growth_mib": 20},
    }
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
