"""The lifecycle owner: builds the components, starts them in order, stops them in reverse.

Start: state directory -> sink (InfluxDB or the embedded history) -> spool + delivery -> pipeline ->
sources (Home Assistant, replay) -> periodic jobs. Stop (SIGTERM/SIGINT, a source finishing, or a fatal
error): sources first, then the in-memory batch is flushed to the sink (or the spool) within
``shutdown_timeout_s``, then connections close. Long-running work runs as named tasks that the owner
watches; the first one to fail ends the run, after the same orderly stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from homeiq_daemon.config import Settings
from homeiq_daemon.delivery.liveness import Liveness, stall_limit_s
from homeiq_daemon.delivery.loop import Delivery
from homeiq_daemon.delivery.spool import Spool
from homeiq_daemon.errors import HomeIQError, StateDirError
from homeiq_daemon.metadata.service import MetadataService
from homeiq_daemon.pipeline.core import Pipeline
from homeiq_daemon.pipeline.watermarks import FILE_NAME as WATERMARKS_FILE
from homeiq_daemon.pipeline.watermarks import Watermarks
from homeiq_daemon.runtime.activity import Activity
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.scheduler import Scheduler
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sinks.base import BatchWriter
from homeiq_daemon.sinks.embedded import HistoryStore
from homeiq_daemon.sinks.influx.deadletter import DeadLetters

if TYPE_CHECKING:
    from homeiq_daemon.sources.homeassistant.source import HomeAssistantSource
    from homeiq_daemon.sources.switchbot.source import SwitchBotSource
    from homeiq_daemon.webhooks.service import WebhookService

log = get_logger("homeiq.app")


def prepare_state_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o750)  # group homeiq may read (the CLI), others not
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StateDirError(f"state_dir: cannot write to {path}: {exc.strerror or exc}") from None


class App:
    def __init__(self, settings: Settings, *, exit_when_sources_done: bool = False) -> None:
        self.settings = settings
        self.stats = Stats()
        self.exit_when_sources_done = exit_when_sources_done
        self.stop_requested = asyncio.Event()
        self.ready = asyncio.Event()
        self.writer: BatchWriter | None = None
        self.history: HistoryStore | None = None
        self.delivery: Delivery | None = None
        self.dead_letters = DeadLetters(settings.state_dir / "deadletter")
        self.pipeline: Pipeline | None = None
        self.watermarks: Watermarks | None = None
        self.webhooks: WebhookService | None = None
        self.switchbot: SwitchBotSource | None = None
        self.scheduler = Scheduler(self.stats)
        self.metadata = MetadataService(settings, self.stats)  # store, registry sync, HTTP API
        self.metrics = self.metadata.metrics  # register more collectors here
        self.activity = Activity(self.stats)  # the status page's last hour and busiest entities
        self.liveness = Liveness(self.stats, stall_s=stall_limit_s(settings.influxdb.timeout_s))
        self._tasks: dict[asyncio.Task[Any], str] = {}
        self._source_tasks: set[asyncio.Task[Any]] = set()
        self.on_ready: list[Callable[[], None]] = []
        self.on_stopping: list[Callable[[float], None]] = []

    # --- building ---------------------------------------------------------------------------------

    def _build_writer(self) -> BatchWriter:
        s = self.settings
        if s.uses_influxdb:
            from homeiq_daemon.sinks.influx.writer import InfluxWriter  # noqa: PLC0415 - only when InfluxDB is configured

            return InfluxWriter(s.influxdb, self.dead_letters, self.stats)
        self.history = HistoryStore(
            s.history_db_path, retention_days=s.history.retention_days, stats=self.stats, dead_letters=self.dead_letters
        )
        self.stats.sink_state = "embedded"
        return self.history

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str, *, source: bool = False) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks[task] = name
        if source:
            self._source_tasks.add(task)
        return task

    def request_stop(self) -> None:
        self.stop_requested.set()

    # --- running ----------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            ha_source = await self._start()
        except BaseException:
            # A component that fails to start (a bad replay file, an unreadable outbox) must not leave the
            # others running: stop what did start, then let the CLI map the error to its exit code.
            await self._shutdown()
            raise
        if ha_source is not None:
            await self._wait_first_connection(ha_source.first_connection)
        failed = any(task.done() for task in self._tasks)
        if not self.stop_requested.is_set() and not failed:
            self.ready.set()
            for callback in self.on_ready:
                callback()
        error = await self._supervise()
        await self._shutdown()
        if error is not None:
            raise error

    async def _start(self) -> HomeAssistantSource | None:
        s = self.settings
        prepare_state_dir(s.state_dir)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)

        self.writer = self._build_writer()
        await self.writer.start()
        await self.writer.ensure_database()
        await self.metadata.start(self.history)
        spool = Spool(
            s.state_dir / "spool", max_bytes=s.spool.max_bytes, segment_bytes=s.spool.segment_bytes, fsync=s.spool.fsync
        )
        self.delivery = Delivery(self.liveness.track_writer(self.writer), spool, s, self.stats, self.dead_letters)
        self.watermarks = Watermarks(
            s.state_dir / WATERMARKS_FILE, save_interval_s=s.home_assistant.backfill.watermark_save_interval_s
        )
        self.watermarks.load()
        self.delivery.on_acknowledged = self.watermarks.acknowledged
        self.pipeline = Pipeline(s, self.stats, self.delivery, self.metadata.extra_tags, self.watermarks)
        self.metadata.attach_pipeline(self.pipeline)
        if s.webhooks.rules or s.webhooks.targets:
            await self._start_webhooks()
        self._wire_status()
        if self.stats.sink_state != "embedded":
            self.stats.sink_state = "up"
        self.liveness.watch_task(self._spawn(self.delivery.run_writer(), "homeiq-delivery-writer"))
        self.liveness.watch_task(self._spawn(self.delivery.run_spooler(), "homeiq-delivery-spooler"))
        log.info(
            "homeiq.starting",
            sink=self.writer.describe,
            state_dir=str(s.state_dir),
            pid=os.getpid(),
            batch_size=s.batch.size,
            flush_interval_s=s.batch.flush_interval_s,
        )

        ha_source = None
        if s.home_assistant.url:
            from homeiq_daemon.sources.homeassistant.source import HomeAssistantSource  # noqa: PLC0415

            ha_source = HomeAssistantSource(s.home_assistant, self.pipeline, self.stats)
            self.metadata.attach_source(ha_source)
            self._spawn(ha_source.run(), "homeiq-source-ha", source=True)
        if s.replay.path is not None:
            from homeiq_daemon.sources.replay import ReplaySource  # noqa: PLC0415

            shift_to = s.replay.shift_to
            replay = ReplaySource(
                s.replay.path,
                self.pipeline,
                self.stats,
                speed=s.replay.speed,
                shift_to_now=s.replay.shift_to_now,
                shift_to_ns=None if shift_to is None else int(shift_to.timestamp() * 1e9),
            )
            self._spawn(replay.run(), "homeiq-source-replay", source=True)
        if s.switchbot.enabled:
            from homeiq_daemon.sources.switchbot.source import SwitchBotSource  # noqa: PLC0415 - only with a token

            self.switchbot = SwitchBotSource(s.switchbot, self.pipeline, self.stats, self.metadata.store)
            self.metrics.register(self.switchbot.collector())
            if self.metadata.server is not None and self.switchbot.webhook_enabled:
                self.metadata.server.ctx.switchbot_webhook = self.switchbot.handle_webhook
                self.metadata.server.ctx.switchbot_secret_ok = self.switchbot.webhook_secret_ok
            self._spawn(self.switchbot.run(), "homeiq-source-switchbot", source=True)
        if not self._source_tasks:
            log.warning("homeiq.no_source", hint="set home_assistant.url and token, or run with --replay FILE")

        if self.history is not None:
            history = self.history
            self.scheduler.every("history_retention", 3600.0, history.apply_retention, run_at_start=True)
        self.scheduler.every("stats_log", 300.0, self._log_stats)
        self.scheduler.every("activity", 5.0, self.activity.tick)
        watermarks = self.watermarks
        save_check_s = min(10.0, s.home_assistant.backfill.watermark_save_interval_s)

        async def save_watermarks() -> None:
            watermarks.maybe_save()

        self.scheduler.every("watermarks_save", save_check_s, save_watermarks)
        self.metadata.schedule(self.scheduler, self._spawn)
        self._spawn(self.scheduler.run(), "homeiq-scheduler")

        return ha_source


    def status_url(self) -> str | None:
        """The status page's address once the HTTP server listens, else None."""
        server = self.metadata.server
        if server is None or server.port is None:
            return None
        host = self.settings.http.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{server.port}/"

    def _wire_status(self) -> None:
        """The status page's document (api/status.py), from the parts that run."""
        assert self.pipeline is not None
        assert self.writer is not None
        activity = self.activity
        self.pipeline.listeners.append(lambda change: activity.count_entity(change.entity_id))
        server = self.metadata.server
        if server is None:
            return
        from homeiq_daemon.api.status import StatusView, webhook_section  # noqa: PLC0415 - only with HTTP on

        view = StatusView(
            self.stats,
            activity,
            hub_configured=bool(self.settings.home_assistant.url),
            spool_max_bytes=self.settings.spool.max_bytes,
            sink=self.writer.describe,
        )
        if self.webhooks is not None:
            view.sections["webhooks"] = webhook_section(self.webhooks.stats)
        server.ctx.status = view.document

    async def _start_webhooks(self) -> None:
        """Rules fed by the pipeline, a durable outbox, signed POSTs (webhooks/service.py)."""
        from homeiq_daemon.webhooks.config import OUTBOX_FILE  # noqa: PLC0415 - only with webhook rules
        from homeiq_daemon.webhooks.metrics import WebhookCollector  # noqa: PLC0415
        from homeiq_daemon.webhooks.service import WebhookService, areas_from  # noqa: PLC0415

        s = self.settings
        assert self.pipeline is not None
        self.webhooks = WebhookService(s.webhooks, s.state_dir / OUTBOX_FILE, area_of=areas_from(self.metadata.sync))
        await self.webhooks.start()
        self.pipeline.listeners.append(self.webhooks.on_change)
        self.metrics.register(WebhookCollector(self.webhooks.stats))
        self.scheduler.every("webhook_outbox_prune", 3600.0, self.webhooks.prune, run_at_start=True)

    async def _wait_first_connection(self, connected: asyncio.Event) -> None:
        """READY means connected, unless HA is down at boot: then we are ready to take events anyway."""
        waiter = asyncio.ensure_future(connected.wait())
        stop = asyncio.ensure_future(self.stop_requested.wait())
        tasks = set(self._tasks)
        await asyncio.wait({waiter, stop, *tasks}, timeout=30.0, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stop.cancel()

    async def _supervise(self) -> BaseException | None:
        stop_waiter = asyncio.ensure_future(self.stop_requested.wait())
        try:
            while True:
                watched = set(self._tasks)
                done, _ = await asyncio.wait({stop_waiter, *watched}, return_when=asyncio.FIRST_COMPLETED)
                if stop_waiter in done:
                    log.info("homeiq.stopping", reason="signal")
                    return None
                for task in done:
                    name = self._tasks.pop(task)
                    source = task in self._source_tasks
                    self._source_tasks.discard(task)
                    if task.cancelled():
                        continue
                    exc = task.exception()
                    if exc is not None:
                        if isinstance(exc, HomeIQError):
                            log.error("homeiq.fatal", task=name, error=str(exc))
                        else:
                            log.error("homeiq.task_crashed", task=name, error=repr(exc), exc_info=exc)
                        return exc
                    if source and not self._source_tasks and self.exit_when_sources_done:
                        log.info("homeiq.stopping", reason="sources finished")
                        return None
        finally:
            stop_waiter.cancel()

    async def _shutdown(self) -> None:
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        for callback in self.on_stopping:
            callback(self.settings.shutdown_timeout_s)
        for task in list(self._source_tasks):
            task.cancel()
        await asyncio.gather(*self._source_tasks, return_exceptions=True)
        if self.webhooks is not None:  # unfinished deliveries stay in the outbox for the next start
            await self.webhooks.stop(deadline)
        if self.pipeline is not None:
            self.pipeline.flush()
        if self.delivery is not None:
            await self.delivery.stop(deadline)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.delivery is not None:
            self.delivery.close()
        if self.watermarks is not None:
            self.watermarks.save()  # after the last batch was written or spooled
        await self.metadata.stop()
        if self.writer is not None:
            await self.writer.close()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
        st = self.stats
        log.info(
            "homeiq.stopped",
            points_written=st.points_written,
            spooled_points=st.spool_points,
            events=sum(st.events_received.values()),
        )

    async def _log_stats(self) -> None:
        st = self.stats
        log.info(
            "pipeline.stats",
            events=sum(st.events_received.values()),
            points_written=st.points_written,
            dropped=sum(st.points_dropped.values()),
            sink=st.sink_state,
            hub=st.hub_state,
            spool_points=st.spool_points,
            spool_bytes=st.spool_bytes,
            flush_avg_ms=round((st.flush.average_s or 0) * 1000, 1),
        )
