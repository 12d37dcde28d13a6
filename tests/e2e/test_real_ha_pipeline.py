"""End to end against the real Home Assistant 2024.3.3: HA state changes -> the daemon -> the embedded
history store (no InfluxDB configured), in the schema HA's InfluxDB integration writes.

Covers: live events and the first snapshot, with HA's ``last_updated`` as the timestamp; a lost connection
(a relay cut while HA keeps running) filled by the reconnect snapshot without duplicates; a real HA restart;
a rejected token (exit 77, one error line, exactly one login attempt so HA's ip-ban never triggers).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from homeiq_daemon.app import App
from homeiq_daemon.config import Settings, load_settings
from tests.support.daemon import poll_until, start_app, stop_app, wait_for
from tests.support.real_ha import BANNED_LOG, INVALID_AUTH_LOG, RealHomeAssistant
from tests.support.tcp_relay import TcpRelay

pytestmark = pytest.mark.ha

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A marker entity changed after the states under test: HA sends one connection's events in order and the
# daemon writes them in order, so once the marker is stored, any duplicate of an earlier change would be too.
SENTINEL = "sensor.e2e_sentinel"
_sentinel_values = itertools.count(1)


def ha_time_ns(iso: str) -> int:
    """HA's ISO ``last_updated`` -> integer ns, computed here independently of the daemon's own parser."""
    delta = datetime.fromisoformat(iso) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def stored(state_dir: Path, entity_id: str) -> list[dict[str, Any]]:
    """Rows for one entity, read with plain sqlite3 (not the daemon's reader), tags included."""
    conn = sqlite3.connect(f"file:{state_dir / 'history.db'}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute(
            "SELECT measurement, time_ns, fields FROM points WHERE entity_id = ? ORDER BY time_ns", (entity_id,)
        ).fetchall()
    except sqlite3.OperationalError:  # the table does not exist yet
        return []
    finally:
        conn.close()
    return [{"measurement": m, "time_ns": t, **json.loads(f)} for m, t, f in rows]


def counts_by_entity(state_dir: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{state_dir / 'history.db'}?mode=ro", uri=True, timeout=5)
    try:
        counts = dict(conn.execute("SELECT entity_id, count(*) FROM points GROUP BY entity_id").fetchall())
    finally:
        conn.close()
    counts.pop(SENTINEL, None)
    return counts


async def settled(ha: RealHomeAssistant, state_dir: Path) -> None:
    """Wait until everything HA sent before now is stored (see SENTINEL), instead of sleeping on it."""
    value = str(next(_sentinel_values))
    await in_thread(ha.set_state, SENTINEL, value, {"unit_of_measurement": "x"})
    await wait_for(lambda: any(r["fields"].get("value") == float(value) for r in stored(state_dir, SENTINEL)))


def settings_for(state_dir: Path, url: str, token: str) -> Settings:
    return load_settings(
        None,
        state_dir=state_dir,
        home_assistant={"url": url, "token": token, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5},
        batch={"size": 100, "flush_interval_s": 0.2},
        spool={"fsync": False},
        http={"enabled": False},
        shutdown_timeout_s=5.0,
    )


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[App]:
    """The daemon in this event loop; stopped the way SIGTERM stops it, failing on a crash or a hang."""
    app = App(settings)
    task = await start_app(app)
    try:
        yield app
    finally:
        await stop_app(app, task)


async def in_thread(func: Any, *args: Any) -> Any:
    # The HA helpers block on HTTP; the daemon shares this event loop and must keep reading meanwhile.
    return await asyncio.to_thread(func, *args)


async def test_states_land_in_history_with_ha_schema_and_timestamps(tmp_path: Path, real_ha: RealHomeAssistant) -> None:
    sensor = "sensor.e2e_temperature"
    attrs = {"unit_of_measurement": "°C", "device_class": "temperature", "friendly_name": "E2E Temperature"}
    before = await in_thread(real_ha.set_state, sensor, "20.5", attrs)  # present at connect: the snapshot
    switch_before = await in_thread(real_ha.get_state, "input_boolean.e2e_switch")
    async with running_app(settings_for(tmp_path, real_ha.base_url, real_ha.token)) as app:
        assert app.stats.hub_connected
        written = [before]
        for value in ("21.0", "21.25", "-3.5"):
            written.append(await in_thread(real_ha.set_state, sensor, value, attrs))
        toggled = []
        for _ in range(2):
            await in_thread(real_ha.call_service, "input_boolean", "toggle", {"entity_id": "input_boolean.e2e_switch"})
            toggled.append(await in_thread(real_ha.get_state, "input_boolean.e2e_switch"))
        await wait_for(
            lambda: len(stored(tmp_path, sensor)) >= 4 and len(stored(tmp_path, "input_boolean.e2e_switch")) >= 3
        )
        await settled(real_ha, tmp_path)  # a duplicate, if one were coming, is stored by now

    rows = stored(tmp_path, sensor)
    assert [(r["time_ns"], r["fields"]["value"]) for r in rows] == [
        (ha_time_ns(s["last_updated"]), float(s["state"])) for s in written
    ]
    for row in rows:
        assert row["measurement"] == "°C"
        assert row["tags"] == {"domain": "sensor", "entity_id": "e2e_temperature"}
        # HA's integration: numeric state -> value; string attributes -> <name>_str; the unit is the measurement.
        assert row["fields"]["device_class_str"] == "temperature"
        assert row["fields"]["friendly_name_str"] == "E2E Temperature"
        assert "unit_of_measurement_str" not in row["fields"]

    switch_rows = stored(tmp_path, "input_boolean.e2e_switch")
    expected = [switch_before, *toggled]
    assert [(r["time_ns"], r["fields"]["state"], r["fields"]["value"]) for r in switch_rows] == [
        (ha_time_ns(s["last_updated"]), s["state"], 1.0 if s["state"] == "on" else 0.0) for s in expected
    ]
    assert {r["measurement"] for r in switch_rows} == {"input_boolean.e2e_switch"}
    assert {json.dumps(r["tags"], sort_keys=True) for r in switch_rows} == {
        json.dumps({"domain": "input_boolean", "entity_id": "e2e_switch"}, sort_keys=True)
    }


async def test_lost_connection_is_gap_filled_without_duplicates(tmp_path: Path, real_ha: RealHomeAssistant) -> None:
    changed, same = "sensor.e2e_gap_changed", "sensor.e2e_gap_same"
    first = await in_thread(real_ha.set_state, changed, "1", {"unit_of_measurement": "W"})
    same_state = await in_thread(real_ha.set_state, same, "7", {"unit_of_measurement": "W"})
    relay = TcpRelay("127.0.0.1", real_ha.port)
    await relay.start()
    try:
        async with running_app(settings_for(tmp_path, f"http://127.0.0.1:{relay.port}", real_ha.token)) as app:
            await wait_for(lambda: len(stored(tmp_path, changed)) == 1 and len(stored(tmp_path, same)) == 1)
            await settled(real_ha, tmp_path)  # the batch with everything else in HA's snapshot
            counts_before = counts_by_entity(tmp_path)
            states_before = await in_thread(real_ha.all_states)

            await relay.cut()
            await wait_for(lambda: not app.stats.hub_connected)
            # HA keeps running while we are away: two changes (HA keeps only the last), one entity untouched.
            await in_thread(real_ha.set_state, changed, "2", {"unit_of_measurement": "W"})
            last = await in_thread(real_ha.set_state, changed, "3", {"unit_of_measurement": "W"})
            states_during = await in_thread(real_ha.all_states)
            gapfill_before = app.stats.events_received["gapfill"]
            await relay.start()
            await wait_for(lambda: app.stats.hub_connected and relay.connections >= 2)
            await wait_for(lambda: len(stored(tmp_path, changed)) == 2)
            await settled(real_ha, tmp_path)
            counts_after = counts_by_entity(tmp_path)
            gap_filled = app.stats.events_received["gapfill"] - gapfill_before
    finally:
        await relay.stop()

    assert [(r["time_ns"], r["fields"]["value"]) for r in stored(tmp_path, changed)] == [
        (ha_time_ns(first["last_updated"]), 1.0),
        (ha_time_ns(last["last_updated"]), 3.0),
    ]
    assert [r["time_ns"] for r in stored(tmp_path, same)] == [ha_time_ns(same_state["last_updated"])]
    # Every entity whose last_updated did not move while we were away got no new point.
    moved = {
        entity_id
        for entity_id, state in states_during.items()
        if states_before.get(entity_id, {}).get("last_updated") != state["last_updated"]
    }
    assert changed in moved
    assert gap_filled == len(moved)
    for entity_id, count in counts_after.items():
        assert count == counts_before.get(entity_id, 0) + (1 if entity_id in moved else 0), entity_id


async def test_reconnects_after_a_real_ha_restart(tmp_path: Path, real_ha_private: RealHomeAssistant) -> None:
    ha = real_ha_private
    sensor = "sensor.e2e_after_restart"
    async with running_app(settings_for(tmp_path, ha.base_url, ha.token)) as app:
        assert app.stats.hub_connected
        before = await in_thread(ha.all_states)
        # The first snapshot: every helper with a state HA can express as a number (input_boolean "off", ...).
        await wait_for(lambda: len(stored(tmp_path, "input_boolean.e2e_switch")) == 1)
        await settled(ha, tmp_path)
        counts_before = counts_by_entity(tmp_path)
        await in_thread(ha.restart)  # SIGTERM: HA closes the WebSocket; same port, same config dir, same token
        await wait_for(lambda: app.stats.hub_connected and app.stats.reconnects >= 1, timeout_s=20)
        after = await in_thread(ha.all_states)
        live = await in_thread(ha.set_state, sensor, "5.5", {"unit_of_measurement": "kWh"})
        await wait_for(lambda: len(stored(tmp_path, sensor)) == 1)
        await settled(ha, tmp_path)
        counts_after = counts_by_entity(tmp_path)

    assert [(r["time_ns"], r["fields"]["value"], r["measurement"]) for r in stored(tmp_path, sensor)] == [
        (ha_time_ns(live["last_updated"]), 5.5, "kWh")
    ]
    # HA restores its helpers with the same state but a new last_updated (HA issue #62094's re-emission).
    # An entity whose last_updated did not move gets no new point; a re-stamped one at most one.
    assert {"input_boolean.e2e_switch", "input_number.e2e_level"} <= counts_before.keys()
    for entity_id, count in counts_before.items():
        restamped = entity_id in after and after[entity_id]["last_updated"] != before[entity_id]["last_updated"]
        assert count <= counts_after[entity_id] <= count + (1 if restamped else 0), entity_id


def test_rejected_token_exits_77_after_one_attempt(tmp_path: Path, real_ha: RealHomeAssistant) -> None:
    bad_token = "not-a-valid-token-" + "x" * 40
    config = tmp_path / "homeiq.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[home_assistant]\nurl = "{real_ha.base_url}"\ntoken = "{bad_token}"\n'
        '[log]\nformat = "json"\n[http]\nenabled = false\n'
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HOMEIQ_", "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET"))
    }
    log_offset = real_ha.log_size()
    # A retry loop would never exit: the timeout is a generous ceiling on a process that must end by itself.
    try:
        result = subprocess.run(
            [sys.executable, "-m", "homeiq_daemon", "--config", str(config), "run"],
            capture_output=True,
            text=True,
            timeout=60,  # subprocess.run kills it on expiry
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        attempts = real_ha.count_in_log(INVALID_AUTH_LOG, log_offset)
        pytest.fail(f"homeiq run was still running after 60 s with a rejected token; HA logged {attempts} logins")
    assert result.returncode == 77, result.stderr[-2000:]
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("homeiq: error:")]
    assert len(error_lines) == 1, result.stderr
    assert "rejected the access token" in error_lines[0]
    assert "home_assistant.token" in error_lines[0]
    assert bad_token not in result.stdout + result.stderr
    # One attempt, no reconnect loop: the source never reported a disconnect to retry from.
    assert "ha.disconnected" not in result.stdout + result.stderr
    # HA logs each failed login; the daemon must have made exactly one, and HA banned nobody.
    # The process has exited, so every attempt it made was answered; HA logs each right after its answer.
    poll_until(lambda: real_ha.count_in_log(INVALID_AUTH_LOG, log_offset) >= 1, "HA to log the failed login")
    assert real_ha.count_in_log(INVALID_AUTH_LOG, log_offset) == 1, real_ha.log_tail()
    assert real_ha.count_in_log(BANNED_LOG, log_offset) == 0
    assert real_ha.config()["state"] == "RUNNING"  # and we are still welcome with the right token
