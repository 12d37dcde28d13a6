"""Migrating from Home Assistant's influxdb integration, against the real HA 2024.3.3 and a real influxd.

v1: HA runs with an ``influxdb:`` block (``!secret`` from secrets.yaml) writing into database ``ha_native``;
``homeiq migrate-ha-config`` converts that very configuration.yaml, and the daemon, started from the result
(pointed at database ``homeiq`` of the same influxd), sees the same state changes. Both databases must then
hold the same measurements, tag keys, field keys and types, and the same points (time aside: HA stamps the
write, homeiq the state's last_updated).

v2: HA's own YAML loader and schema read a v2 block; the converted settings must name the same URL, org,
bucket and token. influxd 1.6.7 has no v2 write API, so the daemon then writes with the converted settings into
the 2.x fake (tests/support/fake_influx2.py), and its points must be those HA's own ``event_to_json`` makes from
the same block for the same states.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from homeiq_daemon.app import App
from homeiq_daemon.config import Settings, load_settings
from homeiq_daemon.errors import ConfigError
from tests.support.influxd import InfluxServer
from tests.support.real_ha import REPO_ROOT, RealHomeAssistant

pytestmark = [pytest.mark.ha, pytest.mark.influxd]

V1_BLOCK = """
influxdb:
  host: 127.0.0.1
  port: {port}
  database: ha_native
  username: !secret influx_user
  password: !secret influx_password
  max_retries: 2
  precision: ms
  default_measurement: state
  tags:
    instance: e2e
  tags_attributes:
    - friendly_name
  ignore_attributes:
    - icon
  include:
    domains:
      - sensor
      - binary_sensor
      - switch
  exclude:
    entity_globs:
      - "sensor.*_rssi"
  component_config:
    sensor.outdoor_temperature:
      override_measurement: outdoor
"""

V2_BLOCK = """
influxdb:
  api_version: "2"
  host: influx.example.net
  port: 8443
  ssl: true
  path: /influx
  organization: my-org
  bucket: home
  token: !secret influx_token
  verify_ssl: false
  tags:
    instance: cloud
