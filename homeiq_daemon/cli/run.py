"""``homeiq run`` (the daemon) and ``homeiq check-config``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import orjson

from homeiq_daemon.cli.common import Loader, add_command
from homeiq_daemon.config import Settings, redacted_dict
from homeiq_daemon.errors import EXIT_OK, ConfigError
from homeiq_daemon.redaction import redact_url
from homeiq_daemon.runtime.logs import configure_logging


def register(sub: Any) -> None:
    run = add_command(sub, "run", cmd_run, help="run the daemon")
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
    add_command(sub, "check-config", cmd_check_config, help="validate the configuration and print it, secrets redacted")


def _replay_overrides(args: argparse.Namespace) -> dict[str, Any]:
    replay: dict[str, Any] = {}
    if args.replay:
        replay["path"] = args.replay
    if args.replay_speed is not None:
        replay["speed"] = args.replay_speed
    if args.shift_to_now:
        replay["shift_to_now"] = True
    if args.shift_to:
        replay["shift_to"] = args.shift_to
    return {"replay": replay} if replay else {}


def cmd_run(args: argparse.Namespace, load: Loader) -> int:
    settings = load(**_replay_overrides(args))
    configure_logging(settings.log.format, settings.log.level)
    os.umask(0o077)  # state files hold tokens' reach and the home's history: private by default
    from homeiq_daemon.app import App  # noqa: PLC0415 - keeps --version and check-config light
    from homeiq_daemon.cli.console import attach_console  # noqa: PLC0415
    from homeiq_daemon.cli.reload import attach_reload  # noqa: PLC0415
    from homeiq_daemon.runtime.systemd import attach_service  # noqa: PLC0415

    exit_when_done = settings.replay.path is not None and not settings.home_assistant.url and not args.keep_running
    app = App(settings, exit_when_sources_done=exit_when_done)
    console = attach_console(app, quiet=args.quiet)  # at a terminal: the page's URL, first points, a heartbeat
    service = attach_service(app)  # READY/STATUS/WATCHDOG/STOPPING when run by systemd
    attach_reload(app, lambda: load(**_replay_overrides(args)))  # SIGHUP: log, mapping, webhook rules
    try:
        asyncio.run(app.run())
    finally:
        service.close()
    console.check()  # a short run (a replay) may have written its first points in the final flush
    return EXIT_OK


def _summary(settings: Settings) -> str:
    sink = (
        f"InfluxDB {redact_url(settings.influxdb.url or '')}"
        if settings.uses_influxdb
        else f"embedded history in {settings.history_db_path}"
    )
    ha_url = settings.home_assistant.url
    source = redact_url(ha_url) if ha_url else (str(settings.replay.path) if settings.replay.path else "none")
    if settings.switchbot.enabled:
        source = f"{source}+switchbot" if source != "none" else "switchbot"
    return f"config OK: source={source} sink={sink}"


def _explain_ha_names(args: argparse.Namespace) -> None:
    """A config that failed: say what each of Home Assistant's influxdb names found in it is called here."""
    import tomllib  # noqa: PLC0415

    from homeiq_daemon.cli.ha_influx import explain_names  # noqa: PLC0415
    from homeiq_daemon.config import resolve_config_path  # noqa: PLC0415

    path = resolve_config_path(getattr(args, "config", None))
    try:
        data = tomllib.loads(path.read_text()) if path is not None else None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return
    lines = explain_names(data)
    if lines:
        sys.stderr.write(f"{path} uses Home Assistant's influxdb names "
                         "(homeiq migrate-ha-config converts a whole block):\n")  # fmt: skip
        sys.stderr.writelines(f"  {line}\n" for line in lines)


def cmd_check_config(args: argparse.Namespace, load: Loader) -> int:
    try:
        settings = load()
    except ConfigError:
        _explain_ha_names(args)
        raise
    sys.stdout.write(orjson.dumps(redacted_dict(settings), option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stderr.write(_summary(settings) + "\n")
    return EXIT_OK
