"""Command line: ``homeiq run | check-config | history | --version``. The one place that maps errors to
exit codes (see errors.py and the README's exit code table)."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from homeiq_daemon import __version__
from homeiq_daemon.cli import doctor as doctor_cli
from homeiq_daemon.cli import importhistory as importhistory_cli
from homeiq_daemon.cli import metadata as cli_metadata
from homeiq_daemon.cli import migrate as migrate_cli
from homeiq_daemon.cli import status as status_cli
from homeiq_daemon.cli import switchbot as switchbot_cli
from homeiq_daemon.cli import webhooks as webhooks_cli
from homeiq_daemon.config import Settings, load_settings, redacted_dict
from homeiq_daemon.errors import EXIT_CONFIG, EXIT_OK, EXIT_SOFTWARE, EXIT_USAGE, ConfigError, HomeIQError
from homeiq_daemon.redaction import redact_text, redact_url
from homeiq_daemon.runtime.logs import configure_logging

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def parse_since(text: str, now_ns: int | None = None, option: str = "--since") -> int:
    """``1h``/``30m``/``7d`` ago, or an ISO 8601 time -> nanoseconds since the epoch."""
    now = time.time_ns() if now_ns is None else now_ns
    match = _DURATION.match(text)
    if match:
        return now - int(float(match.group(1)) * _UNIT_S[match.group(2)] * 1e9)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise HomeIQError(f"{option} {text!r}: use a duration like 1h, 30m, 7d or an ISO time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1e9)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="homeiq", description="Headless companion daemon for Home Assistant.")
    parser.add_argument("--version", action="version", version=f"homeiq {__version__}")
    parser.add_argument(
        "--config", metavar="PATH", help="TOML config file (default: /etc/homeiq/homeiq.toml if present)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--replay", metavar="FILE", help="feed recorded state_changed events from a JSONL file")
    run.add_argument(
        "--replay-speed", type=float, metavar="X", help="0 = as fast as possible (default), 1 = recorded pace"
    )
    run.add_argument("--shift-to-now", action="store_true", help="move replayed timestamps so the last event lands now")
    run.add_argument(
        "--shift-to",
        metavar="TIME",
        help="move replayed timestamps so the last event lands at this ISO time (re-runs write the same points)",
    )
    run.add_argument("--quiet", action="store_true", help="at a terminal: no heartbeat line every 10 s")
    run.add_argument(
        "--keep-running",
        action="store_true",
        help="with --replay and no Home Assistant: keep running after the file ends",
    )

    sub.add_parser("check-config", help="validate the configuration and print it, secrets redacted")

    history = sub.add_parser(
        "history", help="print the newest points of one entity from the configured sink (InfluxDB or embedded)"
    )
    history.add_argument("entity_id")
    history.add_argument("--since", default="24h", help="duration ago (2h, 3d) or ISO time; default 24h")
    history.add_argument("--until", default=None, help="duration ago (2h, 3d) or ISO time; default now")
    history.add_argument("--limit", type=_positive_int, default=1000, help="newest N points (default 1000)")
    history.add_argument("--json", action="store_true", help="one JSON object per line")

    status_cli.add_parser(sub)
    doctor_cli.add_parser(sub)
    webhooks_cli.add_parser(sub)
    migrate_cli.add_parser(sub)
    cli_metadata.add_parsers(sub)  # devices, entities
    switchbot_cli.add_parser(sub)
    importhistory_cli.add_parser(sub)
    return parser


def _load(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(args.config, **overrides)


def _load_read_only(args: argparse.Namespace) -> Settings:
    """For commands that read stored data or talk to something other than HA: no HA token needed."""
    return load_settings(args.config, read_only=True)


def cmd_run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    replay: dict[str, Any] = {}
    if args.replay:
        replay["path"] = args.replay
    if args.replay_speed is not None:
        replay["speed"] = args.replay_speed
    if args.shift_to_now:
        replay["shift_to_now"] = True
    if args.shift_to:
        replay["shift_to"] = args.shift_to
    if replay:
        overrides["replay"] = replay
    settings = _load(args, **overrides)
    configure_logging(settings.log)
    os.umask(0o077)  # state files hold tokens' reach and the home's history: private by default
    from homeiq_daemon.app import App  # noqa: PLC0415 - keeps --version and check-config light

    exit_when_done = settings.replay.path is not None and not settings.home_assistant.url and not args.keep_running
    app = App(settings, exit_when_sources_done=exit_when_done)
    from homeiq_daemon.cli.console import attach_console  # noqa: PLC0415
    from homeiq_daemon.runtime.systemd import attach_service  # noqa: PLC0415

    console = attach_console(app, quiet=args.quiet)  # at a terminal: the page's URL, first points, a heartbeat

    service = attach_service(app)  # READY/STATUS/WATCHDOG/STOPPING when run by systemd
    try:
        asyncio.run(app.run())
    finally:
        service.close()
    console.check()  # a short run (a replay) may have written its first points in the final flush
    return EXIT_OK


def _explain_ha_names(args: argparse.Namespace) -> None:
    """A config that failed: say what each of Home Assistant's influxdb names found in it is called here."""
    import tomllib  # noqa: PLC0415

    from homeiq_daemon.cli.ha_influx import explain_names  # noqa: PLC0415
    from homeiq_daemon.config import resolve_config_path  # noqa: PLC0415

    path = resolve_config_path(args.config)
    try:
        data = tomllib.loads(path.read_text()) if path is not None else None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return
    lines = explain_names(data)
    if lines:
        sys.stderr.write(f"{path} uses Home Assistant's influxdb names "
                         "(homeiq migrate-ha-config converts a whole block):\n")  # fmt: skip
        sys.stderr.writelines(f"  {line}\n" for line in lines)


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        settings = _load(args)
    except ConfigError:
        _explain_ha_names(args)
        raise
    data = redacted_dict(settings)
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    sink = (
        f"InfluxDB {redact_url(settings.influxdb.url or '')}"
        if settings.uses_influxdb
        else f"embedded history in {settings.history_db_path}"
    )
    ha_url = settings.home_assistant.url
    source = redact_url(ha_url) if ha_url else (str(settings.replay.path) if settings.replay.path else "none")
    if settings.switchbot.enabled:
        source = f"{source}+switchbot" if source != "none" else "switchbot"
    sys.stderr.write(f"config OK: source={source} sink={sink}\n")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from homeiq_daemon.cli.history_source import newest_points  # noqa: PLC0415

    settings = _load_read_only(args)
    now = time.time_ns()
    start = parse_since(args.since, now)
    end = parse_since(args.until, now, "--until") if args.until else now + 1
    if end <= start:
        raise HomeIQError(f"--until {args.until} is not after --since {args.since}")
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


