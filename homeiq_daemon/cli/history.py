"""``homeiq history ENTITY``: the newest points of one entity from the configured sink (InfluxDB or embedded)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from homeiq_daemon.cli.common import Loader, add_command, parse_since, positive_int
from homeiq_daemon.errors import EXIT_OK, UsageError


def register(sub: Any) -> None:
    history = add_command(
        sub,
        "history",
        cmd_history,
        help="print the newest points of one entity from the configured sink (InfluxDB or embedded)",
    )
    history.add_argument("entity_id")
    history.add_argument("--since", default="24h", help="duration ago (2h, 3d) or ISO time; default 24h")
    history.add_argument("--until", default=None, help="duration ago (2h, 3d) or ISO time; default now")
    history.add_argument("--limit", type=positive_int, default=1000, help="newest N points (default 1000)")
    history.add_argument("--json", action="store_true", help="one JSON object per line")


def cmd_history(args: argparse.Namespace, load: Loader) -> int:
    from homeiq_daemon.cli.history_source import newest_points  # noqa: PLC0415

    settings = load(read_only=True)
    now = time.time_ns()
    start = parse_since(args.since, now)
    end = parse_since(args.until, now, "--until") if args.until else now + 1
    if end <= start:
        raise UsageError(f"--until {args.until} is not after --since {args.since}")
    rows = newest_points(settings, args.entity_id, start, end, args.limit)
    out = sys.stdout
    for row in rows:
        when = datetime.fromtimestamp(row.time_ns / 1e9, UTC).isoformat(timespec="milliseconds")
        if args.json:
            record = {
                "time": when,
                "entity_id": row.entity_id,
                "measurement": row.measurement,
                "value": row.value,
                "state": row.state,
                "fields": row.fields,
            }
            out.write(orjson.dumps(record).decode() + "\n")
        else:
            shown = row.state if row.state is not None else row.value
            if row.state is not None and row.value is not None:
                shown = f"{row.state} ({row.value:g})"
            unit = "" if row.measurement == row.entity_id else f" {row.measurement}"
            out.write(f"{when}  {shown}{unit}\n")
    if not rows:
        sys.stderr.write(f"no points for {args.entity_id} in that window\n")
    return EXIT_OK
