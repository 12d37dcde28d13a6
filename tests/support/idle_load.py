"""Idle-connection load on the daemon's HTTP port (loopback only, bounded): ``count`` sockets that connect
and send nothing (optionally reconnecting ``reconnect_delay_s`` after the server closes one, as a stubborn
client would), while probes ask ``/healthz`` and the API at a steady pace. Shared by
tests/integration/test_http_load.py (functional outcome) and bench/http_idle.py (the latency figures)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from tests.support.daemon import stop_process
from tests.support.influxd import free_port


@dataclass
class IdleCrowd:
    port: int
    count: int
    reconnect_delay_s: float | None = None  # None: a socket the server closed stays closed
    connects: int = 0
    closed_by_server: int = 0
    connect_errors: int = 0
    open_now: int = 0
    peak_open: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, ramp_batch: int = 200) -> None:
        for start in range(0, self.count, ramp_batch):
            for _ in range(start, min(start + ramp_batch, self.count)):
                self._tasks.append(asyncio.create_task(self._slot()))
            await asyncio.sleep(0)  # let this batch connect before the next one starts

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _slot(self) -> None:
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 10)
            except (OSError, TimeoutError):
                self.connect_errors += 1
                await asyncio.sleep(0.05)  # the listen backlog is full: try again shortly, like a client would
                continue
            self.connects += 1
            self.open_now += 1
            self.peak_open = max(self.peak_open, self.open_now)
            try:
                await reader.read(1)  # returns b"" when the server closes us
                self.closed_by_server += 1
            except OSError:
                self.closed_by_server += 1
            finally:
                self.open_now -= 1
                writer.close()
                with contextlib.suppress(OSError):  # the server may have reset the connection first
                    await writer.wait_closed()
            if self.reconnect_delay_s is None:
                return
            await asyncio.sleep(self.reconnect_delay_s)


@dataclass
class Probe:
    latency_s: float | None  # None: no answer
    http_status: int | None
    body_status: str | None
    error: str | None = None


async def get(port: int, path: str, timeout_s: float = 10.0, headers: str = "") -> Probe:
    """One request on a fresh connection, timed from connect to the whole body read."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n".encode())
                await writer.drain()
                data = await reader.read()
            finally:
                writer.close()
    except (OSError, TimeoutError) as exc:
        return Probe(None, None, None, error=f"{type(exc).__name__}: {exc}")
    elapsed = time.perf_counter() - started
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return Probe(None, None, None, error=f"not an HTTP answer: {data[:80]!r}")
    body_status = None
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
        body_status = orjson.loads(body).get("status")
    return Probe(elapsed, status, body_status)


async def probe_loop(port: int, path: str, count: int, interval_s: float) -> list[Probe]:
    """``count`` requests on a fixed schedule (open loop: a slow answer does not delay the next one)."""
    started = time.monotonic()
    tasks = []
    for i in range(count):
        delay = started + i * interval_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(get(port, path)))
    return list(await asyncio.gather(*tasks))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


# --- the daemon under load -----------------------------------------------------------------------------------


@dataclass
class LoadedDaemon:
    """``homeiq run --replay FILE`` as its own process, writing to influxd, with a chosen descriptor limit."""

    root: Path
    influx_url: str
    database: str
    replay: Path
    replay_speed: float
    fd_limit: int = 1024
    extra_toml: str = ""
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "daemon.log"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = self.root / "homeiq.toml"
        config.write_text(
            f'state_dir = "{self.root / "state"}"\n'
            f'[influxdb]\nurl = "{self.influx_url}"\ndatabase = "{self.database}"\n'
            f'[batch]\nflush_interval_s = 0.2\n[spool]\nfsync = false\n[log]\nformat = "json"\n'
            f'[replay]\npath = "{self.replay}"\nspeed = {self.replay_speed}\n'
            f"[http]\nport = {self.port}\n{self.extra_toml}\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HOMEIQ_", "NOTIFY_", "JOURNAL_"))}
        limit = self.fd_limit

        def lower_limit() -> None:  # in the child, before exec: as LimitNOFILE= would
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "homeiq_daemon", "--config", str(config), "run", "--keep-running"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                preexec_fn=lower_limit,  # noqa: PLW1509 - only setrlimit, no threads in this process's child
            )  # fmt: skip

    async def wait_http(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited with {self.proc.returncode}: {self.log_tail()}")
            probe = await get(self.port, "/healthz", timeout_s=2)
            if probe.http_status is not None:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"no HTTP answer within {timeout_s} s: {self.log_tail()}")

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        # A stop past the deadline fails here, with the log; the exit code is the caller's to check.
        return stop_process(self.proc, timeout_s, self.log_tail, expect_rc=None)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@dataclass
class LoadResult:
    healthz: list[Probe]
    api: list[Probe]
    crowd: IdleCrowd


async def run_load(
    daemon: LoadedDaemon, *, idle: int, healthz_probes: int, api_probes: int, interval_s: float = 0.05,
    reconnect_delay_s: float | None = None, api_path: str = "/api/v1/entities?limit=50",
) -> LoadResult:  # fmt: skip
    """Open ``idle`` idle connections, then probe while they are held; close them all at the end."""
    crowd = IdleCrowd(daemon.port, idle, reconnect_delay_s=reconnect_delay_s)
    await crowd.start()
    try:
        deadline = time.monotonic() + 60
        while crowd.connects + crowd.connect_errors < idle and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        healthz, api = await asyncio.gather(
            probe_loop(daemon.port, "/healthz", healthz_probes, interval_s),
            probe_loop(daemon.port, api_path, api_probes, interval_s * healthz_probes / max(api_probes, 1)),
        )
    finally:
        await crowd.stop()
    return LoadResult(healthz, api, crowd)
