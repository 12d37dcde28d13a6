"""Every supervised task, killed (an exception raised inside it): the daemon restarts it or stops with the
documented exit code (app.TASKS, docs/architecture.md). It never keeps running with a dead task.

The daemon runs with every part that has a long-running task: Home Assistant (pointed at a closed loopback
port: it keeps reconnecting), the registry sync, SwitchBot (its API on a closed loopback port), webhooks,
the HTTP server, the embedded history; a replay file for the replay source.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from homeiq_daemon import cli
from homeiq_daemon.api.server import ApiServer
from homeiq_daemon.app import TASKS, App
from homeiq_daemon.config import Settings
from homeiq_daemon.delivery.loop import Delivery
from homeiq_daemon.errors import EXIT_SOFTWARE, StateDirError
from homeiq_daemon.metadata.service import MetadataService
from homeiq_daemon.runtime.scheduler import Scheduler
from homeiq_daemon.runtime.supervisor import TaskDied
from homeiq_daemon.sources.homeassistant.registry_sync import RegistrySync
from homeiq_daemon.sources.homeassistant.source import HomeAssistantSource
from homeiq_daemon.sources.replay import ReplaySource
from homeiq_daemon.sources.switchbot.source import SwitchBotSource
from homeiq_daemon.webhooks.dispatcher import Dispatcher
from homeiq_daemon.webhooks.service import WebhookService
from homeiq_daemon.webhooks.signing import encode_secret
from tests.support.daemon import daemon_settings, eventually, stop_app

# task name -> (class, coroutine method the app starts as that task)
RUNS: dict[str, tuple[type, str]] = {
    "homeiq-delivery-writer": (Delivery, "run_writer"),
    "homeiq-delivery-spooler": (Delivery, "run_spooler"),
    "homeiq-metadata-flush": (MetadataService, "run_flush"),
    "homeiq-webhook-outbox": (WebhookService, "run_writer"),
    "homeiq-webhook-dispatcher": (Dispatcher, "run"),
    "homeiq-source-ha": (HomeAssistantSource, "run"),
    "homeiq-registry-sync": (RegistrySync, "run"),
    "homeiq-source-switchbot": (SwitchBotSource, "run"),
    "homeiq-scheduler": (Scheduler, "run"),
    "homeiq-source-replay": (ReplaySource, "run"),
    "homeiq-http": (ApiServer, "serve"),
}


class Injected(RuntimeError):
    pass


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def full_settings(tmp_path: Path, **overrides: Any) -> Settings:
    dead = closed_port()
    return daemon_settings(
        tmp_path / "state",
        home_assistant={"url": f"http://127.0.0.1:{dead}", "token": "t" * 20, "reconnect_max_s": 0.5},
        switchbot={"token": "tok", "secret": "sec", "base_url": f"http://127.0.0.1:{dead}", "retry_max_s": 0.5},
        webhooks={
            "targets": {"rx": {"url": f"http://127.0.0.1:{dead}/hook", "secret": encode_secret(b"k" * 32)}},
            "rules": [{"name": "all", "domains": ["sensor"], "target": "rx"}],
        },
        http={"enabled": True, "port": 0},
        **overrides,
    )


def fail(monkeypatch: pytest.MonkeyPatch, task: str, *, times: int = 1, error: Exception | None = None) -> list[int]:
    """The task's coroutine raises on its first ``times`` runs, then runs as written. Returns the run count."""
    cls, method = RUNS[task]
    original: Callable[..., Coroutine[Any, Any, Any]] = getattr(cls, method)
    runs = [0]

    async def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        runs[0] += 1
        if runs[0] <= times:
            await asyncio.sleep(0)
            raise error if error is not None else Injected(f"killed {task}")
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, run)
    return runs


def alive(name: str) -> bool:
    return any(t.get_name() == name and not t.done() for t in asyncio.all_tasks())


def test_the_table_covers_every_supervised_task() -> None:
    assert set(RUNS) == set(TASKS)


async def test_each_restart_task_killed_is_restarted_and_the_daemon_runs_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    restarted = [name for name, policy in TASKS.items() if policy == "restart"]
    runs = {name: fail(monkeypatch, name) for name in restarted}
    app = App(full_settings(tmp_path))
    app.supervisor.first_backoff_s = 0.05
    task = asyncio.create_task(app.run(), name="test-app")
    try:
        await eventually(
            lambda: all(runs[n][0] >= 2 and alive(n) for n in restarted) or task.done(),
            "every killed task running again",
            detail=lambda: {n: (runs[n][0], alive(n)) for n in restarted},
        )
        assert not task.done(), task.exception() if task.done() else None
        assert {n: app.supervisor.restart_count.get(n) for n in restarted} == dict.fromkeys(restarted, 1)
    finally:
        await stop_app(app, task)


@pytest.mark.parametrize("name", [n for n, policy in TASKS.items() if policy == "exit"])
async def test_an_exit_task_killed_stops_the_daemon_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    fail(monkeypatch, name)
    replay = tmp_path / "events.jsonl"
    replay.write_text("")
    app = App(full_settings(tmp_path, replay={"path": replay}))
    task = asyncio.create_task(app.run(), name="test-app")
    done, _ = await asyncio.wait({task}, timeout=60)
    assert done, f"the daemon kept running after {name} died"
    with pytest.raises(Injected, match=f"killed {name}"):
        task.result()
    assert not any(alive(n) for n in TASKS)  # the orderly stop ended every other task


async def test_a_crash_loop_stops_the_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = fail(monkeypatch, "homeiq-registry-sync", times=1_000)
    app = App(full_settings(tmp_path))
    app.supervisor.first_backoff_s = app.supervisor.max_backoff_s = 0.01
    task = asyncio.create_task(app.run(), name="test-app")
    done, _ = await asyncio.wait({task}, timeout=60)
    assert done, "the daemon kept restarting a task that always dies"
    with pytest.raises(TaskDied, match="homeiq-registry-sync died 6 times") as caught:
        task.result()
    assert caught.value.exit_code == EXIT_SOFTWARE
    assert runs[0] == app.supervisor.max_restarts + 1


async def test_an_error_raised_on_purpose_stops_the_daemon_with_its_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A HomeIQError is never restarted (it would only repeat): its exit code is the daemon's."""
    fail(monkeypatch, "homeiq-metadata-flush", error=StateDirError("state_dir: disk gone"))
    app = App(full_settings(tmp_path))
    task = asyncio.create_task(app.run(), name="test-app")
    done, _ = await asyncio.wait({task}, timeout=60)
    assert done
    with pytest.raises(StateDirError):
        task.result()
    assert app.supervisor.restart_count == {}


def test_the_command_line_exits_70_when_a_task_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fail(monkeypatch, "homeiq-http")
    config = tmp_path / "homeiq.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n[http]\nport = 0\n[log]\nformat = "json"\n')
    # cli.main points the process's logging at this test's captured stderr; the autouse fixture in
    # tests/conftest.py puts it back afterwards, so later tests do not log into a closed file.
    assert cli.main(["run", "--config", str(config)]) == EXIT_SOFTWARE
    err = capsys.readouterr().err
    assert "internal error" in err
    assert "killed homeiq-http" in err
