"""Configuration: sources and precedence, credentials, clear errors with exit code 78, redaction."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from homeiq_daemon.config import Settings, load_settings
from homeiq_daemon.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("HOMEIQ_") or key in ("CREDENTIALS_DIRECTORY", "CONFIGURATION_DIRECTORY"):
            monkeypatch.delenv(key)


def test_defaults_are_usable() -> None:
    s = load_settings(None)
    assert s.batch.size == 1000
    assert s.batch.flush_interval_s == 5.0
    assert s.influxdb.url is None
    assert not s.uses_influxdb


def test_env_nested_and_toml_and_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "homeiq.toml"
    cfg.write_text('[influxdb]\nurl = "http://db:8086"\ndatabase = "fromfile"\n[batch]\nsize = 50\n')
    monkeypatch.setenv("HOMEIQ_INFLUXDB__DATABASE", "fromenv")
    s = load_settings(cfg)
    assert s.influxdb.url == "http://db:8086"
    assert s.influxdb.database == "fromenv"  # the environment wins over the file
    assert s.batch.size == 50


def test_credentials_directory_fills_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ha_token").write_text("s3cret-token\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("HOMEIQ_HOME_ASSISTANT__URL", "http://ha:8123")
    s = load_settings(None)
    assert s.home_assistant.token is not None
    assert s.home_assistant.token.get_secret_value() == "s3cret-token"
    assert s.home_assistant.websocket_url == "ws://ha:8123/api/websocket"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[influxdb]\nurl = "ftp://x"', "influxdb.url: must look like http://localhost:8086"),
        ("[batch]\nsize = 0", "batch.size: Input should be greater than or equal to 1"),
        ("[batch]\nsiez = 10", "batch.siez: unknown setting"),
        ('[home_assistant]\nurl = "http://ha:8123"', "home_assistant.token is required"),
        ('[influxdb]\nurl = "http://x:8086"\napi_version = 2', "influxdb: api_version 2 needs org and bucket"),
        ("[batch\nsize = 1", "Expected ']'"),
    ],
)
def test_bad_config_names_the_setting(tmp_path: Path, toml: str, message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("]", r"\]").replace("[", r"\[")):
        load_settings(cfg)


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_cli_check_config_exit_codes_and_redaction(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEIQ_")}
    good = tmp_path / "good.toml"
    good.write_text('[home_assistant]\nurl = "http://ha:8123"\ntoken = "very-secret-token"\n')
    ok = subprocess.run([sys.executable, "-m", "homeiq_daemon", "--config", str(good), "check-config"],
                        capture_output=True, text=True, env=env, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "very-secret-token" not in ok.stdout + ok.stderr
    assert '"token": "**********"' in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[batch]\nflush_interval_s = -1\n")
    res = subprocess.run([sys.executable, "-m", "homeiq_daemon", "--config", str(bad), "check-config"],
                         capture_output=True, text=True, env=env, timeout=60, check=False)
    assert res.returncode == 78
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("homeiq: config error: batch.flush_interval_s:")


def test_example_config_documents_every_setting() -> None:
    text = (ROOT / "config/homeiq.example.toml").read_text()
    for name, field in Settings.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and hasattr(sub, "model_fields"):
            assert f"[{name}]" in text, f"section [{name}] missing from the example"
            for setting in sub.model_fields:
                if setting in ("include", "exclude", "component_config", "component_config_domain",
                               "component_config_glob"):
                    assert f"{name}.{setting}" in text, f"{name}.{setting} not shown"
                    continue
                assert f"{setting} =" in text, f"{name}.{setting} is not documented in the example"
        else:
            assert f"{name} =" in text, f"{name} is not documented in the example"
    # The section headers themselves are valid TOML.
    tomllib.loads("\n".join(line for line in text.splitlines() if line.startswith("[")))
