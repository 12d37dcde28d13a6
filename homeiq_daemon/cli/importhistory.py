"""``homeiq import-history --since 10d [--entity GLOB ...] [--until WHEN]``: HA's recorder -> the sink.

One shot, into the configured sink (InfluxDB, or the embedded history store), with the daemon's own filters,
mapping and schema and each state's own ``last_updated``: the same points live capture writes, so it is safe
while the daemon runs (a point written twice stays one point). Resumable: Ctrl-C, then the same command
again, continues from the checkpoint in the state directory. Progress with rate and ETA on a terminal,
periodic structured progress lines otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable
from typing import Any

from homeiq_daemon.cli.common import Loader, add_command, parse_since
from homeiq_daemon.config import Settings
from homeiq_daemon.errors import EXIT_OK, ConfigError, HomeIQError, SinkAuthError, TransientSinkError
from homeiq_daemon.model import EntityState, ns_to_iso
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.progress import Progress
from homeiq_daemon.runtime.retry import backoff_delay
from homeiq_daemon.runtime.stats import Stats

log = get_logger("homeiq.import")

_WRITE_ATTEMPTS = 8
_INTERRUPTED = 130


def register(sub: Any) -> None:
    parser = add_command(
        sub,
        "import-history",
        cmd_import_history,
        help="import Home Assistant's recorder history into the configured sink (resumable)",
    )
    parser.add_argument("--since", required=True, help="how far back: a duration (10d, 12h) or an ISO time")
    parser.add_argument("--until", help="up to when (a duration ago or an ISO time; default: now)")
    parser.add_argument(
        "--entity", action="append", default=[], metavar="GLOB", help="only entities matching GLOB (repeatable)"
    )


class _SinkWriter:
    """Maps states with the daemon's mapper and writes them in one request per answer, retrying a sink that
    is briefly away (the checkpoint covers a longer outage: run the command again)."""

    def __init__(self, settings: Settings, stats: Stats) -> None:
        from homeiq_daemon.pipeline.mapping import PointMapper  # noqa: PLC0415 - keeps the CLI start light

        self.settings = settings
        self.stats = stats
        self.mapper = PointMapper(settings.mapping)
        self.writer: Any = None

    async def start(self) -> None:
        s = self.settings
        if s.uses_influxdb:
            from homeiq_daemon.sinks.influx.deadletter import DeadLetters  # noqa: PLC0415
            from homeiq_daemon.sinks.influx.writer import InfluxWriter  # noqa: PLC0415

            self.writer = InfluxWriter(s.influxdb, DeadLetters(s.state_dir / "deadletter"), self.stats)
        else:
            from homeiq_daemon.sinks.embedded import HistoryStore  # noqa: PLC0415

            self.writer = HistoryStore(s.history_db_path, retention_days=s.history.retention_days)
        await self.writer.start()
        await self.writer.ensure_database()

    async def close(self) -> None:
        if self.writer is not None:
            await self.writer.close()

    @property
    def describe(self) -> str:
        return str(self.writer.describe) if self.writer is not None else "?"

    def encode(self, states: list[EntityState]) -> tuple[bytes, int]:
        lines = [line for line in map(self.mapper.map_line, states) if line is not None]
        return ("\n".join(lines) + "\n").encode(), len(lines)

    def write(self, states: list[EntityState]) -> Awaitable[int]:
        """Map now (so the caller's next answer can be parsed while this is sent), send in the task."""
        body, count = self.encode(states)
        return self._send(body, count)

    async def _send(self, body: bytes, count: int) -> int:
        if count == 0:
            return 0
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                result = await self.writer.write(body, count)
                return int(result.written)
            except TransientSinkError as exc:
                if attempt == _WRITE_ATTEMPTS:
                    raise HomeIQError(
                        f"the sink ({self.describe}) did not take the import: {exc}; "
                        "run the same command again to resume"
                    ) from None
                await asyncio.sleep(backoff_delay(attempt, 0.5, 10.0))
            except SinkAuthError as exc:
                raise HomeIQError(f"the sink ({self.describe}) refused the credentials: {exc}") from None
        return 0


async def _import(settings: Settings, args: argparse.Namespace, since_ns: int, until_ns: int) -> dict[str, Any]:
    from homeiq_daemon.sources.homeassistant import importer  # noqa: PLC0415
    from homeiq_daemon.sources.homeassistant.connection import CommandFailed, open_connection  # noqa: PLC0415

    stats = Stats()
    sink = _SinkWriter(settings, stats)
    await sink.start()
    checkpoint = importer.Checkpoint(settings.state_dir / importer.CHECKPOINT_FILE)
    key = importer.args_key(args.since, args.until, args.entity, sink.describe)
    progress = Progress("import-history", unit="states", board=stats.progress)
    started = time.monotonic()
    try:
        async with open_connection(settings.home_assistant, stats) as conn:
            plan = checkpoint.load(key)
            if plan is None:
                entities = await importer.exported_entities(conn.call, sink.mapper.accepts, args.entity)
                size = importer.chunk_size(len(entities), settings.home_assistant.backfill)
                plan = importer.ImportPlan(key, entities, since_ns, until_ns, _size=size)
            else:
                log.info("import.resuming", chunk=plan.chunk, states_done=plan.states, entities=len(plan.entities))
            log.info(
                "import.starting",
                entities=len(plan.entities),
                since=ns_to_iso(plan.since_ns),
                until=ns_to_iso(plan.until_ns),
                sink=sink.describe,
            )

            def report(p: importer.ImportPlan) -> None:
                # The total is not known before the end: extrapolated from the share of the work done.
                fraction = p.fraction()
                estimate = int(p.states / fraction) if fraction > 0 else None
                progress.update(p.states, total=estimate, detail=f"entity chunk {p.chunk + 1}/{max(1, p.chunks)}")

            try:
                await importer.run_import(
                    conn.call, plan, settings.home_assistant.backfill, sink.write, checkpoint, on_progress=report
                )
            except CommandFailed as exc:
                from homeiq_daemon.sources.homeassistant.backfill import unavailable_reason  # noqa: PLC0415

                raise HomeIQError(f"cannot read the history: {await unavailable_reason(conn.call, exc.code)}") from None
    finally:
        await sink.close()
    progress.finish(detail=f"{plan.points} points")
    seconds = time.monotonic() - started
    summary = {
        "entities": len(plan.entities),
        "states": plan.states,
        "points": plan.points,
        "seconds": round(seconds, 3),
        "resumed": plan.resumed,
        "since": ns_to_iso(plan.since_ns),
        "until": ns_to_iso(plan.until_ns),
    }
    _report_horizon(plan)
    log.info("import.done", **summary)
    return summary


def _report_horizon(plan: Any) -> None:
    """Nothing returned older than a day after ``since``: the recorder does not keep that far back."""
    if not plan.earliest_ns or plan.resumed:
        return
    earliest = min(plan.earliest_ns.values())
    if earliest - plan.since_ns > 86_400 * 10**9:
        log.warning(
            "import.recorder_horizon",
            requested_since=ns_to_iso(plan.since_ns),
            oldest_state=ns_to_iso(earliest),
            reason="Home Assistant's recorder returned nothing older (its purge_keep_days); that part cannot be "
            "imported",
        )


def cmd_import_history(args: argparse.Namespace, load: Loader) -> int:
    from homeiq_daemon.runtime.logs import configure_logging  # noqa: PLC0415

    settings = load()
    configure_logging(settings.log.format, settings.log.level)
    os.umask(0o077)
    if not settings.home_assistant.url:
        raise ConfigError("home_assistant.url: import-history needs Home Assistant (url and token)")
    now_ns = time.time_ns()
    since_ns = parse_since(args.since, now_ns)
    until_ns = parse_since(args.until, now_ns) if args.until else now_ns
    if until_ns <= since_ns:
        raise HomeIQError(f"--until ({ns_to_iso(until_ns)}) must be after --since ({ns_to_iso(since_ns)})")
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        asyncio.run(_import(settings, args, since_ns, until_ns))
    except KeyboardInterrupt:
        log.warning("import.interrupted", hint="run the same command again to resume from the checkpoint")
        return _INTERRUPTED
    return EXIT_OK
