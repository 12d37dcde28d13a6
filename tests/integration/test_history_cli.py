"""``homeiq history`` reads the configured sink: a real influxd when influxdb.url is set, else the embedded
store; newest first, --limit N = the N most recent, --since/--until as durations ago or ISO times."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from homeiq_daemon.app import App
from tests.support.daemon import daemon_settings
from tests.support.influxd import InfluxServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "home.jsonl"
ENTITY = "sensor.kitchen_temperature"


def recorded(entity_id: str) -> list[tuple[str, float]]:
    """(last_updated, value) of the entity in the recording, newest first, read with a plain JSON reader."""
    out = []
    for line in EXAMPLE.read_text().splitlines():
        state = json.loads(line)["event"]["data"]["new_state"]
        if state["entity_id"] == entity_id:
            out.append((state["last_updated"][:23], float(state["state"])))
    return sorted(out, reverse=True)


async def replay_into(settings_dir: Path, **overrides: object) -> None:
    settings = daemon_settings(settings_dir / "state", replay={"path": str(EXAMPLE)}, **overrides)
    app = App(settings, exit_when_sources_done=True)
    await asyncio.wait_for(app.run(), timeout=120)


def history(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEIQ_") and k != "CREDENTIALS_DIRECTORY"}
    return subprocess.run([sys.executable, "-m", "homeiq_daemon", "--config", str(config), "history", ENTITY, *args],
                          capture_output=True, text=True, timeout=120, check=False, env=env)  # fmt: skip


def check_newest_first(config: Path) -> None:
    expected = recorded(ENTITY)
    assert len(expected) >= 5
    out = history(config, "--since", "3650d", "--limit", "3", "--json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["time"][:23], r["value"]) for r in rows] == expected[:3]  # the three newest, newest first
    assert {r["measurement"] for r in rows} == {"°C"}

    every = history(config, "--since", "3650d")
    assert every.returncode == 0, every.stderr
    assert len(every.stdout.splitlines()) == len(expected)

    # A window ending long ago is empty, and says so.
    old = history(config, "--since", "3650d", "--until", "3000d")
    assert (old.returncode, old.stdout) == (0, "")
    assert "no points for sensor.kitchen_temperature" in old.stderr


@pytest.mark.influxd
async def test_history_asks_influxdb_when_it_is_the_sink(tmp_path: Path, influxd_server: InfluxServer) -> None:
    influxd_server.query('DROP DATABASE "history_cli"')
    await replay_into(tmp_path, influxdb={"url": influxd_server.url, "database": "history_cli"})
    assert not (tmp_path / "state" / "history.db").exists()  # nothing embedded: InfluxDB is the only copy
    config = tmp_path / "homeiq.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n[influxdb]\nurl = "{influxd_server.url}"\n'
                      'database = "history_cli"\n')  # fmt: skip
    check_newest_first(config)


async def test_history_reads_the_embedded_store_without_influxdb(tmp_path: Path) -> None:
    await replay_into(tmp_path)
    config = tmp_path / "homeiq.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n')
    check_newest_first(config)


async def test_an_unreachable_influxdb_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "homeiq.toml"
    config.write_text('[influxdb]\nurl = "http://127.0.0.1:9"\ntimeout_s = 2\n')
    out = history(config)
    assert out.returncode == 1
    assert out.stderr.startswith("homeiq: error: history from InfluxDB http://127.0.0.1:9 (home_assistant): ")
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_window_that_ends_before_it_starts_or_an_unreadable_time_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "homeiq.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n')
    backwards = history(config, "--since", "2h", "--until", "3d")
    assert backwards.returncode == 64
    assert backwards.stderr == "homeiq: error: --until 3d is not after --since 2h\n"
    bad = history(config, "--until", "yesterday-ish")
    assert bad.returncode == 64
    assert "--until 'yesterday-ish': use a duration" in bad.stderr
