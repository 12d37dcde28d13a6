"""Command line: ``homeiq COMMAND [--config PATH] …``. Assembles the parser from one module per command
group and is the one place that maps errors to exit codes (see errors.py and the README's exit code table).

To add a command group: a module here with ``register(sub)`` that adds its subparser(s) through
``common.add_command`` (which gives them ``--config`` and a handler), listed in ``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from homeiq_daemon import __version__
from homeiq_daemon.cli import doctor, history, importhistory, metadata, migrate, run, status, switchbot, webhooks
from homeiq_daemon.cli.common import CONFIG_HELP, loader
from homeiq_daemon.errors import EXIT_CONFIG, EXIT_OK, EXIT_SOFTWARE, EXIT_USAGE, HomeIQError
from homeiq_daemon.redaction import redact_text

COMMAND_MODULES = (status, doctor, run, history, webhooks, migrate, metadata, switchbot, importhistory)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="homeiq", description="Headless companion daemon for Home Assistant.")
    parser.add_argument("--version", action="version", version=f"homeiq {__version__}")
    parser.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def _leave_status(message: str) -> None:
    from homeiq_daemon.runtime.systemd import notify_failure  # noqa: PLC0415

    notify_failure(message)  # shown by `systemctl status homeiq`; a no-op outside systemd


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.handler(args, loader(args))
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
    return code
