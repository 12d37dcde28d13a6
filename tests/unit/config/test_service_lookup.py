"""How the CLI finds the installed service: state dir, credentials beside the config, read-only loading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from homeiq_daemon.config import load_settings
from homeiq_daemon.config import settings as config_module
from homeiq_daemon.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("HOMEIQ_") or key in ("CREDENTIALS_DIRECTORY", "CONFIGURATION_DIRECTORY",
                                                 "STATE_DIRECTORY"):  # fmt: skip
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(config_module, "SERVICE_STATE_DIR", tmp_path / "no-service")


def test_state_dir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service = tmp_path / "var-lib-homeiq"
    monkeypatch.setattr(config_module, "SERVICE_STATE_DIR", service)
    expected_fallback = service if os.geteuid() == 0 else tmp_path / "xdg" / "homeiq"
    assert load_settings(None).state_dir == expected_fallback
    service.mkdir()  # the installed service's directory, readable here: the CLI reads what the daemon wrote
    assert load_settings(None).state_dir == service
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "systemd"))
    assert load_settings(None).state_dir == tmp_path / "systemd"
    cfg = tmp_path / "homeiq.toml"
    cfg.write_text(f'state_dir = "{tmp_path / "configured"}"\n')
    assert load_settings(cfg).state_dir == tmp_path / "configured"


def _service_config(tmp_path: Path, token: str | None) -> Path:
    etc = tmp_path / "etc-homeiq"
    (etc / "credentials").mkdir(parents=True)
    if token is not None:
        (etc / "credentials" / "ha_token").write_text(token + "\n")
    cfg = etc / "homeiq.toml"
    cfg.write_text('[home_assistant]\nurl = "http://ha.local:8123"\n')
    return cfg


def test_credentials_beside_the_config_are_read(tmp_path: Path) -> None:
    cfg = _service_config(tmp_path, "tok-beside")
    settings = load_settings(cfg)
    assert settings.home_assistant.token is not None
    assert settings.home_assistant.token.get_secret_value() == "tok-beside"


def test_credentials_directory_of_systemd_wins_over_the_one_beside_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _service_config(tmp_path, "tok-beside")
    systemd = tmp_path / "run-credentials"
    systemd.mkdir()
    (systemd / "ha_token").write_text("tok-systemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(systemd))
    token = load_settings(cfg).home_assistant.token
    assert token is not None
    assert token.get_secret_value() == "tok-systemd"


def test_read_only_loading_needs_no_ha_token_and_full_loading_still_does(tmp_path: Path) -> None:
    cfg = _service_config(tmp_path, None)
    settings = load_settings(cfg, read_only=True)
    assert settings.home_assistant.url == "http://ha.local:8123"
    assert settings.home_assistant.token is None
    with pytest.raises(ConfigError, match=r"home_assistant\.token is required"):  # the flag does not leak
        load_settings(cfg)
