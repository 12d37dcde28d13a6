"""Secrets in the settings: a blank or short HTTP token off loopback is a config error (exit 78, naming the
setting), a credential file that is not UTF-8 is a config error that never shows its bytes, and
check-config never prints the ``user:password@`` of a URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from homeiq_daemon.config import MIN_HTTP_TOKEN_CHARS, load_settings
from homeiq_daemon.errors import EXIT_CONFIG, ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("HOMEIQ_") or key in ("CREDENTIALS_DIRECTORY", "CONFIGURATION_DIRECTORY"):
            monkeypatch.delenv(key)


def _cli(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HOMEIQ_") and k != "CREDENTIALS_DIRECTORY"}
    return subprocess.run(
        [sys.executable, "-m", "homeiq_daemon", *argv],
        env={**base, "HOMEIQ_STATE_DIR": str(tmp_path / "state"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- item 1: blank tokens -------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", " ", "\t\n"])
def test_blank_http_token_in_toml_off_loopback_is_a_config_error(tmp_path: Path, token: str) -> None:
    cfg = tmp_path / "homeiq.toml"
    cfg.write_text(f'[http]\nhost = "0.0.0.0"\ntoken = "{token.encode("unicode_escape").decode()}"\n')
    with pytest.raises(ConfigError, match=r"^http\.token: is empty"):
        load_settings(cfg)


def test_blank_http_token_from_the_environment_exits_78_naming_it(tmp_path: Path) -> None:
    result = _cli(tmp_path, "check-config", env={"HOMEIQ_HTTP__HOST": "192.168.1.5", "HOMEIQ_HTTP__TOKEN": ""})
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert result.stderr.startswith("homeiq: config error: http.token: is empty"), result.stderr
    assert result.stderr.count("\n") == 1  # one line, no traceback


def test_short_http_token_off_loopback_is_refused() -> None:
    with pytest.raises(ConfigError, match=rf"^http\.token: shorter than {MIN_HTTP_TOKEN_CHARS} characters"):
        load_settings(None, http={"host": "::", "token": "x" * (MIN_HTTP_TOKEN_CHARS - 1)})
    settings = load_settings(None, http={"host": "::", "token": "x" * MIN_HTTP_TOKEN_CHARS})
    assert settings.http.token is not None


def test_blank_http_token_on_loopback_means_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEIQ_HTTP__TOKEN", " ")
    assert load_settings(None).http.token is None
    # A short token on loopback is the user's choice: only the network needs the minimum.
    assert load_settings(None, http={"token": "abc"}).http.token is not None


def test_blank_http_token_credential_off_loopback_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "http_token").write_text("\n")  # the unit's SetCredential= default when no file is installed
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(ConfigError, match=r"^http\.host: '10\.0\.0\.2' is not a loopback address; set http\.token"):
        load_settings(None, http={"host": "10.0.0.2"})


# --- item 7: credential files that are not text ------------------------------------------------------------


@pytest.mark.parametrize("name", ["ha_token", "http_token", "webhook_door"])
def test_credential_that_is_not_utf8_exits_78_without_its_content(tmp_path: Path, name: str) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    secret = b"SECRETPART-\xff\xfe-" + b"MORESECRET"
    (creds / name).write_bytes(secret)
    result = _cli(tmp_path, "check-config", env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert result.stderr == (
        f"homeiq: config error: credential {creds / name}: not UTF-8 text (invalid byte at offset 11 of "
        f"{len(secret)}); write the secret as plain text, e.g. with `printf %s`\n"
    )
    assert "SECRETPART" not in result.stdout + result.stderr
    assert "MORESECRET" not in result.stdout + result.stderr


# --- item 3: URLs with credentials in check-config ---------------------------------------------------------


def test_check_config_never_prints_url_credentials(tmp_path: Path) -> None:
    cfg = tmp_path / "homeiq.toml"
    cfg.write_text(
        '[home_assistant]\nurl = "http://hauser:ha-pass-1234@ha.local:8123"\ntoken = "tok-tok-tok"\n'
        '[influxdb]\nurl = "http://influser:influx-pass-5678@db.local:8086"\n'
        "[[webhooks.rules]]\n"
        'name = "door"\nentities = ["binary_sensor.door"]\n'
        'url = "http://whuser:wh-pass-9012@ha.local:8123/api/webhook/hook-id-3456"\n'
    )
    result = _cli(tmp_path, "--config", str(cfg), "check-config")
    assert result.returncode == 0, result.stderr
    shown = result.stdout + result.stderr
    for secret in ("ha-pass-1234", "influx-pass-5678", "wh-pass-9012", "hook-id-3456", "tok-tok-tok"):
        assert secret not in shown, secret
    assert '"url": "http://**********@ha.local:8123"' in result.stdout
    assert '"url": "http://**********@db.local:8086"' in result.stdout
    assert "config OK: source=http://**********@ha.local:8123 sink=InfluxDB http://**********@db.local:8086" in (
        result.stderr
    )


# --- beyond the list: every other secret that could be sent empty -----------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"home_assistant": {"url": "http://ha:8123", "token": "  "}}, r"^home_assistant\.token is required"),
        ({"influxdb": {"url": "http://db:8086", "api_version": 2, "org": "o", "bucket": "b", "token": ""}},
         r"^influxdb: api_version 2 needs token"),
        ({"switchbot": {"token": "", "secret": "s3cret"}}, r"^switchbot\.token: token and secret go together"),
        ({"switchbot": {"token": "t0ken", "secret": "\t"}}, r"^switchbot\.secret: token and secret go together"),
    ],
)  # fmt: skip
def test_a_blank_secret_is_unset_and_named(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, **overrides)


def test_a_blank_influxdb_password_is_not_sent() -> None:
    settings = load_settings(None, influxdb={"url": "http://db:8086", "username": "u", "password": " "})
    assert settings.influxdb.password is None


def test_doctor_never_prints_url_credentials(tmp_path: Path) -> None:
    cfg = tmp_path / "homeiq.toml"
    cfg.write_text(
        '[home_assistant]\nurl = "http://hauser:doctor-pass-1@127.0.0.1:9"\ntoken = "tok-tok-tok"\n'
        '[influxdb]\nurl = "http://influser:doctor-pass-2@127.0.0.1:9"\n'
    )
    result = _cli(tmp_path, "--config", str(cfg), "doctor")
    shown = result.stdout + result.stderr
    assert "127.0.0.1:9" in shown, shown  # the checks ran and named the addresses
    assert "doctor-pass-1" not in shown
    assert "doctor-pass-2" not in shown
