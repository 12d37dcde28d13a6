"""systemd's service protocol: the only module that talks to the service manager.

* ``sd_notify``: datagrams of ``KEY=value`` lines on the AF_UNIX socket named by ``$NOTIFY_SOCKET``
  (a path, or ``@name`` for the abstract namespace). Nothing is sent when the variable is unset, so the
  same binary runs unchanged at a terminal.
* The service lifecycle on top of it (``ServiceNotifier``): ``READY=1`` when the App is ready (config,
  store and first hub connection, or the embedded default, are up); ``STATUS=`` kept current by a
  scheduler job; ``WATCHDOG=1`` from an event-loop callback, and only while ``Liveness`` says the pipeline
  is healthy, so a stuck loop, a dead writer task or a wedged write lets the watchdog fire;
  ``STOPPING=1`` then ``EXTEND_TIMEOUT_USEC=`` while the shutdown flush runs.

The protocol is small and stable (sd_notify(3)); implementing it here avoids a C extension on the Pi.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from homeiq_daemon.redaction import redact_text
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.stats import Stats

if TYPE_CHECKING:
    from homeiq_daemon.runtime.scheduler import Scheduler


class Liveness(Protocol):
    def check(self) -> str | None:
        """None when healthy, else why not (the watchdog is then withheld)."""
        ...


class ServiceHost(Protocol):
    """What the notifier needs of the daemon it reports on (the App is one); runtime/ imports no App."""

    stats: Stats
    ready: asyncio.Event
    on_ready: list[Callable[[], None]]
    on_stopping: list[Callable[[float], None]]
    scheduler: Scheduler

    @property
    def liveness(self) -> Liveness: ...

    @property
    def hub_configured(self) -> bool: ...

log = get_logger("homeiq.systemd")

STATUS_INTERVAL_S = 10.0
STOP_GRACE_S = 5.0  # asked for beyond our own shutdown deadline: closing connections, the interpreter's exit
_MAX_STATUS_CHARS = 200


def parse_notify_address(value: str) -> str | bytes | None:
    """``$NOTIFY_SOCKET`` -> an AF_UNIX address, or None when it is not one (``vsock:`` needs systemd 253+)."""
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def clean_value(value: str) -> str:
    """One line: the protocol separates assignments with newlines."""
    return " ".join(value.split())


def encode_notify(assignments: Mapping[str, str | int]) -> bytes:
    return "\n".join(f"{key}={clean_value(str(value))}" for key, value in assignments.items()).encode()


def watchdog_interval_s(environ: Mapping[str, str], pid: int) -> float | None:
    """The watchdog timeout systemd expects (``WatchdogSec=``), or None when there is no watchdog for us."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None  # meant for another process (we were started by a wrapper that did not exec)
    return int(usec) / 1_000_000


