"""Hostile and clumsy input, one row each: what goes in, the outcome it must get (an exit code and its one
line, an HTTP status, or "dropped and counted"), and the proof that nothing already accepted is lost.

Rows run the real command (``homeiq``, a child process), the real App on a real replay file, and the real
HTTP server on loopback. docs/bad-input.md is the same table in prose.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from homeiq_daemon.app import App
from homeiq_daemon.errors import EXIT_CONFIG, EXIT_OK, EXIT_USAGE
from homeiq_daemon.sinks.embedded import read_history
from tests.support.daemon import daemon_settings, running_app
from tests.support.fake_ha import make_state

ROOT = Path(__file__).resolve().parents[2]
HOMEIQ = Path(sys.executable).with_name("homeiq")
EXAMPLE = ROOT / "examples" / "home.jsonl"
EXIT_ARGPARSE = 2
STAMP = "2026-11-20T12:00:00+00:00"


# --- command line, configuration, environment, credential files ----------------------------------------


@dataclass(frozen=True)
class CliRow:
    name: str
    argv: list[str]
    env: dict[str, str]
    exit_code: int
    line: str  # regex the last line of stderr must match (the one-line message)
    setup: Callable[[Path], None] | None = None
    kept: tuple[str, ...] = ()  # state files that must be byte-identical afterwards (nothing lost)


def _corrupt(name: str) -> Callable[[Path], None]:
    def setup(state: Path) -> None:
        (state / name).write_bytes(b"not a database, but somebody's data: keep me" * 100)
    return setup


def _spool_is_a_file(state: Path) -> None:
    (state / "spool").write_bytes(b"a file where the spool directory belongs")


def _credential(content: bytes) -> Callable[[Path], None]:
    def setup(state: Path) -> None:
        creds = state.parent / "credentials"
        creds.mkdir(exist_ok=True)
        (creds / "ha_token").write_bytes(content)
    return setup


_HUGE = "99999999999999999999999"
CLI_ROWS = [
    CliRow("config path is a directory", ["check-config", "--config", "{tmp}"], {}, EXIT_CONFIG,
           r"^homeiq: config error: config file .* is a directory, not a file$"),
    CliRow("--config after the subcommand", ["check-config", "--config", "{tmp}/ok.toml"], {}, EXIT_OK,
           r"^config OK: "),
    CliRow("a section as one env var, not JSON", ["check-config"], {"HOMEIQ_HTTP": "notjson"}, EXIT_CONFIG,
           r"^homeiq: config error: HOMEIQ_HTTP: not valid JSON"),
    CliRow("a list as one env var, not JSON", ["check-config"], {"HOMEIQ_MAPPING__TAGS_ATTRIBUTES": "notjson"},
           EXIT_CONFIG, r"^homeiq: config error: HOMEIQ_MAPPING__TAGS_ATTRIBUTES: not valid JSON"),
    CliRow("spool.max_bytes beyond 64 bits", ["check-config"], {"HOMEIQ_SPOOL__MAX_BYTES": _HUGE}, EXIT_CONFIG,
           r"^homeiq: config error: spool\.max_bytes: "),
    CliRow("retention_days = inf", ["check-config"], {"HOMEIQ_HISTORY__RETENTION_DAYS": "inf"}, EXIT_CONFIG,
           r"^homeiq: config error: history\.retention_days: "),
    CliRow("retention_days = nan", ["check-config"], {"HOMEIQ_HISTORY__RETENTION_DAYS": "nan"}, EXIT_CONFIG,
           r"^homeiq: config error: history\.retention_days: "),
    CliRow("InfluxDB URL with port 99999", ["check-config"], {"HOMEIQ_INFLUXDB__URL": "http://localhost:99999"},
           EXIT_CONFIG, r"^homeiq: config error: influxdb\.url: the port must be a number from 1 to 65535"),
    CliRow("HA URL with port 0", ["check-config"], {"HOMEIQ_HOME_ASSISTANT__URL": "http://ha.local:0"},
           EXIT_CONFIG, r"^homeiq: config error: home_assistant\.url: the port must be"),
    CliRow("segment_bytes above max_bytes/8", ["check-config"], {"HOMEIQ_SPOOL__SEGMENT_BYTES": str(512 << 20)},
           EXIT_CONFIG, r"^homeiq: config error: spool: segment_bytes must be at most max_bytes / 8"),
    CliRow("empty HOMEIQ_STATE_DIR", ["check-config"], {"HOMEIQ_STATE_DIR": ""}, EXIT_CONFIG,
           r"^homeiq: config error: state_dir: must not be empty"),
    CliRow("api_version as text, as every env var is", ["check-config"],
           {"HOMEIQ_INFLUXDB__URL": "http://localhost:8086", "HOMEIQ_INFLUXDB__API_VERSION": "2",
            "HOMEIQ_INFLUXDB__ORG": "home", "HOMEIQ_INFLUXDB__BUCKET": "ha", "HOMEIQ_INFLUXDB__TOKEN": "t"},
           EXIT_OK, r"^config OK: .*InfluxDB"),
    CliRow("credential file not UTF-8", ["check-config"], {"CREDENTIALS_DIRECTORY": "{tmp}/credentials"},
           EXIT_CONFIG, r"^homeiq: config error: credential .*ha_token: not UTF-8", _credential(b"\xff\xfe s3cret")),
    CliRow("corrupt homeiq.db at run", ["run", "--replay", str(EXAMPLE)], {}, EXIT_CONFIG,
           r"^homeiq: config error: state_dir: .*homeiq\.db is not a usable SQLite database", _corrupt("homeiq.db"),
           ("homeiq.db",)),
    CliRow("corrupt history.db at run", ["run", "--replay", str(EXAMPLE)], {}, EXIT_CONFIG,
           r"^homeiq: config error: state_dir: .*history\.db is not a usable SQLite database",
           _corrupt("history.db"), ("history.db",)),
    CliRow("corrupt homeiq.db for a reader", ["entities"], {}, EXIT_CONFIG,
           r"^homeiq: config error: state_dir: .*homeiq\.db is not a usable", _corrupt("homeiq.db"), ("homeiq.db",)),
    CliRow("corrupt history.db for a reader", ["history", "sensor.x"], {}, EXIT_CONFIG,
           r"^homeiq: config error: state_dir: .*history\.db is not a usable", _corrupt("history.db"),
           ("history.db",)),
    CliRow("spool path is a file", ["run", "--replay", str(EXAMPLE)], {}, EXIT_CONFIG,
           r"^homeiq: config error: state_dir: .*spool is not a directory", _spool_is_a_file, ("spool",)),
    CliRow("history --since 99999999999w", ["history", "sensor.x", "--since", "99999999999w"], {}, EXIT_USAGE,
           r"^homeiq: error: --since '99999999999w': use a duration like"),
    CliRow("history --limit 10**20", ["history", "sensor.x", "--limit", "99999999999999999999"], {}, EXIT_ARGPARSE,
           r"argument --limit: must be at most 1000000000$"),
    CliRow("history --limit -1", ["history", "sensor.x", "--limit", "-1"], {}, EXIT_ARGPARSE,
           r"argument --limit: must be 1 or more$"),
]


def _cli_env(tmp_path: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOMEIQ_", "NOTIFY_", "CREDENTIALS_"))}
    env.update(HOMEIQ_STATE_DIR=str(tmp_path / "state"), HOMEIQ_HTTP__ENABLED="false", HOMEIQ_LOG__FORMAT="json")
    env.update({k: v.replace("{tmp}", str(tmp_path)) for k, v in extra.items()})
    return env


@pytest.mark.parametrize("row", CLI_ROWS, ids=[r.name for r in CLI_ROWS])
def test_cli_and_config_rows(tmp_path: Path, row: CliRow) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "ok.toml").write_text("[batch]\nsize = 100\n")
    if row.setup is not None:
        row.setup(state)
    before = {name: (state / name).read_bytes() for name in row.kept}
    argv = [a.replace("{tmp}", str(tmp_path)) for a in row.argv]
    result = subprocess.run([str(HOMEIQ), *argv], env=_cli_env(tmp_path, row.env), capture_output=True,
                            text=True, timeout=120, check=False)
    streams = result.stderr.strip() or result.stdout.strip()
    last = streams.splitlines()[-1]
    assert result.returncode == row.exit_code, streams[-1500:]
    assert re.search(row.line, last), last
    assert "Traceback" not in result.stderr
    assert "s3cret" not in result.stderr + result.stdout
    for name, content in before.items():  # the damaged file is left for a person to look at, not replaced
        assert (state / name).read_bytes() == content


def test_history_accepts_any_year_and_returns_what_is_stored(tmp_path: Path) -> None:
    env = _cli_env(tmp_path, {})
    subprocess.run([str(HOMEIQ), "run", "--replay", str(EXAMPLE)], env=env, capture_output=True, timeout=120,
                   check=True)
    stored = read_history(tmp_path / "state" / "history.db", "sensor.living_room_temperature", -(2**63), 2**63 - 1)
    assert stored
    for argv in (["--since", "0001-01-01"], ["--since", "0001-01-01", "--until", "9999-12-31"]):
        result = subprocess.run([str(HOMEIQ), "history", "sensor.living_room_temperature", "--json", *argv,
                                 "--limit", "100000"], env=env, capture_output=True, text=True, timeout=60,
                                check=False)
        assert result.returncode == EXIT_OK, result.stderr
        assert len(result.stdout.splitlines()) == len(stored)


def test_readers_work_on_a_read_only_state_dir(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: file modes do not stop root, so a read-only state dir cannot be made here")
    env = _cli_env(tmp_path, {})
    subprocess.run([str(HOMEIQ), "run", "--replay", str(EXAMPLE)], env=env, capture_output=True, timeout=120,
                   check=True)
    state = tmp_path / "state"
    for path in [state, *state.iterdir()]:
        path.chmod(0o500 if path.is_dir() else 0o400)
    try:
        for argv in (["history", "sensor.living_room_temperature", "--since", "0001-01-01"], ["entities"]):
            result = subprocess.run([str(HOMEIQ), *argv], env=env, capture_output=True, text=True, timeout=60,
                                    check=False)
            assert result.returncode == EXIT_OK, result.stderr
    finally:
        for path in [state, *state.iterdir()]:
            path.chmod(0o700 if path.is_dir() else 0o600)


# --- replay lines (the same parser as Home Assistant's frames) --------------------------------------------


def _event(entity_id: str, state: str, last_updated: str = STAMP, **attributes: object) -> bytes:
    new_state = make_state(entity_id, state, dict(attributes), last_updated)
    return orjson.dumps({"id": 1, "type": "event", "event": {"event_type": "state_changed",
                                                             "data": {"entity_id": entity_id, "new_state": new_state}}})


def _deep(depth: int) -> bytes:
    text = _event("sensor.deep", "1", nested="DEEP").decode()
    return text.replace('"DEEP"', "[" * depth + "]" * depth).encode()


@dataclass(frozen=True)
class ReplayRow:
    name: str
    line: bytes
    outcome: str  # "dropped and counted" | "stored" | "mapped away and counted" | "ignored"
    counter: Callable[[App], int] = field(default=lambda app: app.stats.malformed_messages["replay"])


REPLAY_ROWS = [
    ReplayRow("not JSON", b"{not json", "dropped and counted"),
    ReplayRow("empty array", b"[]", "ignored"),
    ReplayRow("array of numbers", b"[1, 2, 3]", "dropped and counted"),
    ReplayRow("JSON string", b'"state_changed"', "dropped and counted"),
    ReplayRow("integer beyond 64 bits", b'{"entity_id": "sensor.x", "new_state": {"n": 123456789012345678901234}}',
              "dropped and counted"),
    ReplayRow("data null", b'{"event_type": "state_changed", "data": null}', "ignored"),
    ReplayRow("no entity_id", orjson.dumps({"new_state": {"state": "1", "last_updated": STAMP}}),
              "dropped and counted"),
    ReplayRow("last_updated in year 9999", _event("sensor.far", "1", "9999-12-31T23:59:59+00:00"),
              "dropped and counted"),
    ReplayRow("last_updated in year 1", _event("sensor.old", "1", "0001-01-01T00:00:00+00:00"),
              "dropped and counted"),
    ReplayRow("last_updated not a time", _event("sensor.when", "1", "yesterday"), "dropped and counted"),
    ReplayRow("attributes nested 1000 deep", _deep(1000), "mapped away and counted",
              lambda app: app.stats.events_skipped["mapping_failed"]),
    ReplayRow("pathological digit-tail string", _event("sensor.regex", "1" * 5000 + ".x.", note="1" * 5000 + ".x."),
              "stored", lambda app: 0),
    ReplayRow("8 MB attribute", _event("sensor.big", "1", blob="x" * (8 << 20)), "stored", lambda app: 0),
    ReplayRow("control characters in names", _event("sensor.ctl", "2", **{"\x1f": 1.0, "\x1e": "a"}), "stored",
              lambda app: 0),
]


@pytest.mark.parametrize("row", REPLAY_ROWS, ids=[r.name for r in REPLAY_ROWS])
async def test_replay_rows(tmp_path: Path, row: ReplayRow) -> None:
    replay = tmp_path / "r.jsonl"
    replay.write_bytes(b"\n".join([_event("sensor.before", "1"), row.line, _event("sensor.after", "2")]) + b"\n")
    app = App(daemon_settings(tmp_path / "state", replay={"path": replay}), exit_when_sources_done=True)
    await app.run()  # ends by itself: no crash, no hang
    history = tmp_path / "state" / "history.db"
    # Nothing accepted is lost: the good events on both sides of the bad line are stored.
    assert [r.value for r in read_history(history, "sensor.before", 0, 2**62)] == [1.0]
    assert [r.value for r in read_history(history, "sensor.after", 0, 2**62)] == [2.0]
    expected = {"dropped and counted": 1, "mapped away and counted": 1, "stored": 0, "ignored": 0}[row.outcome]
    assert row.counter(app) == expected
    assert app.stats.points_written == 2 + (1 if row.outcome == "stored" else 0)


# --- HTTP requests to the local API -----------------------------------------------------------------------


HTTP_ROWS = [
    ("unknown path", "GET", "/nope", 404),
    ("history with a limit of -1", "GET", "/api/v1/entities/sensor.x/history?limit=-1", 400),
    ("history with a 20-digit limit", "GET", "/api/v1/entities/sensor.x/history?limit=99999999999999999999", 200),
    ("history since 99999999999w", "GET", "/api/v1/entities/sensor.x/history?start=99999999999w", 400),
    ("history since year 1", "GET", "/api/v1/entities/sensor.x/history?start=0001-01-01T00:00:00", 200),
    ("a control character in the entity id", "GET", "/api/v1/entities/sensor.%00x", 400),
    ("a 10,000-character entity id", "GET", "/api/v1/entities/sensor." + "x" * 10_000, 400),
    ("POST to a GET endpoint", "POST", "/api/v1/entities", 405),
    ("SwitchBot push to a wrong secret", "POST", "/switchbot/webhook/wrong", 404),
]


@pytest.mark.parametrize(("name", "method", "path", "status"), HTTP_ROWS, ids=[r[0] for r in HTTP_ROWS])
async def test_http_rows(tmp_path: Path, name: str, method: str, path: str, status: int) -> None:
    settings = daemon_settings(tmp_path / "state", http={"enabled": True, "port": 0})
    async with running_app(settings) as (app, task):
        assert app.server is not None
        assert app.server.port is not None
        base = f"http://127.0.0.1:{app.server.port}"
        url = base + path

        def call() -> int:
            request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
            try:
                with urllib.request.urlopen(request, timeout=10) as resp:
                    return int(resp.status)
            except urllib.error.HTTPError as exc:
                return int(exc.code)

        got = await asyncio.to_thread(call)
        assert got == status, name
        health = await asyncio.to_thread(urllib.request.urlopen, base + "/healthz", None, 10)
        assert health.status in (200, 503)  # still answering after the request
        assert not task.done()


def test_rows_are_documented() -> None:
    """Every row's name appears in docs/bad-input.md, so the table and the docs stay one."""
    doc = (ROOT / "docs" / "bad-input.md").read_text()
    missing = [r.name for r in CLI_ROWS if r.name not in doc] + [r.name for r in REPLAY_ROWS if r.name not in doc]
    missing += [r[0] for r in HTTP_ROWS if r[0] not in doc]
    assert not missing, missing
    assert shutil.which(str(HOMEIQ))
