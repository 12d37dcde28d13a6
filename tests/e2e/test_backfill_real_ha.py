"""Gap-free history against the real Home Assistant 2024.3.3 (recorder + history loaded, committing every
second) and a real influxd: changes are made through HA's REST API at 20/s while the daemon is killed,
stopped, cut off, or HA itself restarts; afterwards InfluxDB holds every change exactly once, healed from the
recorder. Counts come from InfluxQL on the stored rows (tests/support/gapcheck.py).

Bounded: the "stopped" scenario keeps the daemon down for 60 s of changes (1,200 at 20/s); the others stream
for well under a minute.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from homeiq_daemon.app import App
from homeiq_daemon.config import load_settings
from tests.support.gapcheck import ChangeStream, GapReport, check, iso_ns, wait_complete
from tests.support.influxd import InfluxServer
from tests.support.outage import DaemonProcess, settings_env, wait_until
from tests.support.real_ha import RealHomeAssistant, free_port
from tests.support.tcp_relay import TcpRelay

pytestmark = [pytest.mark.ha, pytest.mark.influxd]

RATE = 20.0
NOT_RECORDED = "sensor.gap_not_recorded"  # excluded from the recorder in the HA below


@pytest.fixture(scope="module")
def ha_recorder(ha_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealHomeAssistant]:
    numbers = {
        entity_id.partition(".")[2]: {"name": entity_id, "min": 0, "max": 1_000_000, "step": 1, "mode": "box"}
        for entity_id in IMPORTED
    }
    ha = RealHomeAssistant(
        tmp_path_factory.mktemp("ha-recorder"),
        ha_venv,
        recorder=True,
        commit_interval_s=1,
        input_number=numbers,
        recorder_exclude=[NOT_RECORDED],
    )
    ha.start()
    try:
        yield ha
    finally:
        ha.stop()


def daemon_values(state_dir: Path, ha_url: str, token: str, influx_url: str, db: str) -> dict[str, Any]:
    return {
        "state_dir": state_dir,
        "shutdown_timeout_s": 5.0,
        "home_assistant": {
            "url": ha_url,
            "token": token,
            "reconnect_initial_s": 0.2,
            "backfill": {"commit_wait_s": 2.0, "watermark_save_interval_s": 1.0},
        },
        "influxdb": {"url": influx_url, "database": db, "timeout_s": 2.0, "write_attempts": 2},
        "batch": {"size": 100, "flush_interval_s": 0.5},
        "spool": {"fsync": False},
        "http": {"enabled": False},
    }


def env_for(values: dict[str, Any]) -> dict[str, str]:
    flat = {k: v for k, v in values.items() if k != "home_assistant"}
    env = settings_env(flat)
    for key, value in values["home_assistant"].items():
        if isinstance(value, dict):
            for sub, item in value.items():
                env[f"HOMEIQ_HOME_ASSISTANT__{key.upper()}__{sub.upper()}"] = str(item)
        else:
            env[f"HOMEIQ_HOME_ASSISTANT__{key.upper()}"] = str(value)
    return env


def connected_count(daemon: DaemonProcess) -> int:
    return sum(1 for e in list(daemon.events) if e.get("event") == "ha.connected")


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_daemon_killed_or_stopped_while_changes_continue(
    tmp_path: Path, ha_recorder: RealHomeAssistant, influxd_server: InfluxServer, influx_db: str, signal_name: str
) -> None:
    """SIGKILL mid-stream (the in-memory batch dies with it), changes go on for 10 s, start again: 0 missing,
    0 duplicates. SIGTERM, down for 60 s of changes: the same."""
    down_changes = int(RATE * (10 if signal_name == "SIGKILL" else 60))
    values = daemon_values(tmp_path / "state", ha_recorder.base_url, ha_recorder.token, influxd_server.url, influx_db)
    env = env_for(values)
    stream = ChangeStream(ha_recorder, f"sensor.gap_{signal_name.lower()}", RATE)
    stream.one()
    daemon = DaemonProcess([], env)
    try:
        daemon.wait_for("ha.connected", 60)
        stream.start()
        stream.wait_made(60)
        if signal_name == "SIGKILL":
            daemon.kill()
        else:
            daemon.proc.terminate()
            assert daemon.wait(20) == 0
        killed_at = stream.made
        stream.wait_made(killed_at + down_changes)
        daemon = DaemonProcess([], env)
        daemon.wait_for("ha.connected", 60)
        stream.wait_made(stream.made + 40)  # live again for a while
        stream.stop()
        done = daemon.wait_for("backfill.done", 60)
        assert done["points"] >= down_changes
        report = wait_complete(influxd_server, influx_db, stream, timeout_s=60)
    finally:
        stream.stop()
        daemon.proc.terminate()
        daemon.wait(20)
    assert report.missing == [], str(report)
    assert report.duplicates == 0, str(report)
    assert report.stored == report.expected, str(report)
    print(f"{signal_name}: {report}")


async def test_websocket_cut_for_20_s_is_healed(
    tmp_path: Path, ha_recorder: RealHomeAssistant, influxd_server: InfluxServer, influx_db: str
) -> None:
    relay = TcpRelay("127.0.0.1", ha_recorder.port)
    await relay.start()
    values = daemon_values(
        tmp_path / "state", f"http://127.0.0.1:{relay.port}", ha_recorder.token, influxd_server.url, influx_db
    )
    app = App(load_settings(None, **values))
    task = asyncio.create_task(app.run())
    stream = ChangeStream(ha_recorder, "sensor.gap_cut", RATE)
    try:
        await wait_until(lambda: app.ready.is_set() or task.done(), 60, "the daemon to start")
        await asyncio.to_thread(ha_recorder.set_state, NOT_RECORDED, "1", {"unit_of_measurement": "x"})
        stream.start()
        await asyncio.to_thread(stream.wait_made, 40)
        await relay.cut()
        await wait_until(lambda: not app.stats.hub_connected, 30, "the cut to be noticed")
        cut_at = stream.made
        for value in ("2", "3"):  # an entity the recorder excludes changes while the daemon cannot see it
            await asyncio.to_thread(ha_recorder.set_state, NOT_RECORDED, value, {"unit_of_measurement": "x"})
        await asyncio.to_thread(stream.wait_made, cut_at + int(RATE * 20))
        runs = app.stats.backfill_runs
        await relay.start()
        await wait_until(lambda: app.stats.backfill_runs > runs, 60, "the backfill after the reconnect")
        await asyncio.to_thread(stream.wait_made, stream.made + 20)
        stream.stop()
        report = await asyncio.to_thread(wait_complete, influxd_server, influx_db, stream, 60)
    finally:
        stream.stop()
        app.request_stop()
        await asyncio.wait_for(task, 30)
        await relay.stop()
    assert report.missing == [], str(report)
    assert report.duplicates == 0, str(report)
    assert app.stats.backfill_points >= int(RATE * 20)
    # The excluded entity's gap cannot be healed, and the daemon says so (its latest state came with the snapshot).
    assert "not in the recorder" in app.stats.backfill_unhealed.get(NOT_RECORDED, ""), app.stats.backfill_unhealed
    assert list(app.stats.backfill_unhealed) == [NOT_RECORDED]
    print(f"websocket cut: {report}")


async def test_ha_restart_with_changes_before_and_right_after(
    tmp_path: Path, ha_recorder: RealHomeAssistant, influxd_server: InfluxServer, influx_db: str
) -> None:
    """HA restarted; changes right before it goes and right after it is back, before the daemon reconnects
    (a relay in front of HA opens only once those changes are made): all healed from the recorder. The
    reconnect delay (relay accepting again -> daemon connected) is measured and printed, not asserted."""
    relay = TcpRelay("127.0.0.1", ha_recorder.port)
    await relay.start()
    values = daemon_values(
        tmp_path / "state", f"http://127.0.0.1:{relay.port}", ha_recorder.token, influxd_server.url, influx_db
    )
    app = App(load_settings(None, **values))
    task = asyncio.create_task(app.run())
    stream = ChangeStream(ha_recorder, "sensor.gap_restart", RATE)
    try:
        await wait_until(lambda: app.ready.is_set() or task.done(), 60, "the daemon to start")
        for _ in range(20):
            await asyncio.to_thread(stream.one)
        reconnects = app.stats.reconnects
        await relay.cut()
        await asyncio.to_thread(ha_recorder.stop)
        await wait_until(lambda: not app.stats.hub_connected, 30, "HA to go away")
        await asyncio.to_thread(ha_recorder.start)
        for _ in range(10):  # HA is back; the daemon cannot see it yet
            await asyncio.to_thread(stream.one)
        await relay.start()
        opened = time.monotonic()
        await wait_until(
            lambda: app.stats.hub_connected and app.stats.reconnects > reconnects, 60, "the reconnect", 0.01
        )
        reconnect_s = time.monotonic() - opened
        runs = app.stats.backfill_runs
        await wait_until(lambda: app.stats.backfill_runs > runs, 60, "the backfill after the restart")
        for _ in range(5):
            await asyncio.to_thread(stream.one)
        report = await asyncio.to_thread(wait_complete, influxd_server, influx_db, stream, 60)
    finally:
        app.request_stop()
        await asyncio.wait_for(task, 30)
        await relay.stop()
    assert report.missing == [], str(report)
    assert report.duplicates == 0, str(report)
    assert report.stored == report.expected == 35, str(report)
    assert app.stats.backfill_points >= 10  # the ten made while the daemon could not see HA came from the recorder
    # Not a timing assertion: the delay is a figure for the closing note.
    print(f"HA restart: {report}; reconnected {reconnect_s:.2f} s after HA was reachable again")


IMPORTED = ("input_number.import_a", "input_number.import_b", "input_number.import_c")


def _import_report(influx: InfluxServer, db: str, entity_id: str, expected: set[tuple[float, int]]) -> GapReport:
    """InfluxDB's rows for one input_number against the recorder's own list (REST history): a stored
    (value, time) nobody expected is a duplicate (the same change at another timestamp) or foreign."""
    rows = influx.rows(f"SELECT value FROM \"{entity_id}\"", db)
    stored = {(float(row["value"]), int(row["time"])) for row in rows}
    report = GapReport(len(expected), len(rows), sorted(int(v) for v, ts in expected - stored))
    report.extra = sorted(stored - expected)
    report.duplicates = len(report.extra)
    return report


def test_import_history_exactly_once_rerun_adds_nothing_and_resumes_after_ctrl_c(
    tmp_path: Path, ha_recorder: RealHomeAssistant, influxd_server: InfluxServer, influx_db: str
) -> None:
    changes = 700
    # What the import will be asked for (--since 1h): HA started minutes ago, so this is all it recorded.
    since_iso = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    # Thousands of changes in seconds: service calls pipelined over one WebSocket set three input_numbers
    # to 1, 2, 3, ... (HA records each change).
    calls = [
        ("input_number", "set_value", {"entity_id": entity_id, "value": value})
        for value in range(1, changes + 1)
        for entity_id in IMPORTED
    ]
    ha_recorder.call_services(calls)
    expected: dict[str, set[tuple[float, int]]] = {}
    deadline = time.monotonic() + 30
    for entity_id in IMPORTED:
        while True:
            recorded = ha_recorder.history(entity_id, since_iso)
            if float(recorded[-1]["state"]) == changes if recorded else False:
                break
            if time.monotonic() > deadline:  # a poll's ceiling, not a timing claim
                raise AssertionError(f"the recorder holds {len(recorded)} states, not the last change")
            time.sleep(0.2)
        # Every change of the script, and the states the entity started with (at each HA start).
        expected[entity_id] = {(float(s["state"]), iso_ns(s["last_updated"])) for s in recorded}
        assert len(expected[entity_id]) == len(recorded) >= changes
    per_entity = len(expected[IMPORTED[0]])
    assert all(len(e) == per_entity for e in expected.values())

    def run_import(db: str, state_dir: Path) -> subprocess.Popen[bytes]:
        values = daemon_values(state_dir, ha_recorder.base_url, ha_recorder.token, influxd_server.url, db)
        values["home_assistant"]["backfill"] = {"entities_per_request": 1, "states_per_request": 100, "window_s": 1}
        env = env_for(values)
        return subprocess.Popen(
            [sys.executable, "-m", "homeiq_daemon", "import-history", "--since", "1h", "--entity", "*.import_*"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def finished(proc: subprocess.Popen[bytes]) -> tuple[int, list[dict[str, Any]]]:
        _, err = proc.communicate(timeout=120)
        events = []
        for line in err.splitlines():
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                events.append({"event": "raw", "line": line.decode(errors="replace")})
        return proc.returncode, events

    def reports(db: str) -> list[GapReport]:
        return [_import_report(influxd_server, db, e, expected[e]) for e in IMPORTED]

    state = tmp_path / "state"
    rc, events = finished(run_import(influx_db, state))
    assert rc == 0, events[-10:]
    done = next(e for e in events if e.get("event") == "import.done")
    assert done["states"] >= 3 * per_entity
    assert any(e.get("event") == "progress.done" for e in events)  # not a terminal: structured progress lines
    for report in reports(influx_db):
        assert (report.missing, report.duplicates, report.stored) == ([], 0, per_entity), str(report)

    rc, events = finished(run_import(influx_db, state))  # a rerun: the same points again, nothing added
    assert rc == 0, events[-10:]
    again = reports(influx_db)
    assert [r.stored for r in again] == [per_entity] * 3, [(str(r), r.extra[:5]) for r in again]

    # Ctrl-C midway (once the checkpoint shows work done), then the same command again: complete.
    db2 = f"{influx_db}_resume"
    influxd_server.create_database(db2)
    state2 = tmp_path / "state2"
    checkpoint = state2 / "import-history.json"
    proc = run_import(db2, state2)
    deadline = time.monotonic() + 60
    while not (checkpoint.exists() and orjson.loads(checkpoint.read_bytes() or b"{}").get("states", 0) > 0):
        assert proc.poll() is None, "the import ended before it could be interrupted"
        if time.monotonic() > deadline:  # a poll's ceiling, not a timing claim
            raise AssertionError("no checkpoint within 60 s")
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    rc, events = finished(proc)
    assert rc == 130, events[-10:]
    assert any(e.get("event") == "import.interrupted" for e in events)
    assert not orjson.loads(checkpoint.read_bytes())["done"]
    partial = sum(r.stored for r in reports(db2))
    assert partial < 3 * per_entity
    rc, events = finished(run_import(db2, state2))
    assert rc == 0, events[-10:]
    assert any(e.get("event") == "import.resuming" for e in events)
    for report in reports(db2):
        assert (report.missing, report.duplicates, report.stored) == ([], 0, per_entity), str(report)
    print(f"import-history: 3 x {per_entity} recorded states, interrupted after {partial}, then complete")


async def test_recorder_disabled_warns_once_and_live_capture_goes_on(
    tmp_path: Path, real_ha: RealHomeAssistant, influxd_server: InfluxServer, influx_db: str
) -> None:
    """The session's HA loads neither recorder nor history: one warning naming it, /healthz shows it, live
    points keep flowing, across a restart of the daemon and a reconnect."""
    relay = TcpRelay("127.0.0.1", real_ha.port)
    await relay.start()
    port = free_port()
    values = daemon_values(
        tmp_path / "state", f"http://127.0.0.1:{relay.port}", real_ha.token, influxd_server.url, influx_db
    )
    values["http"] = {"enabled": True, "port": port}
    env = env_for(values)
    stream = ChangeStream(real_ha, "sensor.no_recorder", RATE)
    first = DaemonProcess([], env)
    try:
        await asyncio.to_thread(first.wait_for, "ha.connected", 60)
        await asyncio.to_thread(stream.one)
        await asyncio.to_thread(wait_complete, influxd_server, influx_db, stream, 30)
        first.proc.terminate()
        assert await asyncio.to_thread(first.wait, 20) == 0
    finally:
        first.kill()
    # While the daemon is away: the first cannot be healed without a recorder, the second is HA's current
    # state, which the snapshot at connect brings.
    await asyncio.to_thread(stream.one)
    await asyncio.to_thread(stream.one)
    daemon = DaemonProcess([], env)
    try:
        warning = await asyncio.to_thread(daemon.wait_for, "backfill.unavailable", 60)
        assert "recorder is not enabled" in warning["reason"]
        assert warning["level"] == "warning"
        health = await asyncio.to_thread(_get_json, f"http://127.0.0.1:{port}/healthz")
        assert health["backfill"]["state"] == "unavailable"
        assert "recorder" in health["backfill"]["unavailable_reason"]
        await relay.cut()
        await relay.start()
        await asyncio.to_thread(lambda: _wait_events(daemon, "ha.connected", 2))
        for _ in range(3):
            await asyncio.to_thread(stream.one)
        value_after = stream.next_value - 1
        await wait_until(
            lambda: value_after not in check(influxd_server, influx_db, stream).missing, 30, "live points"
        )
        # A third start of the backfill (another connection) changes nothing: still one warning.
        unavailable = [e for e in list(daemon.events) if e.get("event") == "backfill.unavailable"]
        assert len(unavailable) == 1, unavailable
    finally:
        daemon.proc.terminate()
        await asyncio.to_thread(daemon.wait, 20)
        await relay.stop()
    report = check(influxd_server, influx_db, stream)
    assert report.missing == [2], str(report)  # only the change superseded while no daemon listened
    assert report.duplicates == 0


def _get_json(url: str) -> Any:
    import json  # noqa: PLC0415
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:  # 503 while degraded: the body is the same report
        return json.loads(exc.read())


def _wait_events(daemon: DaemonProcess, name: str, count: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(1 for e in list(daemon.events) if e.get("event") == name) < count:
        if time.monotonic() > deadline:  # a poll's ceiling, not a timing claim
            raise AssertionError(f"fewer than {count} {name!r} events within {timeout_s} s")
        time.sleep(0.05)
