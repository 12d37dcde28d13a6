"""Running the daemon's App in-process for tests, with helpers to wait for conditions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from homeiq_daemon.app import App
from homeiq_daemon.config import Settings, load_settings


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


async def wait_for(predicate: Callable[[], Any], timeout_s: float = 10.0, interval_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        await asyncio.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s")


@contextlib.asynccontextmanager
async def running_app(settings: Settings, **kwargs: Any) -> AsyncIterator[tuple[App, asyncio.Task[None]]]:
    app = App(settings, **kwargs)
    task = asyncio.create_task(app.run())
    try:
        await wait_for(lambda: app.ready.is_set() or task.done(), timeout_s=40)
        if task.done():
            task.result()
        yield app, task
    finally:
        if not task.done():
            app.request_stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=30)
