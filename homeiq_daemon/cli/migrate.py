"""``homeiq migrate-ha-config configuration.yaml``: Home Assistant's ``influxdb:`` block -> homeiq.toml.

The YAML is parsed safely (PyYAML's SafeLoader) with HA's tags: ``!secret NAME`` from ``secrets.yaml`` beside
the file, ``!include FILE`` relative to it, ``!env_var NAME [DEFAULT]`` from the environment; the
``!include_dir_*`` forms are refused inside the block (one line naming the option). Tags elsewhere in the file
are left unresolved: only the ``influxdb:`` block is read. Secrets never reach the printed TOML: they are
written as credential files with ``--secrets-out DIR`` (``systemd/install.sh --secrets DIR`` installs them).
See docs/migrating.md.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homeiq_daemon.cli.common import Loader, add_command
from homeiq_daemon.cli.ha_influx import Conversion, MigrationError, convert
from homeiq_daemon.errors import EXIT_OK, ConfigError, HomeIQError

MAX_YAML_BYTES = 4 * 1024 * 1024
MAX_INCLUDE_DEPTH = 8
MAX_VALUES = 100_000  # an influxdb: block has dozens; YAML aliases could make a small file expand without end
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def register(sub: Any) -> None:
    migrate = add_command(
        sub,
        "migrate-ha-config",
        cmd_migrate,
        takes_config=False,  # it reads Home Assistant's configuration, not ours
        help="print a homeiq.toml equivalent to Home Assistant's influxdb: block",
        description="Reads the influxdb: block of Home Assistant's configuration.yaml (v1 or v2 form, !secret "
        "from secrets.yaml beside it) and prints the equivalent homeiq settings. Secrets are not printed: "
        "--secrets-out writes them as credential files.",
    )
    migrate.add_argument("configuration", metavar="configuration.yaml")
    migrate.add_argument("--secrets-out", metavar="DIR", help="write influxdb_password / influxdb_token there (0600)")


# --- YAML with Home Assistant's tags --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tagged:
    tag: str
    value: Any
    base: Path


def _loader(base: Path) -> type:
    import yaml  # noqa: PLC0415 - only this command needs PyYAML

    class HALoader(yaml.SafeLoader):
        pass

    def tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> _Tagged:
        if isinstance(node, yaml.SequenceNode):
            value: Any = loader.construct_sequence(node, deep=True)
        elif isinstance(node, yaml.MappingNode):
            value = loader.construct_mapping(node, deep=True)
        else:
            value = loader.construct_scalar(node)  # type: ignore[arg-type] # the only node kind left
        return _Tagged("!" + suffix, value, base)

    HALoader.add_multi_constructor("!", tagged)
    return HALoader


def _load_yaml(path: Path) -> Any:
    import yaml  # noqa: PLC0415

    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise ConfigError(f"{path}: {size} bytes is more than a configuration file has")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return yaml.load(text, Loader=_loader(path.parent))  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None


class _Resolver:
    def __init__(self) -> None:
        self._secrets: dict[Path, dict[str, Any]] = {}
        self._values = 0

    def secret(self, name: Any, base: Path, where: str) -> Any:
        path = base / "secrets.yaml"
        if path not in self._secrets:
            loaded = _load_yaml(path) if path.exists() else None
            if loaded is not None and not isinstance(loaded, dict):
                raise ConfigError(f"{path}: expected name: value lines")
            self._secrets[path] = loaded or {}
        table = self._secrets[path]
        if not isinstance(name, str) or name not in table:
            raise ConfigError(f"{where}: !secret {name} is not in {path}")
        return table[name]

    def resolve(self, value: Any, where: str, depth: int = 0) -> Any:
        if depth > MAX_INCLUDE_DEPTH:
            raise ConfigError(f"{where}: !include nested more than {MAX_INCLUDE_DEPTH} deep")
        self._values += 1
        if self._values > MAX_VALUES:
            raise ConfigError(f"{where}: more than {MAX_VALUES:,} values in the block (YAML aliases expanding?)")
        if isinstance(value, dict):
            return {k: self.resolve(v, f"{where}.{k}", depth) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, f"{where}[{i}]", depth) for i, v in enumerate(value)]
        if not isinstance(value, _Tagged):
            return value
        if value.tag == "!secret":
            return self.resolve(self.secret(value.value, value.base, where), where, depth)
        if value.tag == "!include" and isinstance(value.value, str):
            return self.resolve(_load_yaml(value.base / value.value), where, depth + 1)
        if value.tag == "!env_var" and isinstance(value.value, str):
            name, _, default = value.value.partition(" ")
            if name in os.environ:
                return os.environ[name]
            if default:
                return default
            raise ConfigError(f"{where}: !env_var {name} is not set and has no default")
        raise ConfigError(f"{where}: {value.tag} is not supported here (write the options inline in influxdb:)")


def read_influx_block(configuration: Path) -> Any:
    """The ``influxdb:`` block of HA's configuration, tags resolved. ConfigError when there is none."""
    data = _load_yaml(configuration)
    resolver = _Resolver()
    if isinstance(data, _Tagged):
        data = resolver.resolve(data, "configuration")
    if not isinstance(data, dict) or "influxdb" not in data:
        raise ConfigError(
            f"{configuration}: no influxdb: block (is this Home Assistant's configuration.yaml? "
            "one kept in a package: pass that package's file)"
        )
    return resolver.resolve(data["influxdb"], "influxdb")


