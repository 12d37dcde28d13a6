"""migrate-ha-config: HA's influxdb: block (v1/v2, HA's YAML tags) -> homeiq.toml that loads; check-config
explains HA's names found in a homeiq.toml."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from homeiq_daemon.cli.ha_influx import MigrationError, convert, explain_names, influx_url
from homeiq_daemon.config import load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("HOMEIQ_") or key in ("CREDENTIALS_DIRECTORY", "CONFIGURATION_DIRECTORY"):
            monkeypatch.delenv(key)


def homeiq(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "homeiq_daemon", *args], capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, **(env or {})})  # fmt: skip


def test_v1_defaults_follow_influxdb_python_and_v2_defaults_follow_home_assistant() -> None:
    assert influx_url({}, 1) == "http://localhost:8086"
    assert influx_url({"host": "db", "ssl": True, "path": "influx/"}, 1) == "https://db:8086/influx"
    assert influx_url({}, 2) == "https://us-west-2-1.aws.cloud2.influxdata.com"
    assert influx_url({"host": "::1", "port": 8086, "ssl": False}, 2) == "http://[::1]:8086"
    v1 = convert({"database": "hass", "max_retries": 3})
    assert v1.settings["influxdb"] == {"url": "http://localhost:8086", "database": "hass", "create_database": False,
                                       "write_attempts": 4}  # fmt: skip
    v2 = convert({"api_version": 2, "token": "t", "organization": "o"})
    assert v2.settings["influxdb"]["bucket"] == "Home Assistant"  # HA's default bucket
    assert v2.secrets == {"influxdb_token": "t"}


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"api_version": "3"}, "influxdb.api_version"),
        ({"api_version": "2", "token": "t"}, "needs token and organization"),
        ({"api_version": "2", "token": "t", "organization": "o", "username": "u"}, "only with api_version 1"),
        ({"token": "t"}, 'only with api_version "2"'),
        ({"hots": "x"}, "influxdb.hots: not an option"),
        ({"include": {"domain": ["sensor"]}}, "influxdb.include.domain: unknown filter key"),
        ({"component_config": {"sensor.a": {"measurement": "m"}}}, "component_config.sensor.a.measurement"),
        ({"ssl": "maybe"}, "influxdb.ssl: expected true or false"),
        (["host"], "expected a mapping"),
    ],
)
def test_bad_blocks_name_the_option(block: object, message: str) -> None:
    with pytest.raises(MigrationError, match=message.replace(".", r"\.").replace("(", r"\(")):
        convert(block)


def test_the_printed_toml_loads_and_the_secret_stays_out_of_it(tmp_path: Path) -> None:
    (tmp_path / "configuration.yaml").write_text(
        "homeassistant:\n  name: x\n"
        "automation: !include automations.yaml\n"  # tags outside the block are not resolved
        "sensor: !include_dir_merge_list sensors/\n"
        "influxdb: !include influx.yaml\n"
    )
    (tmp_path / "influx.yaml").write_text(
        "host: !env_var INFLUX_HOST localhost\nport: 8087\nusername: ha\npassword: !secret influx_pw\n"
        "measurement_attr: domain__device_class\ntags_attributes: friendly_name\n"
        "component_config_domain:\n  light:\n    ignore_attributes: [xy_color]\n"
        "component_config_glob:\n  'sensor.*_power':\n    override_measurement: power\n"
        'tags:\n  "odd key": "quote \\" and \\\\ backslash"\n'
    )
    (tmp_path / "secrets.yaml").write_text("influx_pw: hunter2\n")
    out = homeiq("migrate-ha-config", str(tmp_path / "configuration.yaml"), "--secrets-out", str(tmp_path / "s"),
                 env={"INFLUX_HOST": "db.lan"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "hunter2" not in out.stdout + out.stderr
    assert (tmp_path / "s" / "influxdb_password").stat().st_mode & 0o777 == 0o600
    data = tomllib.loads(out.stdout)
    assert data["influxdb"]["url"] == "http://db.lan:8087"
    assert data["mapping"]["tags_attributes"] == ["friendly_name"]
    assert data["mapping"]["tags"] == {"odd key": 'quote " and \\ backslash'}
    config = tmp_path / "homeiq.toml"
    config.write_text(out.stdout)
    settings = load_settings(config)
    assert settings.mapping.measurement_attr == "domain__device_class"
    assert settings.mapping.component_config_domain["light"].ignore_attributes == ["xy_color"]
    assert settings.mapping.component_config_glob["sensor.*_power"].override_measurement == "power"


@pytest.mark.parametrize(
    ("yaml_text", "secrets", "message"),
    [
        ("influxdb:\n  password: !secret nope\n", "other: 1\n", "influxdb.password: !secret nope is not in"),
        ("influxdb:\n  password: !secret nope\n", None, "!secret nope is not in"),
        ("influxdb: !include_dir_named influx/\n", None, "!include_dir_named is not supported"),
        ("influxdb:\n  host: !env_var HOMEIQ_TEST_UNSET_VAR\n", None, "!env_var HOMEIQ_TEST_UNSET_VAR is not set"),
        ("influxdb: !include missing.yaml\n", None, "missing.yaml does not exist"),
        ("recorder:\n  purge_keep_days: 3\n", None, "no influxdb: block"),
        ("influxdb:\n  host: [unclosed\n", None, "not valid YAML"),
        ("influxdb:\n  hots: x\n", None, "influxdb.hots: not an option"),
        ("a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
         "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
         "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\ninfluxdb:\n  tags_attributes: [*e, *e, *e]\n",
         None, "values in the block (YAML aliases expanding?)"),
    ],
)
def test_unusable_configuration_gets_one_line_and_exit_78(
    tmp_path: Path, yaml_text: str, secrets: str | None, message: str
) -> None:
    (tmp_path / "configuration.yaml").write_text(yaml_text)
    if secrets is not None:
        (tmp_path / "secrets.yaml").write_text(secrets)
    out = homeiq("migrate-ha-config", str(tmp_path / "configuration.yaml"))
    assert out.returncode == 78
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert out.stdout == ""


def test_check_config_says_what_each_of_has_names_is_called_here(tmp_path: Path) -> None:
    config = tmp_path / "homeiq.toml"
    config.write_text(
        '[influxdb]\nhost = "db"\nport = 8086\nssl = false\npath = "/x"\norganization = "o"\nmax_retries = 3\n'
        'precision = "s"\nssl_ca_cert = "/ca.pem"\napi_version = "1"\nverify_ssl = true\ndatabase = "home"\n'
        'tags = { a = "b" }\ntags_attributes = []\ndefault_measurement = "state"\noverride_measurement = "m"\n'
        'include = { domains = ["sensor"] }\nexclude = {}\ncomponent_config = {}\ncomponent_config_glob = {}\n'
        'component_config_domain = {}\nmeasurement_attr = "entity_id"\nignore_attributes = []\n'
    )
    out = homeiq("--config", str(config), "check-config")
    assert out.returncode == 78
    lines = {line.strip().split(":")[0]: line.strip() for line in out.stderr.splitlines() if line.startswith("  ")}
    assert lines["influxdb.host"].endswith("homeiq: influxdb.url (http[s]://HOST:PORT/PATH)")
    assert "influxdb.org" in lines["influxdb.organization"]
    assert "influxdb.write_attempts" in lines["influxdb.max_retries"]
    assert "not needed" in lines["influxdb.precision"]
    assert "not supported" in lines["influxdb.ssl_ca_cert"]
    for name in ("tags", "tags_attributes", "default_measurement", "override_measurement", "include", "exclude",
                 "component_config", "component_config_glob", "component_config_domain", "measurement_attr",
                 "ignore_attributes"):  # fmt: skip
        assert lines[f"influxdb.{name}"].endswith(f"homeiq: mapping.{name} (same meaning, in [mapping])")
    for shared in ("api_version", "verify_ssl", "database"):  # homeiq's names as well: not flagged
        assert f"influxdb.{shared}" not in lines
    assert out.stderr.strip().splitlines()[-1].startswith("homeiq: config error: influxdb.")


def test_explain_names_ignores_what_is_already_right() -> None:
    assert explain_names({"influxdb": {"url": "http://x", "database": "d"}, "mapping": {"tags": {}}}) == []
    assert explain_names("not a table") == []


def test_the_api_version_as_has_text_is_accepted(tmp_path: Path) -> None:
    config = tmp_path / "homeiq.toml"
    config.write_text('[influxdb]\nurl = "http://x:8086"\napi_version = "2"\norg = "o"\nbucket = "b"\ntoken = "t"\n')
    assert load_settings(config).influxdb.api_version == 2
