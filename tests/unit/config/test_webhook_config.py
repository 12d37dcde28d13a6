"""The [webhooks] settings: one clear error naming the setting; secrets from systemd credentials."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from homeiq_daemon.config import load_settings, redacted_dict
from homeiq_daemon.errors import ConfigError

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER = "whsec_" + base64.b64encode(b"o" * 32).decode()

BASE = f"""
state_dir = "{{state}}"

[webhooks.targets.ha]
url = "http://127.0.0.1:8123/api/webhook/secret-hook-id"
secret = "{SECRET}"

[[webhooks.rules]]
name = "door"
entities = ["binary_sensor.door"]
to = "on"
target = "ha"
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HOMEIQ_") or name in ("CREDENTIALS_DIRECTORY", "CONFIGURATION_DIRECTORY"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, extra: str = "", base: str = BASE) -> Path:
    path = tmp_path / "homeiq.toml"
    path.write_text(base.format(state=tmp_path / "state") + extra)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return str(info.value)


def test_valid_config_and_redacted_output(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path))
    rule = settings.webhooks.rules[0]
    assert rule.to == ["on"]
    assert rule.target_name == "ha"
    assert settings.webhooks.horizon_s == 86_400
    assert settings.webhooks.all_targets["ha"].keys == [b"k" * 32]
    shown = str(redacted_dict(settings))
    assert "secret-hook-id" not in shown
    assert SECRET not in shown
    assert "/api/webhook/**********" in shown


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            '[[webhooks.rules]]\nname = "t"\nentities = ["sensor.t"]\nabove = "warm"\ntarget = "ha"\n',
            "webhooks.rules[1].above: must be a number",
        ),
        (
            '[[webhooks.rules]]\nname = "t"\nentities = ["sensor.t"]\nabove = 5\ntarget = "nope"\n',
            "webhooks.rules[1].target: no [webhooks.targets.nope] is configured",
        ),
        (
            '[[webhooks.rules]]\nname = "door"\nentities = ["sensor.t"]\ntarget = "ha"\n',
            'webhooks.rules[1]: another rule is already named "door"',
        ),
        ('[[webhooks.rules]]\nname = "t"\ntarget = "ha"\n', "webhooks.rules[1]: needs entities, domains or areas"),
        (
            '[[webhooks.rules]]\nname = "t"\nentities = ["a.b"]\nabove = 5\nbelow = 1\ntarget = "ha"\n',
            "webhooks.rules[1]: above must be less than below",
        ),
        (
            '[[webhooks.rules]]\nname = "t"\nentities = ["a.b"]\nto = "on"\nabove = 1\ntarget = "ha"\n',
            "use either to/from or above/below",
        ),
        ('[[webhooks.rules]]\nname = "t"\nentities = ["a.b"]\n', "needs exactly one of target"),
        (
            '[[webhooks.rules]]\nname = "t"\nentities = ["a.b"]\nurl = "ftp://x/y"\n',
            "webhooks.rules[1].url: must be an http(s) URL",
        ),
        (
            '[[webhooks.rules]]\nname = "t t"\nentities = ["a.b"]\ntarget = "ha"\n',
            "webhooks.rules[1].name: use 1 to 64 letters",
        ),
        (
            '[[webhooks.rules]]\nname = "t"\nentities = ["a.b"]\ntarget = "ha"\nfor_s = -1\n',
            "webhooks.rules[1].for_s:",
        ),
        (
            '[[webhooks.rules]]\nname = "t"\nentities = ["a.b"]\ntarget = "ha"\ncolour = "red"\n',
            "webhooks.rules[1].colour: unknown setting",
        ),
        ('[webhooks.targets.x]\nurl = "http://h/x"\nsecret = "hunter2"\n', "webhooks.targets.x.secret: must look like"),
    ],
)
def test_errors_name_the_setting(tmp_path: Path, extra: str, expected: str) -> None:
    message = error_of(write(tmp_path, extra))
    assert expected in message
    assert "hunter2" not in message
    assert SECRET not in message


def test_credentials_fill_target_and_inline_rule_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "webhook_ha").write_text(f"{OTHER} {SECRET}\n")  # rotation: new first, old second
    (creds / "webhook_inline").write_text(OTHER)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    extra = '[[webhooks.rules]]\nname = "inline"\nentities = ["a.b"]\nurl = "http://127.0.0.1:9/x"\n'
    settings = load_settings(write(tmp_path, extra))
    targets = settings.webhooks.all_targets
    assert targets["ha"].keys == [b"o" * 32, b"k" * 32]  # the credential wins over the TOML value
    assert targets["inline"].keys == [b"o" * 32]


def test_credential_for_unknown_name_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "webhook_hx").write_text(OTHER)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    message = error_of(write(tmp_path))
    assert "webhook_hx" in message
    assert "no [webhooks.targets.hx]" in message


def test_bad_secret_in_credential_does_not_leak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "webhook_ha").write_text("whsec_c2hvcnQ=")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    message = error_of(write(tmp_path))
    assert "webhooks.targets.ha.secret" in message
    assert "c2hvcnQ" not in message


def test_no_webhooks_section_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "homeiq.toml"
    path.write_text(f'state_dir = "{tmp_path}"\n')
    settings = load_settings(path)
    assert settings.webhooks.rules == []
    assert settings.webhooks.all_targets == {}
