"""The metadata component the app starts and stops as one unit: store, registry sync, metrics, HTTP server.

Start (after the sink): open the store and load the last registries (enrichment works before HA answers),
start the history reader and the HTTP server. Wiring: the pipeline feeds latest states to the store and asks
the sync for enrichment tags; the HA source runs the registry sync on its connection. Stop (after the
sources and the delivery loop): HTTP server, history reader, a last state flush, store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from homeiq_daemon.config import Settings
from homeiq_daemon.metadata.store import MetadataStore
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.metrics import Metrics, StatsCollector
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sources.homeassistant.registry_sync import RegistrySync

if TYPE_CHECKING:
    from homeiq_daemon.api.server import ApiServer, HistoryReader
    from homeiq_daemon.pipeline.core import Pipeline
    from homeiq_daemon.runtime.scheduler import Scheduler
    from homeiq_daemon.sinks.embedded import HistoryStore
    from homeiq_daemon.sinks.influx.writer import InfluxHistory
    from homeiq_daemon.sources.homeassistant.source import HomeAssistantSource

log = get_logger("homeiq.metadata")


class MetadataService:
    def __init__(self, settings: Settings, stats: Stats) -> None:
        self.settings = settings
        self.stats = stats
        self.store = MetadataStore(settings.store_db_path)
        mapping = settings.mapping
        self.sync = RegistrySync(
            self.store,
            area_tag=mapping.area_tag,
            device_tag=mapping.device_tag,
            refresh_delay_s=settings.metadata.registry_refresh_delay_s,
        )
        self.metrics = Metrics()
        self.metrics.register(
            StatsCollector(stats, spool_max_bytes=settings.spool.max_bytes, store=self.store, registry_sync=self.sync)
        )
        self.server: ApiServer | None = None
        self._influx_history: InfluxHistory | None = None
        self._pipeline: Pipeline | None = None
        self._hub_configured = bool(settings.home_assistant.url)

    @property
    def extra_tags(self) -> Callable[[str], Mapping[str, str]] | None:
        """The point mapping's enrichment hook, or None when no enrichment tag is enabled."""
        return self.sync.extra_tags if self.sync.enriches else None

    async def start(self, embedded_history: HistoryStore | None) -> None:
        await self.store.start()
        await self.sync.load()
        history: HistoryReader | None = None
        if self.settings.uses_influxdb:
            from homeiq_daemon.sinks.influx.writer import InfluxHistory  # noqa: PLC0415 - only with InfluxDB

            self._influx_history = InfluxHistory(self.settings.influxdb)
            await self._influx_history.start()
            history = self._influx_history
        elif embedded_history is not None:
            from homeiq_daemon.api.server import EmbeddedHistory  # noqa: PLC0415

            history = EmbeddedHistory(embedded_history)
        if self.settings.http.enabled:
            from homeiq_daemon.api.server import ApiContext, ApiServer  # noqa: PLC0415 - aiohttp.web only when on

            context = ApiContext(
                stats=self.stats,
                store=self.store,
                metrics=self.metrics,
                hub_configured=self._hub_configured,
                spool_max_bytes=self.settings.spool.max_bytes,
                history=history,
                live_state=self._live_state,
                max_page=self.settings.http.max_page_size,
            )
            self.server = ApiServer(self.settings.http, context)
            try:
                await self.server.start()
            except OSError as exc:
                await self.stop()
                from homeiq_daemon.errors import ConfigError  # noqa: PLC0415

                raise ConfigError(
                    f"http: cannot listen on {self.settings.http.host}:{self.settings.http.port}: "
                    f"{exc.strerror or exc}"
                ) from None

    def attach_pipeline(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        pipeline.listeners.append(self.store.note_state)
        self.sync.is_live = lambda entity_id: pipeline.tracker.get(entity_id) is not None

    def attach_source(self, source: HomeAssistantSource) -> None:
        self.sync.attach(source)

    def _live_state(self, entity_id: str) -> Any:
        return self._pipeline.tracker.get(entity_id) if self._pipeline is not None else None

    def schedule(
        self, scheduler: Scheduler, spawn: Callable[[Coroutine[Any, Any, Any], str], object]
    ) -> None:
        scheduler.every("metadata_flush", self.settings.metadata.state_flush_interval_s, self.store.flush_states)
        if self._hub_configured:
            spawn(self.sync.run(), "homeiq-registry-sync")

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
        if self._influx_history is not None:
            await self._influx_history.close()
            self._influx_history = None
        try:
            await self.store.flush_states(final=True)
        except (sqlite3.Error, RuntimeError) as exc:
            log.error("metadata.final_flush_failed", error=str(exc)[:300])
        await self.store.close()
