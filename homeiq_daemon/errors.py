"""The daemon's exception hierarchy and the exit codes it maps to (the CLI is the only place that exits)."""

from __future__ import annotations

# sysexits.h values, so systemd's RestartPreventExitStatus= can name them.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 64  # EX_USAGE: bad command line
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: a resource is busy or not there yet (restarting may cure it)
EXIT_SOFTWARE = 70  # EX_SOFTWARE: internal error (a bug)
EXIT_CANTCREAT = 73  # EX_CANTCREAT: state directory not writable
EXIT_NOPERM = 77  # EX_NOPERM: Home Assistant rejected the access token
EXIT_CONFIG = 78  # EX_CONFIG: the configuration is invalid


class HomeIQError(Exception):
    """Base of every error the daemon raises on purpose."""

    exit_code = EXIT_FAILURE


class ConfigError(HomeIQError):
    """The configuration is invalid; the message names the setting."""

    exit_code = EXIT_CONFIG


class UsageError(HomeIQError):
    """A command-line argument is wrong; the message names it."""

    exit_code = EXIT_USAGE


class UnavailableError(HomeIQError):
    """Something the daemon needs is busy or not there yet (the HTTP port in use, the address not up)."""

    exit_code = EXIT_UNAVAILABLE


class AuthError(HomeIQError):
    """A hub rejected our credentials. Never retried in a loop: Home Assistant bans IPs for that."""

    exit_code = EXIT_NOPERM


class StateDirError(HomeIQError):
    """The state directory cannot be created or written."""

    exit_code = EXIT_CANTCREAT


class ProtocolError(HomeIQError):
    """A peer sent something that breaks the protocol (malformed frame, unexpected message)."""


class SinkError(HomeIQError):
    """Writing to the time-series sink failed."""


class TransientSinkError(SinkError):
    """The sink is down, slow or overloaded; the same batch may succeed later."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.status = status


class RejectedBatchError(SinkError):
    """The sink refused (part of) a batch for its content; retrying the same bytes will not help."""

    def __init__(self, message: str, *, status: int):
        super().__init__(message)
        self.status = status


class SinkAuthError(SinkError):
    """The sink refused our credentials (401/403)."""

    def __init__(self, message: str, *, status: int):
        super().__init__(message)
        self.status = status


class HistoryUnavailable(HomeIQError):
    """The time-series backend could not answer a history query (the API answers 502)."""
