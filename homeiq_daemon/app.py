"""The lifecycle owner: builds the components in one line, supervises their tasks, stops them in reverse.

Build order (each stage takes only what the stages before it built):
config -> runtime (stats, metrics, scheduler, liveness, supervisor) -> sink (InfluxDB or the embedded
history) -> delivery (spool + loop) -> pipeline (``on_batch`` = delivery's ``enqueue``) -> metadata store
and webhooks (pipeline listeners) -> sources (Home Assistant + registry sync, replay, SwitchBot) -> api
(the HTTP server). Every long-running task is started by the supervisor (``TASKS`` below says what happens
when one dies; docs/architecture.md has the same table). Stop (SIGTERM/SIGINT, the sources finishing, or a
task failing for good): sources first, then webhooks commit what matched, the in-memory batch is flushed to
the sink (or the spool) within ``shutdown_timeout_s``, then the remaining tasks and connections close.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from homeiq_daemon.config import Settings
from homeiq_daemon.delivery.liveness import Liveness, stall_limit_s
from homeiq_daemon.delivery.loop import Delivery
from homeiq_daemon.delivery.spool import Spool
from homeiq_daemon.metadata.metrics import StoreCollector
from homeiq_daemon.metadata.registry import RegistryIndex
from homeiq_daemon.metadata.service import MetadataService
from homeiq_daemon.pipeline.core import Pipeline
from homeiq_daemon.pipeline.watermarks import FILE_NAME as WATERMARKS_FILE
from homeiq_daemon.pipeline.watermarks import Watermarks
from homeiq_daemon.runtime.activity import Activity
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.metrics import Metrics, StatsCollector
from homeiq_daemon.runtime.scheduler import Scheduler
from homeiq_daemon.runtime.statedir import prepare_state_dir
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.runtime.supervisor import Policy, Supervisor, TaskFactory, TaskSpec, bounded
from homeiq_daemon.sinks.base import BatchWriter
from homeiq_daemon.sinks.embedded import HistoryStore
from homeiq_daemon.sinks.influx.deadletter import DeadLetters

if TYPE_CHECKING:
    from homeiq_daemon.api.server import ApiServer, HistoryReader
    from homeiq_daemon.sinks.influx.query import InfluxHistory
    from homeiq_daemon.sources.homeassistant.registry_sync import RegistrySync
    from homeiq_daemon.sources.homeassistant.source import HomeAssistantSource
    from homeiq_daemon.sources.switchbot.source import SwitchBotSource
    from homeiq_daemon.webhooks.service import WebhookService

log = get_logger("homeiq.app")

# What the supervisor does when a task dies (docs/architecture.md, "Supervision": a HomeIQError stops
# the daemon with its own code; a crash loop, more than 5 restarts in 5 minutes, with 70).
TASKS: dict[str, Policy] = {
    "homeiq-delivery-writer": "restart",
    "homeiq-delivery-spooler": "restart",
    "homeiq-metadata-flush": "restart",
    "homeiq-webhook-outbox": "restart",
    "homeiq-webhook-dispatcher": "restart",
    "homeiq-source-ha": "restart",
    "homeiq-registry-sync": "restart",
    "homeiq-source-replay": "exit",  # one pass over a file: starting again would replay it twice
    "homeiq-source-switchbot": "restart",
    "homeiq-scheduler": "restart",
    "homeiq-http": "exit",  # the listening socket is gone: systemd's restart binds it again
}


class App:
    def __init__(self, settings: Settings, *, exit_when_sources_done: bool = False) -> None:
        self.settings = settings
        self.exit_when_sources_done = exit_when_sources_done
        self.stop_requested = asyncio.Event()
        self.ready = asyncio.Event()
        self.stats = Stats()
        self.metrics = Metrics()
        self.scheduler = Scheduler(self.stats)
        self.liveness = Liveness(self.stats, stall_s=stall_limit_s(settings.influxdb.timeout_s))
        self.activity = Activity(self.stats)  # the status page's last hour and busiest entities
        self.supervisor = Supervisor()
        # built by _start, in this order
        self.writer: BatchWriter | None = None
        self.history: HistoryStore | None = None
        self.delivery: Delivery | None = None
        self.dead_letters = DeadLetters(settings.state_dir / "deadletter")
        self.watermarks: Watermarks | None = None
        self.pipeline: Pipeline | None = None
        self.registry = RegistryIndex()  # filled by the registry sync, read by the mapping and webhooks
        self.metadata: MetadataService | None = None
        self.webhooks: WebhookService | None = None
        self.ha_source: HomeAssistantSource | None = None
        self.registry_sync: RegistrySync | None = None
        self.switchbot: SwitchBotSource | None = None
        self.server: ApiServer | None = None
        self._influx_history: InfluxHistory | None = None
        self.on_ready: list[Callable[[], None]] = []
        self.on_stopping: list[Callable[[float], None]] = []

    def _spawn(
        self, name: str, factory: TaskFactory, *, source: bool = False, watch: bool = False
    ) -> asyncio.Task[Any]:
        on_start = self.liveness.watch_task if watch else None
        return self.supervisor.start(TaskSpec(name, factory, TASKS[name], source=source, on_start=on_start))

    @property
    def hub_configured(self) -> bool:
        return bool(self.settings.home_assistant.url)

    def request_stop(self) -> None:
        self.stop_requested.set()

    # --- running ----------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._start()
        except BaseException:
            # A component that fails to start (a bad replay file, an unreadable outbox) must not leave the
            # others running: stop what did start, then let the CLI map the error to its exit code.
            await self._shutdown()
            raise
        if self.ha_source is not None:
            await self._wait_first_connection(self.ha_source.first_connection)
        if not self.stop_requested.is_set() and not self.supervisor.failed:
            self.ready.set()
            for callback in self.on_ready:
                callback()
        error = await self.supervisor.wait(self.stop_requested, exit_when_sources_done=self.exit_when_sources_done)
        await self._shutdown()
        if error is not None:
            raise error

    async def _start(self) -> None:
        s = self.settings
        prepare_state_dir(s.state_dir)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        await self._start_sink()
        self._start_delivery()
        assert self.delivery is not None
        self.pipeline = Pipeline(
            s.mapping,
            s.batch,
            self.stats,
            on_batch=self.delivery.enqueue,
            room=self.delivery.wait_for_room,
            extra_tags=self.registry if s.mapping.area_tag or s.mapping.device_tag else None,
            watermarks=self.watermarks,
        )
        activity = self.activity
        self.pipeline.add_listener(lambda change: activity.count_entity(change.entity_id))
        await self._start_metadata(self.pipeline)
        if s.webhooks.rules or s.webhooks.targets:
            await self._start_webhooks(self.pipeline)
        log.info(
            "homeiq.starting",
            sink=self.writer.describe if self.writer is not None else "none",
            state_dir=str(s.state_dir),
            pid=os.getpid(),
            batch_size=s.batch.size,
            flush_interval_s=s.batch.flush_interval_s,
        )
        await self._start_sources(self.pipeline)
        await self._start_api(self.pipeline)
        if self.history is not None:
            self.scheduler.every("history_retention", 3600.0, self.history.apply_retention, run_at_start=True)
        self.scheduler.every("stats_log", 300.0, self._log_stats)
        self.scheduler.every("activity", 5.0, self.activity.tick)
        watermarks = self.watermarks
        if watermarks is not None:

            async def save_watermarks() -> None:
                watermarks.maybe_save()

            save_check_s = min(10.0, s.home_assistant.backfill.watermark_save_interval_s)
            self.scheduler.every("watermarks_save", save_check_s, save_watermarks)
        self._spawn("homeiq-scheduler", self.scheduler.run)

    def _build_writer(self) -> BatchWriter:
        s = self.settings
        if s.uses_influxdb:
            from homeiq_daemon.sinks.influx.writer import InfluxWriter  # noqa: PLC0415 - only with InfluxDB

            return InfluxWriter(s.influxdb, self.dead_letters, self.stats)
        self.history = HistoryStore(
            s.history_db_path, retention_days=s.history.retention_days, stats=self.stats, dead_letters=self.dead_letters
        )
        self.stats.sink_state = "embedded"
        return self.history

    async def _start_sink(self) -> None:
        self.writer = self._build_writer()
        await self.writer.start()
        await self.writer.ensure_database()

    def _start_delivery(self) -> None:
        s = self.settings
        assert self.writer is not None
        spool = Spool(
            s.state_dir / "spool", max_bytes=s.spool.max_bytes, segment_bytes=s.spool.segment_bytes, fsync=s.spool.fsync
        )
        writer = self.liveness.track_writer(self.writer)
        delivery = self.delivery = Delivery(writer, spool, s, self.stats, self.dead_letters)
        self.watermarks = Watermarks(
            s.state_dir / WATERMARKS_FILE, save_interval_s=s.home_assistant.backfill.watermark_save_interval_s
        )
        self.watermarks.load()
        delivery.on_acknowledged = self.watermarks.acknowledged
        if self.stats.sink_state != "embedded":
            self.stats.sink_state = "up"
        self._spawn("homeiq-delivery-writer", delivery.run_writer, watch=True)
        self._spawn("homeiq-delivery-spooler", delivery.run_spooler, watch=True)

    async def _start_metadata(self, pipeline: Pipeline) -> None:
        s = self.settings
        metadata = self.metadata = MetadataService(s.store_db_path, s.metadata)
        await metadata.start()
        pipeline.add_listener(metadata.store.note_state)
        self.metrics.register(StoreCollector(metadata.store))
        self._spawn("homeiq-metadata-flush", metadata.run_flush)

    async def _start_webhooks(self, pipeline: Pipeline) -> None:
        """Rules fed by the pipeline, a durable outbox, signed POSTs (webhooks/service.py)."""
        from homeiq_daemon.config.webhooks import OUTBOX_FILE  # noqa: PLC0415 - only with webhook rules
        from homeiq_daemon.webhooks.metrics import WebhookCollector  # noqa: PLC0415
        from homeiq_daemon.webhooks.service import WebhookService, areas_from  # noqa: PLC0415

        s = self.settings
        self.webhooks = WebhookService(s.webhooks, s.state_dir / OUTBOX_FILE, area_of=areas_from(self.registry))
        await self.webhooks.start()
        pipeline.add_listener(self.webhooks.on_change)
        self.metrics.register(WebhookCollector(self.webhooks.stats))
        self.scheduler.every("webhook_outbox_prune", 3600.0, self.webhooks.prune, run_at_start=True)
        self._spawn("homeiq-webhook-outbox", self.webhooks.run_writer)
        self._spawn("homeiq-webhook-dispatcher", self.webhooks.dispatcher.run)

    async def _start_sources(self, pipeline: Pipeline) -> None:
        s = self.settings
        assert self.metadata is not None
        store = self.metadata.store
        if s.home_assistant.url:
            from homeiq_daemon.sources.homeassistant.registry_sync import (  # noqa: PLC0415
                RegistryCollector,
                RegistrySync,
            )
            from homeiq_daemon.sources.homeassistant.source import HomeAssistantSource  # noqa: PLC0415

            self.ha_source = HomeAssistantSource(s.home_assistant, pipeline, self.stats)
            sync = self.registry_sync = RegistrySync(
                store,
                self.registry,
                area_tag=s.mapping.area_tag,
                device_tag=s.mapping.device_tag,
                refresh_delay_s=s.metadata.registry_refresh_delay_s,
                is_live=pipeline.states.__contains__,
            )
            self.metrics.register(RegistryCollector(sync))
            await sync.load()  # enrichment from the last run's registries, before the first event
            sync.attach(self.ha_source)
            self._spawn("homeiq-source-ha", self.ha_source.run, source=True)
            self._spawn("homeiq-registry-sync", sync.run)
        if s.replay.path is not None:
            from homeiq_daemon.sources.replay import ReplaySource  # noqa: PLC0415

            assert self.delivery is not None
            shift_to = s.replay.shift_to
            replay = ReplaySource(
                s.replay.path,
                pipeline,
                self.stats,
                speed=s.replay.speed,
                shift_to_now=s.replay.shift_to_now,
                shift_to_ns=None if shift_to is None else int(shift_to.timestamp() * 1e9),
            )
            self._spawn("homeiq-source-replay", replay.run, source=True)
        if s.switchbot.enabled:
            from homeiq_daemon.sources.switchbot.source import SwitchBotSource  # noqa: PLC0415 - only with a token

            self.switchbot = SwitchBotSource(s.switchbot, pipeline, self.stats, store)
            self.metrics.register(self.switchbot.collector())
            self._spawn("homeiq-source-switchbot", self.switchbot.run, source=True)
        if not (s.home_assistant.url or s.replay.path is not None or s.switchbot.enabled):
            log.warning("homeiq.no_source", hint="set home_assistant.url and token, or run with --replay FILE")

    async def _start_api(self, pipeline: Pipeline) -> None:
        s = self.settings
        assert self.metadata is not None
        assert self.writer is not None
        self.metrics.register(StatsCollector(self.stats, spool_max_bytes=s.spool.max_bytes))
        if not s.http.enabled:
            return
        from homeiq_daemon.api.server import ApiContext, ApiServer, EmbeddedHistory  # noqa: PLC0415 - aiohttp.web
        from homeiq_daemon.api.status import StatusView, webhook_section  # noqa: PLC0415

        history: HistoryReader | None = None
        if s.uses_influxdb:
            from homeiq_daemon.sinks.influx.query import InfluxHistory  # noqa: PLC0415 - only with InfluxDB

            self._influx_history = InfluxHistory(s.influxdb)
            await self._influx_history.start()
            history = self._influx_history
        elif self.history is not None:
            history = EmbeddedHistory(self.history)
        context = ApiContext(
            stats=self.stats,
            store=self.metadata.store,
            metrics=self.metrics,
            hub_configured=bool(s.home_assistant.url),
            spool_max_bytes=s.spool.max_bytes,
            history=history,
            live_state=pipeline.states.get,
            max_page=s.http.max_page_size,
        )
        sections = {"webhooks": webhook_section(self.webhooks.stats)} if self.webhooks is not None else {}
        view = StatusView(self.stats, self.activity, hub_configured=bool(s.home_assistant.url),
                          spool_max_bytes=s.spool.max_bytes, sink=self.writer.describe, sections=sections)  # fmt: skip
        context.status = view.document
        self.server = ApiServer(s.http, context)
        if self.switchbot is not None and self.switchbot.webhook_enabled:  # features add their own routes
            from homeiq_daemon.api.pushes import switchbot_push_route  # noqa: PLC0415

            route = switchbot_push_route(self.switchbot.webhook_secret_ok, self.switchbot.handle_webhook)
            self.server.add_route(*route)
        await self.server.start()  # a busy port: UnavailableError (69, restarted); other bind errors: 78
        self._spawn("homeiq-http", self.server.serve)

    def status_url(self) -> str | None:
        """The status page's address once the HTTP server listens, else None."""
        server = self.server
        if server is None or server.port is None:
            return None
        host = self.settings.http.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{server.port}/"

    async def _wait_first_connection(self, connected: asyncio.Event) -> None:
        """READY means connected, unless HA is down at boot: then we are ready to take events anyway."""
        waiters = {
            asyncio.ensure_future(connected.wait()),
            asyncio.ensure_future(self.stop_requested.wait()),
            asyncio.ensure_future(self.supervisor.wait_failed()),
        }
        await asyncio.wait(waiters, timeout=30.0, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()

    # --- stopping -----------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        for callback in self.on_stopping:
            callback(self.settings.shutdown_timeout_s)
        await self.supervisor.stop_tasks(self.supervisor.tasks(sources=True), max(1.0, deadline - time.monotonic()))
        if self.switchbot is not None:
            await bounded("switchbot", self.switchbot.close(), deadline)
        if self.webhooks is not None:  # unfinished deliveries stay in the outbox for the next start
            await bounded("webhooks", self.webhooks.stop(deadline), deadline)
        if self.pipeline is not None:
            self.pipeline.flush()
        if self.delivery is not None:
            await bounded("delivery", self.delivery.stop(deadline), deadline, floor_s=2.0)
        await self.supervisor.stop_all(max(1.0, deadline - time.monotonic()))
        if self.delivery is not None:
            self.delivery.close()
        if self.watermarks is not None:
            self.watermarks.save()  # after the last batch was written or spooled
        if self.server is not None:
            await bounded("http", self.server.stop(), deadline)
        if self._influx_history is not None:
            await bounded("influx_history", self._influx_history.close(), deadline)
        if self.metadata is not None:
            await bounded("metadata", self.metadata.stop(), deadline)
        if self.writer is not None:
            await bounded("sink", self.writer.close(), deadline)
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
        log.info("pipeline.stats", events=sum(st.events_received.values()), points_written=st.points_written,
                 dropped=sum(st.points_dropped.values()), sink=st.sink_state, hub=st.hub_state,
                 spool_points=st.spool_points, spool_bytes=st.spool_bytes,
                 flush_avg_ms=round((st.flush.average_s or 0) * 1000, 1))  # fmt: skip