def _leave_status(message: str) -> None:
    from homeiq_daemon.runtime.systemd import notify_failure  # noqa: PLC0415

    notify_failure(message)  # shown by `systemctl status homeiq`; a no-op outside systemd


def cmd_import_history(args: argparse.Namespace) -> int:
    settings = _load(args)
    configure_logging(settings.log)
    os.umask(0o077)
    return importhistory_cli.cmd_import_history(args, settings)


def cmd_webhooks(args: argparse.Namespace) -> int:
    return webhooks_cli.run(args, _load_read_only(args))


def cmd_switchbot(args: argparse.Namespace) -> int:
    return switchbot_cli.run(args, _load_read_only(args))


def cmd_status(args: argparse.Namespace) -> int:
    return status_cli.run(args, _load_read_only(args))


def cmd_doctor(args: argparse.Namespace) -> int:
    return doctor_cli.run(args, lambda: _load_read_only(args))


COMMANDS = {
    "status": cmd_status,
    "doctor": cmd_doctor,
    "run": cmd_run,
    "check-config": cmd_check_config,
    "history": cmd_history,
    "webhooks": cmd_webhooks,
    "switchbot": cmd_switchbot,
    "migrate-ha-config": migrate_cli.cmd_migrate,
    "import-history": cmd_import_history,
    **cli_metadata.COMMANDS,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except HomeIQError as exc:
        prefix = "config error" if exc.exit_code == EXIT_CONFIG else "error"
        message = redact_text(str(exc))  # an error may quote a URL: never with its user:password@
        sys.stderr.write(f"homeiq: {prefix}: {message}\n")
        _leave_status(f"{prefix}: {message}")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `homeiq history … | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - a bug: one line plus the traceback, and a distinct exit code
        import traceback  # noqa: PLC0415

        sys.stderr.write(redact_text(traceback.format_exc()))
        sys.stderr.write(f"homeiq: internal error: {redact_text(repr(exc))}\n")
        return EXIT_SOFTWARE