"""

SECRETS = {"influx_user": "homeassistant", "influx_password": "pw with spaces", "influx_token": "tok-v2-secret"}

STATES: list[tuple[str, str, dict[str, Any]]] = [
    ("sensor.living_temperature", "21.5",
     {"unit_of_measurement": "°C", "device_class": "temperature", "friendly_name": "Living", "icon": "mdi:t"}),
    ("sensor.living_temperature", "21.75",
     {"unit_of_measurement": "°C", "device_class": "temperature", "friendly_name": "Living", "icon": "mdi:t"}),
    ("sensor.outdoor_temperature", "-2.5", {"unit_of_measurement": "°C", "friendly_name": "Outdoor"}),
    ("sensor.living_humidity", "48", {"unit_of_measurement": "%", "device_class": "humidity"}),
    ("sensor.router_rssi", "-60", {"unit_of_measurement": "dBm"}),  # excluded by glob
    ("light.kitchen", "on", {"brightness": 200}),  # not an included domain
    ("binary_sensor.front_door", "on", {"device_class": "door", "friendly_name": "Front door"}),
    ("binary_sensor.front_door", "off", {"device_class": "door", "friendly_name": "Front door"}),
    ("switch.kettle", "on", {"friendly_name": "Kettle", "current_power_w": 1800.5}),
    ("sensor.washer_status", "rinsing", {"friendly_name": "Washer"}),  # no unit: default_measurement
    ("sensor.last_included", "1", {"unit_of_measurement": "x"}),  # written last: both flushed past it
]  # fmt: skip


def _migrate(configuration: Path, secrets_out: Path) -> tuple[str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "homeiq_daemon", "migrate-ha-config", str(configuration), "--secrets-out",
         str(secrets_out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr


def layout(influx: InfluxServer, db: str) -> tuple[dict[str, set[str]], dict[str, dict[str, str]], Counter[str]]:
    """(tag keys per measurement, field key -> type per measurement, the points without their time)."""
    tag_keys = {s["name"]: {v[0] for v in s.get("values", [])} for s in influx.query("SHOW TAG KEYS", db)}
    field_keys = {s["name"]: {v[0]: v[1] for v in s.get("values", [])} for s in influx.query("SHOW FIELD KEYS", db)}
    points: Counter[str] = Counter()
    for series in influx.query("SELECT * FROM /.*/ GROUP BY *", db):
        for values in series.get("values", []):
            row = dict(zip(series["columns"], values, strict=True))
            row.pop("time")
            fields = {k: v for k, v in row.items() if v is not None}
            points[json.dumps([series["name"], series.get("tags", {}), fields], sort_keys=True)] += 1
    return tag_keys, field_keys, points


def _count(influx: InfluxServer, db: str, entity: str) -> int:
    object_id = entity.partition(".")[2]
    try:
        series = influx.query(f"SELECT count(*) FROM /.*/ WHERE entity_id = '{object_id}'", db)
    except RuntimeError:  # database not created yet
        return 0
    return sum(max(v for v in values[1:] if v is not None) for s in series for values in s.get("values", []))


async def _wait(predicate: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[App]:
    app = App(settings)
    task = asyncio.create_task(app.run(), name="migration-app")
    try:
        await _wait(lambda: app.ready.is_set() or task.done(), "daemon ready", timeout_s=40)
        if task.done():
            task.result()
        yield app
    finally:
        app.request_stop()
        await asyncio.wait_for(task, timeout=20)


@pytest.fixture
def influx_for_migration(influxd_server: InfluxServer) -> InfluxServer:
    for db in ("ha_native", "homeiq"):
        influxd_server.query(f'DROP DATABASE "{db}"')
        influxd_server.create_database(db)  # HA never creates its database; the converted config does not either
    return influxd_server


async def test_v1_block_converts_and_the_daemon_writes_what_has_integration_writes(
    tmp_path: Path, ha_venv: Path, influx_for_migration: InfluxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    influx = influx_for_migration
    block = V1_BLOCK.format(port=influx.http_port)
    ha = RealHomeAssistant(tmp_path / "ha", ha_venv, extra_yaml=block, secrets=SECRETS)
    ha.start()
    try:
        toml_text, notes = _migrate(ha.config_dir / "configuration.yaml", tmp_path / "secrets")
        assert "pw with spaces" not in toml_text  # the secret goes to a credential file, never to the TOML
        assert (tmp_path / "secrets" / "influxdb_password").read_text() == "pw with spaces\n"
        assert "precision" in notes
        config = tmp_path / "homeiq.toml"
        config.write_text(toml_text)
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "secrets"))
        settings = load_settings(
            config,
            state_dir=tmp_path / "state",
            home_assistant={"url": ha.base_url, "token": ha.token},
            influxdb={"url": influx.url, "database": "homeiq", "username": "homeassistant",
                      "create_database": False, "write_attempts": 3},
            batch={"size": 100, "flush_interval_s": 0.2},
            spool={"fsync": False},
            http={"enabled": False},
        )  # fmt: skip
        migrated = load_settings(config)
        assert migrated.influxdb.url == f"http://127.0.0.1:{influx.http_port}"
        assert migrated.influxdb.database == "ha_native"
        assert migrated.influxdb.password is not None
        assert migrated.influxdb.password.get_secret_value() == "pw with spaces"
        # the mapping settings are those of the block, as converted (overrides above touch only the connection)
        assert settings.mapping == migrated.mapping
        assert settings.mapping.default_measurement == "state"

        async with running(settings):
            for entity_id, state, attributes in STATES:
                await asyncio.to_thread(ha.set_state, entity_id, state, attributes)
            for db in ("ha_native", "homeiq"):
                await _wait(lambda db=db: _count(influx, db, "sensor.last_included") >= 1, f"{db} flushed")
    finally:
        ha.stop()

    native = layout(influx, "ha_native")
    ours = layout(influx, "homeiq")
    assert ours[0] == native[0], "tag keys per measurement differ"
    assert ours[1] == native[1], "field keys or types per measurement differ"
    assert ours[2] == native[2], "points differ"
    measurements = set(native[1])
    assert {"°C", "outdoor", "%", "state", "x"} <= measurements  # the block's settings did take effect
    assert "dBm" not in measurements  # excluded glob
    assert not any("kitchen" in p for p in native[2])  # domain outside include
    assert sum(native[2].values()) == 9


def test_v2_block_converts_to_the_connection_home_assistant_builds(tmp_path: Path, ha_venv: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    configuration = config_dir / "configuration.yaml"
    configuration.write_text("homeassistant:\n  name: v2\nautomation: !include automations.yaml\n" + V2_BLOCK)
    (config_dir / "automations.yaml").write_text("[]\n")
    (config_dir / "secrets.yaml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in SECRETS.items()))
    # Home Assistant's own reading of the same file: its YAML loader with secrets, then its schema.
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from homeassistant.util.yaml import Secrets, load_yaml\n"
        "from homeassistant.components.influxdb import CONFIG_SCHEMA\n"
        "path = Path(sys.argv[1])\n"
        "conf = CONFIG_SCHEMA(load_yaml(path, Secrets(path.parent)))['influxdb']\n"
        "print(json.dumps({k: conf[k] for k in ('url', 'organization', 'bucket', 'token', 'verify_ssl', 'tags')}))\n"
    )
    ha = subprocess.run(
        [str(ha_venv / "bin" / "python"), "-c", script, str(configuration)],
        capture_output=True, text=True, timeout=120, check=False, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert ha.returncode == 0, ha.stderr
    expected = json.loads(ha.stdout)

    toml_text, _ = _migrate(configuration, tmp_path / "secrets")
    assert "tok-v2-secret" not in toml_text
    config = tmp_path / "homeiq.toml"
    config.write_text(toml_text)
    with pytest.raises(ConfigError, match="api_version 2 needs token"):  # it is in the credential file only
        load_settings(config)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "secrets"))
        settings = load_settings(config)
    influx = settings.influxdb
    assert influx.api_version == 2
    assert influx.url == expected["url"] == "https://influx.example.net:8443/influx"
    assert influx.org == expected["organization"]
    assert influx.bucket == expected["bucket"]
    assert influx.token is not None
    assert influx.token.get_secret_value() == expected["token"] == "tok-v2-secret"
    assert influx.verify_ssl is expected["verify_ssl"] is False
    assert settings.mapping.tags == expected["tags"]


def _replay_file(path: Path, states: list[tuple[str, str, dict[str, Any]]]) -> None:
    lines = []
    for second, (entity_id, state, attributes) in enumerate(states):
        when = f"2026-11-20T12:00:{second:02d}.000000+00:00"
        new_state = {"entity_id": entity_id, "state": state, "attributes": attributes, "last_changed": when,
                     "last_updated": when, "context": {"id": f"01HQ{second:022d}", "parent_id": None, "user_id": None}}
        event = {"event_type": "state_changed", "data": {"entity_id": entity_id, "old_state": None,
                                                         "new_state": new_state}}  # fmt: skip
        lines.append(json.dumps({"id": 1, "type": "event", "event": event}))
    path.write_text("\n".join(lines) + "\n")


async def test_v2_block_converted_writes_what_has_integration_would_write(tmp_path: Path, ha_venv: Path) -> None:
    """The write side of v2 against the 2.x fake: the daemon's points for the converted block are those HA's
    own event_to_json (fed the same block, read by HA's YAML loader) makes for the same states."""
    from tests.support.fake_influx2 import FakeInflux2  # noqa: PLC0415

    config_dir = tmp_path / "config"
    config_dir.mkdir()
    configuration = config_dir / "configuration.yaml"
    block = V2_BLOCK.replace("  tags:\n    instance: cloud\n", "  tags:\n    instance: cloud\n"
                             "  tags_attributes:\n    - friendly_name\n  default_measurement: state\n")  # fmt: skip
    configuration.write_text("homeassistant:\n  name: v2\n" + block)
    (config_dir / "secrets.yaml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in SECRETS.items()))
    toml_text, _ = _migrate(configuration, tmp_path / "secrets")
    (tmp_path / "homeiq.toml").write_text(toml_text)

    states = [s for s in STATES if s[0] != "light.kitchen"]  # every domain HA's v2 block takes (no include)
    _replay_file(tmp_path / "replay.jsonl", states)
    fake = FakeInflux2(token=SECRETS["influx_token"], org="my-org", bucket="home")
    await fake.start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "secrets"))
            settings = load_settings(
                tmp_path / "homeiq.toml",
                state_dir=tmp_path / "state",
                influxdb={"url": fake.url},  # the converted cloud URL, pointed at the loopback fake
                replay={"path": str(tmp_path / "replay.jsonl")},
                batch={"size": 100, "flush_interval_s": 0.2},
                http={"enabled": False},
            )
        app = App(settings, exit_when_sources_done=True)
        await asyncio.wait_for(app.run(), timeout=60)
    finally:
        await fake.stop()
    ours = Counter(json.dumps([m, dict(tags), fields], sort_keys=True) for (m, tags, _t), fields in fake.points.items())

    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from homeassistant.util.yaml import Secrets, load_yaml\n"
        "path = Path(sys.argv[1])\n"
        "print(json.dumps(load_yaml(path, Secrets(path.parent))['influxdb']))\n"
    )
    loaded = subprocess.run([str(ha_venv / "bin" / "python"), "-c", script, str(configuration)], capture_output=True,
                            text=True, timeout=120, check=True, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    request = {"config": json.loads(loaded.stdout),
               "states": [{"entity_id": e, "state": s, "attributes": a} for e, s, a in states]}  # fmt: skip
    oracle = subprocess.run([str(ha_venv / "bin" / "python"), str(REPO_ROOT / "tests/support/ha_influx_oracle.py")],
                            input=json.dumps(request) + "\n", capture_output=True, text=True, timeout=120,
                            check=True, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    expected = Counter(
        json.dumps([p["measurement"], p["tags"], p["fields"]], sort_keys=True)
        for p in json.loads(oracle.stdout) if p is not None
    )
    assert sum(expected.values()) == len(states)  # no include/exclude in this block: HA writes every one
    assert ours == expected
