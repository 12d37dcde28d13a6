"""``homeiq devices`` and ``homeiq entities``: read the metadata store, read-only (safe while the daemon runs)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from homeiq_daemon.cli.common import Loader, add_command
from homeiq_daemon.errors import EXIT_OK, HomeIQError


def register(sub: Any) -> None:
    devices = add_command(sub, "devices", cmd_devices, help="list Home Assistant devices from the metadata store")
    devices.add_argument("--area", metavar="AREA", help="only devices in this area (id or name)")
    devices.add_argument("--json", action="store_true", help="one JSON object per line")

    entities = add_command(
        sub, "entities", cmd_entities, help="list entities (with their latest state) from the metadata store"
    )
    entities.add_argument("--area", metavar="AREA", help="only entities in this area (id or name)")
    entities.add_argument("--domain", metavar="DOMAIN", help="only this domain (sensor, light, …)")
    entities.add_argument("--device", metavar="DEVICE_ID", help="only entities of this device")
    entities.add_argument("--json", action="store_true", help="one JSON object per line")


def _no_store(path: Any) -> HomeIQError:
    return HomeIQError(f"no metadata store at {path} (has the daemon run with this state_dir?)")


def _area_id(path: Any, area: str | None) -> str | None:
    if area is None:
        return None
    from homeiq_daemon.metadata.sql import resolve_area  # noqa: PLC0415

    found = resolve_area(path, area)
    if found is None:
        raise HomeIQError(f"no area {area!r} (see `homeiq entities` or the area list in Home Assistant)")
    return found


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]]) -> str:
    cells = [[head for head, _ in columns]]
    for row in rows:
        cells.append(["" if get(row) is None else str(get(row)) for _, get in columns])
    widths = [min(max(len(line[i]) for line in cells), 48) for i in range(len(columns))]
    lines = []
    for line in cells:
        lines.append("  ".join(cell[:48].ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


def _emit(args: argparse.Namespace, rows: list[dict[str, Any]], columns: Any, what: str) -> int:
    out = sys.stdout
    if args.json:
        for row in rows:
            out.write(orjson.dumps(row).decode() + "\n")
    elif rows:
        out.write(_table(rows, columns))
    if not rows:
        sys.stderr.write(f"no {what} match\n")
    return EXIT_OK


def cmd_devices(args: argparse.Namespace, load: Loader) -> int:
    from homeiq_daemon.metadata.sql import read_devices  # noqa: PLC0415

    path = load(read_only=True).store_db_path
    try:
        rows = read_devices(path, _area_id(path, args.area))
    except FileNotFoundError:
        raise _no_store(path) from None
    columns = [
        ("DEVICE", lambda r: r["name"]),
        ("AREA", lambda r: r["area_name"] or r["area_id"]),
        ("MANUFACTURER", lambda r: r["manufacturer"]),
        ("MODEL", lambda r: r["model"]),
        ("ENTITIES", lambda r: r["entity_count"]),
        ("ID", lambda r: r["device_id"]),
    ]
    return _emit(args, rows, columns, "devices")


def cmd_entities(args: argparse.Namespace, load: Loader) -> int:
    from homeiq_daemon.metadata.sql import EntityQuery, read_entities  # noqa: PLC0415

    path = load(read_only=True).store_db_path
    try:
        query = EntityQuery(
            domain=args.domain, area_id=_area_id(path, args.area), device_id=args.device, limit=1_000_000
        )
        rows = read_entities(path, query)
    except FileNotFoundError:
        raise _no_store(path) from None

    def state(r: dict[str, Any]) -> str | None:
        if r["state"] is None:
            return None
        unit = r["unit_of_measurement"]
        return f"{r['state']} {unit}" if unit else r["state"]

    columns = [
        ("ENTITY", lambda r: r["entity_id"]),
        ("NAME", lambda r: r["name"]),
        ("STATE", state),
        ("AREA", lambda r: r["area_name"] or r["area_id"]),
        ("DEVICE", lambda r: r["device_name"]),
        ("LAST CHANGED", lambda r: r["last_changed"]),
    ]
    return _emit(args, rows, columns, "entities")

