"""Supervision of the daemon's long-running tasks: start them, notice when one dies, restart it or stop.

Every long-running coroutine of the daemon runs as a named task started here (the app lists them, with
their policy, in one table). When a task ends while the daemon is not stopping:

* it is logged with its name, and with the traceback when it raised;
* ``restart``: it is started again (a fresh coroutine from its factory) after a backoff of 1 s, doubling
  to ``max_backoff_s``; a run that lasted ``stable_after_s`` resets the backoff. More than
  ``max_restarts`` restarts within ``restart_window_s`` stops the daemon instead (a crash loop);
* ``exit``: the daemon stops, with that error.

An error the daemon raises on purpose (``HomeIQError``: bad credentials, an unwritable state directory)
always stops the daemon: restarting would only repeat it. The stop is the app's orderly shutdown; the CLI
then exits with the error's code (``EXIT_SOFTWARE`` for a crash), so systemd restarts the service.
Sources may also end normally (a replay file that is finished): ``on_sources_done`` decides what then.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

from homeiq_daemon.errors import EXIT_SOFTWARE, HomeIQError
from homeiq_daemon.runtime.logs import get_logger

log = get_logger("homeiq.supervisor")

Policy = Literal["restart", "exit"]
TaskFactory = Callable[[], Coroutine[Any, Any, Any]]


class TaskDied(HomeIQError):
    """A supervised task ended or crashed and is not restarted (policy ``exit`` or a crash loop)."""

    exit_code = EXIT_SOFTWARE


@dataclass(slots=True)
class TaskSpec:
    name: str
    factory: TaskFactory
    policy: Policy = "restart"
    source: bool = False
    """A source may finish (a replay file); the others run until the daemon stops."""
    on_start: Callable[[asyncio.Task[Any]], object] | None = None
    """Called with each new task (e.g. the watchdog's liveness watches the delivery writer)."""
    restarts: deque[float] = field(default_factory=deque)
    started_at: float = 0.0
    backoff_s: float = 0.0


class Supervisor:
    def __init__(
        self,
        *,
        max_restarts: int = 5,
        restart_window_s: float = 300.0,
        first_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        stable_after_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_after_s = stable_after_s
        self._clock = clock
        self._tasks: dict[asyncio.Task[Any], TaskSpec] = {}
        self._waits: dict[asyncio.Task[None], TaskSpec] = {}
        self._stopping = False
        self._failure: BaseException | None = None
        self._failed = asyncio.Event()
        self._sources_done = asyncio.Event()
        self._sources = 0
        self.restart_count: dict[str, int] = {}

    # --- starting -------------------------------------------------------------------------------------

    def start(self, spec: TaskSpec) -> asyncio.Task[Any]:
        if spec.source:
            self._sources += 1
        return self._launch(spec)

    def _launch(self, spec: TaskSpec) -> asyncio.Task[Any]:
        task = asyncio.create_task(spec.factory(), name=spec.name)
        spec.started_at = self._clock()
        self._tasks[task] = spec
        task.add_done_callback(self._done)
        if spec.on_start is not None:
            spec.on_start(task)
        return task

    @property
    def names(self) -> list[str]:
        return sorted(spec.name for spec in self._tasks.values())

    @property
    def failed(self) -> bool:
        return self._failure is not None

    async def wait_failed(self) -> None:
        await self._failed.wait()

    # --- noticing -------------------------------------------------------------------------------------

    def _done(self, task: asyncio.Task[Any]) -> None:
        spec = self._tasks.pop(task, None)
        if spec is None or self._stopping:
            return
        if task.cancelled():
            exc: BaseException | None = None
            how = "cancelled"
        else:
            exc = task.exception()
            how = "crashed" if exc is not None else "ended"
        if exc is None and spec.source and how == "ended":
            self._sources -= 1
            log.info("supervisor.source_finished", task=spec.name)
            if self._sources == 0:
                self._sources_done.set()
            return
        if isinstance(exc, HomeIQError):
            log.error("homeiq.fatal", task=spec.name, error=str(exc))
            self._fail(exc)
            return
        if exc is not None:
            log.error("supervisor.task_crashed", task=spec.name, error=repr(exc), exc_info=exc)
        else:
            log.error("supervisor.task_" + how, task=spec.name)
        error = exc if exc is not None else TaskDied(f"task {spec.name} {how}")
        if spec.policy == "exit":
            self._fail(error)
            return
        now = self._clock()
        while spec.restarts and now - spec.restarts[0] > self.restart_window_s:
            spec.restarts.popleft()
        if len(spec.restarts) >= self.max_restarts:
            log.error(
                "supervisor.crash_loop", task=spec.name, restarts=len(spec.restarts), window_s=self.restart_window_s
            )
            self._fail(TaskDied(f"task {spec.name} died {len(spec.restarts) + 1} times in {self.restart_window_s:g} s"))
            return
        stable = now - spec.started_at >= self.stable_after_s
        spec.backoff_s = self.first_backoff_s if stable or not spec.backoff_s else min(
            self.max_backoff_s, spec.backoff_s * 2
        )
        spec.restarts.append(now)
        self.restart_count[spec.name] = self.restart_count.get(spec.name, 0) + 1
        log.warning("supervisor.restarting", task=spec.name, in_s=spec.backoff_s, restarts=len(spec.restarts))
        waiter = asyncio.get_running_loop().create_task(self._restart_later(spec), name=f"{spec.name}-restart")
        self._waits[waiter] = spec
        waiter.add_done_callback(lambda done: self._waits.pop(done, None))

    async def _restart_later(self, spec: TaskSpec) -> None:
        await asyncio.sleep(spec.backoff_s)
        if not self._stopping:
            self._launch(spec)

    def restart_now(self) -> None:
        """Start every task waiting out its backoff at once (tests; an operator's reload)."""
        for waiter, spec in list(self._waits.items()):
            waiter.cancel()
            self._launch(spec)

    def _fail(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
        self._failed.set()

    # --- waiting and stopping ---------------------------------------------------------------------------

    async def wait(self, stop: asyncio.Event, *, exit_when_sources_done: bool) -> BaseException | None:
        """Until ``stop`` is set, a task fails for good, or (if asked) every source has finished."""
        waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._failed.wait())}
        if exit_when_sources_done:
            waiters.add(asyncio.ensure_future(self._sources_done.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if self._failure is not None:
            return self._failure
        if stop.is_set():
            log.info("homeiq.stopping", reason="signal")
        else:
            log.info("homeiq.stopping", reason="sources finished")
        return None

    def tasks(self, *, sources: bool) -> list[asyncio.Task[Any]]:
        return [task for task, spec in self._tasks.items() if spec.source == sources]

    async def stop_tasks(self, tasks: list[asyncio.Task[Any]], timeout_s: float | None = None) -> None:
        """Cancel these tasks and wait for them, at most ``timeout_s`` (they are not restarted: the daemon is
        stopping). A task still running then is named in the log and left behind: the stop goes on."""
        self._stopping = True
        for waiter in list(self._waits):
            waiter.cancel()
        for task in tasks:
            task.cancel()
        waiting = {*tasks, *self._waits}
        if not waiting:
            return
        _, pending = await asyncio.wait(waiting, timeout=timeout_s)
        if pending:
            log.error("homeiq.stop_overdue", tasks=sorted(t.get_name() for t in pending), waited_s=timeout_s,
                      action="not waiting any longer: the stop goes on")  # fmt: skip

    async def stop_all(self, timeout_s: float | None = None) -> None:
        await self.stop_tasks(list(self._tasks), timeout_s)
        self._tasks.clear()


async def bounded(step: str, awaitable: Awaitable[Any], deadline: float, floor_s: float = 1.0) -> None:
    """Await one stop step until ``deadline`` (monotonic; at least ``floor_s``), then log it and go on."""
    timeout_s = max(floor_s, deadline - time.monotonic())
    try:
        async with asyncio.timeout(timeout_s):
            await awaitable
    except TimeoutError:
        log.error("homeiq.stop_overdue", step=step, waited_s=round(timeout_s, 1),
                  action="not waiting any longer: the stop goes on")  # fmt: skip
