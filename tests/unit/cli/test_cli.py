"""The command line: one module per command group, ``--config`` before or after the command."""

from __future__ import annotations

from pathlib import Path

import pytest

from homeiq_daemon import cli
from homeiq_daemon.errors import EXIT_CONFIG, EXIT_OK, EXIT_USAGE


def _write_config(tmp_path: Path, name: str, state_dir: Path) -> Path:
    path = tmp_path / name
    path.write_text(f'state_dir = "{state_dir}"\n[http]\nport = 9\n')
    return path


@pytest.mark.parametrize("where", ["before", "after"])
def test_config_is_accepted_before_and_after_the_command(
    tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write_config(tmp_path, "homeiq.toml", tmp_path / "state")
    argv = ["--config", str(config), "check-config"] if where == "before" else ["check-config", "--config", str(config)]
    assert cli.main(argv) == EXIT_OK
    assert f'"state_dir": "{tmp_path / "state"}"' in capsys.readouterr().out


def test_config_after_the_command_wins_over_the_one_before(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = _write_config(tmp_path, "first.toml", tmp_path / "one")
    second = _write_config(tmp_path, "second.toml", tmp_path / "two")
    assert cli.main(["--config", str(first), "check-config", "--config", str(second)]) == EXIT_OK
    assert str(tmp_path / "two") in capsys.readouterr().out


def test_config_after_a_nested_action(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[webhooks]\nconcurrency = 0\n")
    assert cli.main(["webhooks", "log", "--config", str(config)]) == EXIT_CONFIG
    assert "webhooks.concurrency" in capsys.readouterr().err


def test_a_missing_config_file_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["history", "sensor.x", "--config", str(tmp_path / "none.toml")]) == EXIT_CONFIG
    assert "does not exist" in capsys.readouterr().err


def test_every_command_group_registers_its_commands() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) >= {"run", "check-config", "history", "webhooks", "devices", "entities", "switchbot"}
    for name, command in sub.choices.items():
        if name != "migrate-ha-config":  # reads Home Assistant's configuration, not ours
            assert any(a.dest == "config" for a in command._actions), f"{name} does not take --config"


def test_no_command_prints_help_and_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == EXIT_USAGE
    assert "COMMAND" in capsys.readouterr().err