class Notifier:
    """Sends notify datagrams; a no-op without ``$NOTIFY_SOCKET``. Never blocks and never raises."""

    def __init__(self, address: str | bytes | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self.sent = 0
        self.failed = 0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        address = parse_notify_address(raw) if raw else None
        if raw and address is None:
            log.warning("systemd.notify_unsupported", notify_socket=raw)
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **assignments: str | int) -> bool:
        if self.address is None:
            return False
        status = assignments.get("STATUS")
        if isinstance(status, str):  # shown by `systemctl status` to any user: no URL secrets
            assignments["STATUS"] = redact_text(status)
        payload = encode_notify(assignments)
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(payload, self.address)
        except OSError as exc:
            # A full socket buffer or a restarting manager: the next tick sends again. Log the first only.
            self.failed += 1
            if self.failed == 1:
                log.warning("systemd.notify_failed", error=str(exc))
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def status_line(stats: Stats, events_per_s: float, *, hub_configured: bool = True) -> str:
    """The one line ``systemctl status homeiq`` shows: hub, sink, rate, spool depth."""
    hub = stats.hub_state if hub_configured else "not configured"
    sink = stats.sink_state
    if sink == "embedded":
        sink_text = "embedded history"
    elif sink == "down" and stats.sink_down_since is not None:
        sink_text = f"sink down {_ago(time.time() - stats.sink_down_since)}"
    else:
        sink_text = f"sink {sink}"
    spool = f"spool {stats.spool_points:,} points" if stats.spool_points else "spool empty"
    dropped = sum(stats.points_dropped.values())
    tail = f", {dropped:,} dropped" if dropped else ""
    return f"hub {hub}, {sink_text}, {events_per_s:.1f} events/s, {stats.points_written:,} written, {spool}{tail}"


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class ServiceNotifier:
    """Drives the notify protocol from the App's lifecycle hooks."""

    def __init__(
        self,
        app: ServiceHost,
        notifier: Notifier,
        *,
        watchdog_s: float | None,
        status_interval_s: float = STATUS_INTERVAL_S,
    ) -> None:
        self.app = app
        self.notifier = notifier
        self.watchdog_s = watchdog_s
        # systemd's advice: ping at half the timeout, so one late callback is not yet a failure.
        self.ping_interval_s = watchdog_s / 2 if watchdog_s else None
        self.status_interval_s = status_interval_s
        self.pings = 0
        self.withheld = 0
        self._handle: asyncio.TimerHandle | None = None
        self._stop_deadline: float | None = None
        self._withheld_reason: str | None = None
        self._last_events = 0
        self._last_status_at = time.monotonic()

    def attach(self) -> None:
        self.app.on_ready.append(self._on_ready)
        self.app.on_stopping.append(self._on_stopping)
        if self.notifier.enabled:
            self.app.scheduler.every("systemd_status", self.status_interval_s, self.update_status)
            self.notifier.notify(STATUS="starting")

    # --- lifecycle --------------------------------------------------------------------------------

    def _on_ready(self) -> None:
        self._last_events = self._events()
        self._last_status_at = time.monotonic()
        self.notifier.notify(READY=1, STATUS=self._status(0.0))
        log.info("systemd.ready", watchdog_s=self.watchdog_s, notify=self.notifier.enabled)
        if self.ping_interval_s is not None:
            self._tick()  # first ping at once: the manager is counting from now

    def _on_stopping(self, budget_s: float) -> None:
        self._stop_deadline = time.monotonic() + budget_s
        self.notifier.notify(STOPPING=1, STATUS="stopping: flushing batches")
        self._extend()
        if self._handle is not None:
            self._handle.cancel()
        self._handle = asyncio.get_running_loop().call_later(1.0, self._stopping_tick)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.notifier.close()

    # --- watchdog -----------------------------------------------------------------------------------

    def _tick(self) -> None:
        """Runs as a loop callback: if the loop is stuck, this never runs and the watchdog fires."""
        assert self.ping_interval_s is not None
        if self._stop_deadline is not None:
            return
        reason = self.app.liveness.check()
        if reason is None:
            self.notifier.notify(WATCHDOG=1)
            self.pings += 1
            if self._withheld_reason is not None:
                log.info("systemd.watchdog_resumed", after=self._withheld_reason)
                self._withheld_reason = None
        else:
            self.withheld += 1
            if reason != self._withheld_reason:
                self._withheld_reason = reason
                log.error("systemd.watchdog_withheld", reason=reason, watchdog_s=self.watchdog_s)
                self.notifier.notify(STATUS=f"unhealthy: {reason}"[:_MAX_STATUS_CHARS])
        self._handle = asyncio.get_running_loop().call_later(self.ping_interval_s, self._tick)

    def _stopping_tick(self) -> None:
        self._extend()
        self._handle = asyncio.get_running_loop().call_later(1.0, self._stopping_tick)

    def _extend(self) -> None:
        """Tell the manager how long the flush may still take, so TimeoutStopSec= does not cut it short."""
        if self._stop_deadline is None:
            return
        left_s = max(0.0, self._stop_deadline - time.monotonic()) + STOP_GRACE_S
        self.notifier.notify(EXTEND_TIMEOUT_USEC=int(left_s * 1_000_000))

    # --- status -------------------------------------------------------------------------------------

    def _events(self) -> int:
        return sum(self.app.stats.events_received.values())

    def _status(self, events_per_s: float) -> str:
        hub_configured = self.app.hub_configured
        return status_line(self.app.stats, events_per_s, hub_configured=hub_configured)

    async def update_status(self) -> None:
        if not self.app.ready.is_set() or self._stop_deadline is not None:
            return
        now = time.monotonic()
        events = self._events()
        rate = (events - self._last_events) / max(now - self._last_status_at, 1e-3)
        self._last_events, self._last_status_at = events, now
        if self._withheld_reason is None:
            self.notifier.notify(STATUS=self._status(rate))


def attach_service(app: ServiceHost, environ: Mapping[str, str] | None = None) -> ServiceNotifier:
    """Wire the App to systemd (a no-op sender when not run by systemd). Call before ``app.run()``."""
    env = os.environ if environ is None else environ
    # A watchdog kill is SIGABRT: dump every thread's Python stack to stderr (the journal) on the way out.
    if not faulthandler.is_enabled():
        faulthandler.enable()
    notifier = Notifier.from_environ(env)
    watchdog_s = watchdog_interval_s(env, os.getpid()) if notifier.enabled else None
    service = ServiceNotifier(app, notifier, watchdog_s=watchdog_s)
    service.attach()
    return service


def notify_failure(message: str, environ: Mapping[str, str] | None = None) -> None:
    """Best effort, at exit: leave the reason in ``systemctl status``."""
    notifier = Notifier.from_environ(environ)
    if notifier.enabled:
        notifier.notify(STATUS=message[:_MAX_STATUS_CHARS])
        notifier.close()
