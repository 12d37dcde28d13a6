"""Home Assistant's ``influxdb:`` options -> homeiq settings (pure: no files, no YAML).

``convert`` turns one ``influxdb:`` block (already loaded, ``!secret`` resolved) into homeiq settings, the
secrets it named (to go to credential files, never into homeiq.toml) and notes on what differs.
``explain_names`` reads a homeiq.toml that holds HA's names (a block copied over by hand) and says, per name,
what homeiq calls it. Option names and defaults: ``homeassistant/components/influxdb/const.py`` (2024.3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HA_DEFAULT_HOST_V2 = "us-west-2-1.aws.cloud2.influxdata.com"
HA_DEFAULT_BUCKET = "Home Assistant"
HA_DEFAULT_DATABASE = "home_assistant"
MAX_WRITE_ATTEMPTS = 20

# HA's connection option -> what it becomes here (None: nothing, with the reason).
CONNECTION_NAMES: dict[str, str | None] = {
    "api_version": "influxdb.api_version (1 or 2, a number)",
    "host": "influxdb.url (http[s]://HOST:PORT/PATH)",
    "port": "influxdb.url (http[s]://HOST:PORT/PATH)",
    "ssl": "influxdb.url (https:// when true)",
    "path": "influxdb.url (http[s]://HOST:PORT/PATH)",
    "verify_ssl": "influxdb.verify_ssl",
    "database": "influxdb.database",
    "username": "influxdb.username",
    "password": "influxdb.password (credential file influxdb_password)",
    "token": "influxdb.token (credential file influxdb_token)",
    "organization": "influxdb.org",
    "bucket": "influxdb.bucket",
    "max_retries": "influxdb.write_attempts (max_retries + 1; after them batches wait in the disk spool)",
    "precision": None,
    "ssl_ca_cert": None,
}
UNSUPPORTED_REASONS = {
    "precision": "not needed: homeiq writes nanosecond times (the state's last_updated); a coarser precision "
    "only truncated HA's times, queries and dashboards read both alike",
    "ssl_ca_cert": "not supported: homeiq uses the system's certificate store (put the CA in "
    "/usr/local/share/ca-certificates/ and run update-ca-certificates)",
}
# Mapping options: same names, under [mapping] here (HA has them beside the connection options).
MAPPING_NAMES = (
    "default_measurement",
    "measurement_attr",
    "override_measurement",
    "tags",
    "tags_attributes",
    "ignore_attributes",
    "include",
    "exclude",
    "component_config",
    "component_config_domain",
    "component_config_glob",
)
FILTER_KEYS = ("domains", "entities", "entity_globs")
CUSTOMIZE_KEYS = ("override_measurement", "ignore_attributes")


class MigrationError(ValueError):
    """The block cannot be converted; the message names the option."""


@dataclass
class Conversion:
    settings: dict[str, Any] = field(default_factory=dict)
    """homeiq settings: ``{"influxdb": {...}, "mapping": {...}}``."""
    secrets: dict[str, str] = field(default_factory=dict)
    """credential file name -> value (influxdb_password, influxdb_token)."""
    notes: list[str] = field(default_factory=list)


def _text(block: dict[str, Any], key: str) -> str:
    value = block[key]
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise MigrationError(f"influxdb.{key}: expected text, got {type(value).__name__}")
    return str(value)


def _bool(block: dict[str, Any], key: str) -> bool:
    value = block[key]
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
        return value.lower() in ("true", "yes", "on")
    raise MigrationError(f"influxdb.{key}: expected true or false, got {value!r}")


def _api_version(block: dict[str, Any]) -> int:
    raw = str(block.get("api_version", "1")).strip()
    if raw not in ("1", "2"):
        raise MigrationError(f'influxdb.api_version: {raw!r} (HA accepts "1" or "2")')
    return int(raw)


def influx_url(block: dict[str, Any], api_version: int) -> str:
    """The URL HA's client would talk to: v2 as ``create_influx_url`` builds it, v1 with influxdb-python's
    defaults (localhost, 8086, no TLS)."""
    if api_version == 2:
        ssl = _bool(block, "ssl") if "ssl" in block else True
        host = _text(block, "host") if "host" in block else HA_DEFAULT_HOST_V2
        port = f":{_text(block, 'port')}" if "port" in block else ""
    else:
        ssl = _bool(block, "ssl") if "ssl" in block else False
        host = _text(block, "host") if "host" in block else "localhost"
        port = f":{_text(block, 'port')}" if "port" in block else ":8086"
    path = _text(block, "path") if "path" in block else ""
    if path and not path.startswith("/"):
        path = "/" + path
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"{'https' if ssl else 'http'}://{host}{port}{path.rstrip('/')}"


def _filter(value: Any, where: str) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MigrationError(f"{where}: expected domains/entities/entity_globs lists")
    out: dict[str, list[str]] = {}
    for key, items in value.items():
        if key not in FILTER_KEYS:
            raise MigrationError(f"{where}.{key}: unknown filter key (HA knows {', '.join(FILTER_KEYS)})")
        out[key] = _string_list(items, f"{where}.{key}")
    return out


def _string_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]  # HA's cv.ensure_list
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise MigrationError(f"{where}: expected a list of names")
    return [str(v) for v in value]


def _customize(value: Any, where: str) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MigrationError(f"{where}: expected a mapping of entity id / domain / glob to options")
    out: dict[str, dict[str, Any]] = {}
    for key, options in value.items():
        if not isinstance(options, dict):
            raise MigrationError(f"{where}.{key}: expected override_measurement / ignore_attributes")
        entry: dict[str, Any] = {}
        for option, item in options.items():
            if option == "override_measurement":
                entry[option] = str(item)
            elif option == "ignore_attributes":
                entry[option] = _string_list(item, f"{where}.{key}.{option}")
            else:
                raise MigrationError(f"{where}.{key}.{option}: unknown option (HA knows {', '.join(CUSTOMIZE_KEYS)})")
        out[str(key)] = entry
    return out


def _mapping(block: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in MAPPING_NAMES:
        if name not in block or block[name] is None:
            continue
        where = f"influxdb.{name}"
        value = block[name]
        if name in ("include", "exclude"):
            converted = _filter(value, where)
            if converted:
                out[name] = converted
        elif name.startswith("component_config"):
            converted_cc = _customize(value, where)
            if converted_cc:
                out[name] = converted_cc
        elif name == "tags":
            if not isinstance(value, dict):
                raise MigrationError(f"{where}: expected a mapping of tag name to value")
            if value:
                out[name] = {str(k): str(v) for k, v in value.items()}
        elif name in ("tags_attributes", "ignore_attributes"):
            items = _string_list(value, where)
            if items:
                out[name] = items
        else:
            out[name] = _text(block, name)
    return out


def convert(block: Any) -> Conversion:
    """One ``influxdb:`` block (a dict, secrets resolved) -> homeiq settings, secrets and notes."""
    if block is None:
        block = {}
    if not isinstance(block, dict):
        raise MigrationError("influxdb: expected a mapping of options")
    known = set(CONNECTION_NAMES) | set(MAPPING_NAMES)
    for key in block:
        if key not in known:
            raise MigrationError(f"influxdb.{key}: not an option of Home Assistant's influxdb integration")
    result = Conversion()
    version = _api_version(block)
    influx: dict[str, Any] = {"url": influx_url(block, version)}
    if version == 2:
        influx["api_version"] = 2
        if "username" in block or "password" in block:
            raise MigrationError("influxdb.username/password: only with api_version 1 (HA refuses them too)")
        if "token" not in block or "organization" not in block:
            raise MigrationError("influxdb: api_version 2 needs token and organization (as in HA)")
        influx["org"] = _text(block, "organization")
        influx["bucket"] = _text(block, "bucket") if "bucket" in block else HA_DEFAULT_BUCKET
        result.secrets["influxdb_token"] = _text(block, "token")
        if "database" in block:
            result.notes.append("influxdb.database: ignored with api_version 2 (HA ignores it too)")
    else:
        if "token" in block or "organization" in block or "bucket" in block:
            raise MigrationError('influxdb.token/organization/bucket: only with api_version "2" (HA refuses them too)')
        influx["database"] = _text(block, "database") if "database" in block else HA_DEFAULT_DATABASE
        if "username" in block:
            influx["username"] = _text(block, "username")
        if "password" in block:
            result.secrets["influxdb_password"] = _text(block, "password")
        # HA never creates the database; homeiq would, so a typo would make a new database instead of an error.
        influx["create_database"] = False
    if "verify_ssl" in block:
        influx["verify_ssl"] = _bool(block, "verify_ssl")
    if "max_retries" in block:
        retries = int(_text(block, "max_retries"))
        influx["write_attempts"] = max(1, min(retries + 1, MAX_WRITE_ATTEMPTS))
    for name, reason in UNSUPPORTED_REASONS.items():
        if name in block:
            result.notes.append(f"influxdb.{name}: {reason}")
    result.settings["influxdb"] = influx
    mapping = _mapping(block)
    if mapping:
        result.settings["mapping"] = mapping
    return result


def explain_names(data: Any) -> list[str]:
    """For a homeiq.toml (as parsed): one line per Home Assistant name found in [influxdb] or at the top, with
    what homeiq calls it. Names homeiq shares with HA in the right place are not mentioned."""
    lines: list[str] = []
    if not isinstance(data, dict):
        return lines
    places: list[tuple[str, Any]] = [("", data)]
    for section in ("influxdb", "mapping"):
        if isinstance(data.get(section), dict):
            places.append((f"{section}.", data[section]))
    shared_in_influxdb = {"verify_ssl", "database", "username", "password", "token", "bucket", "api_version"}
    for prefix, table in places:
        for key in table:
            if not isinstance(key, str):
                continue
            where = f"{prefix}{key}"
            if key in MAPPING_NAMES and prefix != "mapping.":
                lines.append(f"{where}: Home Assistant's name; homeiq: mapping.{key} (same meaning, in [mapping])")
            elif key in CONNECTION_NAMES and prefix != "mapping.":
                if prefix == "influxdb." and key in shared_in_influxdb:
                    continue  # homeiq's name too (api_version also as HA's text "2")
                target = CONNECTION_NAMES[key]
                if target is None:
                    lines.append(f"{where}: Home Assistant's name; {UNSUPPORTED_REASONS[key]}")
                else:
                    lines.append(f"{where}: Home Assistant's name; homeiq: {target}")
    return lines
