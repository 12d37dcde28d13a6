"""Running the daemon for tests (in-process ``App`` or ``homeiq run`` as a subprocess), waiting for conditions,
and the one teardown every daemon test goes through.

The teardown fails the test when the daemon crashed (its task raised, its process exited non-zero) or did not
stop within its documented deadline: ``shutdown_timeout_s`` plus the grace it asks systemd for
(``STOP_GRACE_S``, see docs/systemd.md). A hang is reported, then the daemon is killed so the session goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from homeiq_daemon.app import App
from homeiq_daemon.config import Settings, load_settings
from homeiq_daemon.runtime.systemd import STOP_GRACE_S

# Polls wait for a condition and return as soon as it holds; the ceiling only bounds a failure, so it is
# generous enough for a loaded 2-core CI machine.
DEFAULT_CEILING_S = 30.0


def daemon_settings(state_dir: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "state_dir": state_dir,
        "batch": {"size": 100, "flush_interval_s": 0.2},
        "log": {"format": "json", "level": "debug"},
        "http": {"enabled": False},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return load_settings(None, **base)


async def eventually(
    predicate: Callable[[], Any], what: str = "condition", timeout_s: float = DEFAULT_CEILING_S,
    interval_s: float = 0.02, detail: Callable[[], Any] | None = None,
) -> Any:
    """Poll ``predicate`` until it returns something truthy (and return that); fail naming ``what`` after
    ``timeout_s``, with ``detail()`` in the message when given."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            extra = f": {detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}{extra}")
        await asyncio.sleep(interval_s)


async def wait_for(predicate: Callable[[], Any], timeout_s: float = DEFAULT_CEILING_S, interval_s: float = 0.02) -> Any:
    return await eventually(predicate, "condition", timeout_s, interval_s)


async def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.02) -> None:
    await eventually(predicate, what, max(timeout_s, DEFAULT_CEILING_S), interval_s)


def stop_deadline_s(settings: Settings) -> float:
    """How long a stop may take before it counts as hung: the daemon's own budget plus the grace it asks
    systemd for."""
    return settings.shutdown_timeout_s + STOP_GRACE_S


async def stop_app(app: App, task: asyncio.Task[None]) -> None:
    """Stop the daemon as SIGTERM does and fail if it crashed, was cancelled or overran its stop deadline."""
    app.request_stop()
    deadline_s = stop_deadline_s(app.settings)
    done, _ = await asyncio.wait({task}, timeout=deadline_s)
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise AssertionError(
            f"the daemon did not stop within {deadline_s:g} s "
            f"(shutdown_timeout_s {app.settings.shutdown_timeout_s:g} s + {STOP_GRACE_S:g} s grace)"
        )
    if task.cancelled():
        raise AssertionError("the daemon's task was cancelled instead of stopping")
    error = task.exception()
    if error is not None:
        raise AssertionError(f"the daemon crashed: {type(error).__name__}: {error}") from error


async def start_app(app: App, timeout_s: float = 40.0, *, ready: bool = True) -> asyncio.Task[None]:
    """Run ``app`` in this loop and wait until it is ready; a start-up failure is raised here.

    ``ready=False`` for a test whose Home Assistant refuses the first connections: the daemon only reports
    ready after 30 s then, so such a test waits for its own condition (with ``or task.done()``) instead."""
    task = asyncio.create_task(app.run(), name="test-app")
    if not ready:
        await asyncio.sleep(0)
        return task
    try:
        await eventually(lambda: app.ready.is_set() or task.done(), "the daemon to be ready", timeout_s)
    except AssertionError:
        await stop_app(app, task)
        raise
    if task.done():
        task.result()
    return task


@contextlib.asynccontextmanager
async def running_app(settings: Settings, *, ready: bool = True, **kwargs: Any
                      ) -> AsyncIterator[tuple[App, asyncio.Task[None]]]:
    app = App(settings, **kwargs)
    task = await start_app(app, ready=ready)
    try:
        yield app, task
    finally:
        await stop_app(app, task)


def stop_process(proc: subprocess.Popen[bytes], deadline_s: float, describe: Callable[[], Any] = lambda: "",
                 *, expect_rc: int | None = 0) -> int:
    """SIGTERM a daemon process and fail if it overran ``deadline_s`` or exited with another code than
    ``expect_rc`` (None: any). A hung process is killed after the report."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        raise AssertionError(f"the daemon did not exit within {deadline_s:g} s of SIGTERM; {describe()}") from None
    if expect_rc is not None and rc != expect_rc:
        raise AssertionError(f"the daemon exited {rc} (expected {expect_rc}); {describe()}")
    return rc


def poll_until(predicate: Callable[[], Any], what: str, timeout_s: float = DEFAULT_CEILING_S,
               interval_s: float = 0.05, detail: Callable[[], Any] | None = None) -> Any:
    """``eventually`` for threads and synchronous tests (subprocess daemons)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            extra = f": {detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}{extra}")
        time.sleep(interval_s)


async def eventually_async(
    fetch: Callable[[], Awaitable[Any]], what: str, timeout_s: float = DEFAULT_CEILING_S, interval_s: float = 0.05,
) -> Any:
    """``eventually`` for a condition that needs awaiting (an HTTP call, a query in a thread)."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        last = await fetch()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval_s)