# --- TOML out -------------------------------------------------------------------------------------------


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else _string(name)


def _string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(ch if ch >= " " and ch != "\x7f" else f"\\u{ord(ch):04x}" for ch in escaped)
    return f'"{escaped}"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _table(lines: list[str], path: list[str], table: dict[str, Any]) -> None:
    plain = {k: v for k, v in table.items() if not (isinstance(v, dict) and _is_table(k, v))}
    nested = {k: v for k, v in table.items() if k not in plain}
    if plain or not nested:
        lines.append(f"[{'.'.join(_key(p) for p in path)}]")
        lines.extend(f"{_key(k)} = {_value(v)}" for k, v in plain.items())
        lines.append("")
    for key, sub in nested.items():
        _table(lines, [*path, key], sub)


def _is_table(key: str, value: dict[str, Any]) -> bool:
    return key not in ("tags",)  # tags stay inline: a small name = value map, as the example config writes it


def render_toml(conversion: Conversion, source: Path, secrets_out: Path | None) -> str:
    lines = [
        f"# homeiq settings equivalent to the influxdb: block of {source}",
        "# (written by homeiq migrate-ha-config; see docs/migrating.md for the switch-over)",
    ]
    lines.extend(f"# note: {note}" for note in conversion.notes)
    for name in sorted(conversion.secrets):
        where = f"written to {secrets_out / name}" if secrets_out else "not shown: use --secrets-out DIR"
        lines.append(f"# secret {name}: {where}; install it as /etc/homeiq/credentials/{name}")
    lines += [
        "",
        "[home_assistant]",
        '# url = "http://homeassistant.local:8123"    # and the token in the credential file ha_token',
        "",
    ]
    for section, table in conversion.settings.items():
        _table(lines, [section], table)
    return "\n".join(lines).rstrip("\n") + "\n"


def _write_secrets(directory: Path, secrets: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, value in secrets.items():
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
        os.chmod(path, 0o600)


def cmd_migrate(args: argparse.Namespace, load: Loader) -> int:
    source = Path(args.configuration)
    block = read_influx_block(source)
    try:
        conversion = convert(block)
    except MigrationError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    secrets_out = Path(args.secrets_out) if args.secrets_out else None
    if secrets_out is not None:
        try:
            _write_secrets(secrets_out, conversion.secrets)
        except OSError as exc:
            raise HomeIQError(f"--secrets-out {secrets_out}: {exc.strerror or exc}") from None
    sys.stdout.write(render_toml(conversion, source, secrets_out))
    for note in conversion.notes:
        sys.stderr.write(f"note: {note}\n")
    return EXIT_OK
