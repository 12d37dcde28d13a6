"""What every command module shares: the ``--config`` option and the handler signature.

A command module has ``register(sub)``: it adds its subparser(s) with :func:`add_command` and sets
``handler`` on each. A handler gets the parsed arguments and a loader for the settings; it hands each part
of its work only the settings section it needs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any, Protocol

from homeiq_daemon.config import Settings, load_settings
from homeiq_daemon.errors import UsageError
from homeiq_daemon.model import MAX_TIME_NS, MIN_TIME_NS
from homeiq_daemon.runtime.timeparse import TimeParseError, parse_time_ns

CONFIG_HELP = "TOML config file (default: /etc/homeiq/homeiq.toml if present)"


class Loader(Protocol):
    def __call__(self, **overrides: Any) -> Settings: ...


Handler = Callable[[argparse.Namespace, Loader], int]


def config_option() -> argparse.ArgumentParser:
    """``--config`` for a subcommand, so it may follow the command too (``homeiq run --config x.toml``).

    SUPPRESS as the default keeps a ``--config`` given before the command when the subcommand has none.
    """
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=CONFIG_HELP)
    return parent


def add_command(
    sub: Any, name: str, handler: Handler | None, *, takes_config: bool = True, **kwargs: Any
) -> argparse.ArgumentParser:
    """A subparser that accepts ``--config`` (unless ``takes_config`` is False: a command that reads no
    settings); ``handler`` runs it (None: its own sub-actions set one)."""
    parents = [config_option()] if takes_config else []
    parser: argparse.ArgumentParser = sub.add_parser(name, parents=parents, **kwargs)
    if handler is not None:
        parser.set_defaults(handler=handler)
    return parser


def loader(args: argparse.Namespace) -> Loader:
    def load(**overrides: Any) -> Settings:
        return load_settings(getattr(args, "config", None), **overrides)

    return load


def parse_since(text: str, now_ns: int | None = None, option: str = "--since") -> int:
    """A time given on the command line (runtime/timeparse.py: ``1h``, ``7d``, ISO) -> ns since the epoch."""
    try:
        when = parse_time_ns(text, time.time_ns() if now_ns is None else now_ns)
    except TimeParseError:
        raise UsageError(f"{option} {text[:60]!r}: use a duration like 1h, 30m, 7d or an ISO time") from None
    # Years 1 and 9999 are valid times, just outside what any sink stores: the earliest / latest there is.
    return min(max(when, MIN_TIME_NS), MAX_TIME_NS)


MAX_LIMIT = 1_000_000_000


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    if value > MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_LIMIT}")
    return value
