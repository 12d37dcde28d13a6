"""The daemon process itself: a rule fires from replayed events, the receiver fails, SIGTERM arrives mid-retry;
the next start delivers the same delivery id exactly once. ``homeiq webhooks log`` shows the history."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
from standardwebhooks.webhooks import Webhook

from homeiq_daemon.webhooks.outbox import read_log
from homeiq_daemon.webhooks.signing import encode_secret
from tests.support.webhook_receiver import Receiver

SECRET = encode_secret(os.urandom(32))


def event_line(entity_id: str, state: str, second: int) -> bytes:
    stamp = f"2024-03-01T12:00:{second:02d}.000000+00:00"
    new_state = {
        "entity_id": entity_id,
        "state": state,
        "attributes": {},
        "last_changed": stamp,
        "last_updated": stamp,
        "context": {"id": f"c{second}", "parent_id": None, "user_id": None},
    }
    event = {
        "event_type": "state_changed",
        "data": {"entity_id": entity_id, "new_state": new_state},
        "origin": "LOCAL",
        "time_fired": stamp,
    }
    return orjson.dumps({"id": 1, "type": "event", "event": event}) + b"\n"


def write_config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "homeiq.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        "shutdown_timeout_s = 5\n"
        "[http]\nenabled = false\n"
        '[log]\nformat = "json"\nlevel = "debug"\n'
        "[webhooks]\nretry_initial_s = 0.2\nretry_max_s = 0.5\n"
        f'[webhooks.targets.rx]\nurl = "{url}"\nsecret = "{SECRET}"\n'
        '[[webhooks.rules]]\nname = "door"\nentities = ["binary_sensor.door"]\nto = "on"\ntarget = "rx"\n'
    )
    return config


@contextlib.asynccontextmanager
async def daemon(config: Path, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    log = config.parent / "daemon.log"
    with log.open("ab") as sink:  # a file, not a pipe: a full pipe would block the daemon's logging
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "homeiq_daemon",
            "--config",
            str(config),
            "run",
            *args,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def sigterm(proc: asyncio.subprocess.Process, config: Path) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(proc.wait(), 20)
    log = (config.parent / "daemon.log").read_text(errors="replace")
    (config.parent / "daemon.log").unlink()
    return code, log


async def test_sigterm_mid_retry_then_restart_delivers_once(tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.default_status = 503
    await receiver.start()
    try:
        config = write_config(tmp_path, receiver.url)
        replay = tmp_path / "events.jsonl"
        replay.write_bytes(b"".join(event_line("binary_sensor.door", s, i) for i, s in enumerate(["off", "on"])))

        async with daemon(config, "--replay", str(replay), "--keep-running") as proc:
            await receiver.wait_for(2, timeout=20)  # the first attempt and at least one retry
            code, log = await sigterm(proc, config)
        assert code == 0, log
        assert "webhook.retrying" in log
        assert "webhook.stopped" in log
        failed = {r.webhook_id for r in receiver.received}
        assert len(failed) == 1
        [delivery_id] = failed
        [row] = read_log(tmp_path / "state" / "webhooks.db")
        assert (row.id, row.status) == (delivery_id, "pending")
        assert row.attempts >= 2

        receiver.default_status = 200
        async with daemon(config, "--keep-running") as proc:  # no source at all: only the outbox resumes
            await receiver.wait_for(1, timeout=30, delivered=True)
            code, log = await sigterm(proc, config)  # after the exit nothing more can arrive: count then
        assert code == 0, log
        assert [r.webhook_id for r in receiver.delivered] == [delivery_id]
        payload = Webhook(SECRET).verify(receiver.delivered[0].body, receiver.delivered[0].headers)
        assert payload["new_state"]["state"] == "on"
        assert payload["origin"] == "replay"
    finally:
        await receiver.stop()

    out = subprocess.run(
        [sys.executable, "-m", "homeiq_daemon", "--config", str(config), "webhooks", "log"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "delivered" in out
    assert delivery_id in out
    assert "door -> rx" in out
    failed_only = subprocess.run(
        [sys.executable, "-m", "homeiq_daemon", "--config", str(config), "webhooks", "log", "--failed"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert failed_only.stdout == ""
    assert "no failed deliveries" in failed_only.stderr
