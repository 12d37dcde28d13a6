"""Keeps the metadata store's areas, devices and entities equal to Home Assistant's registries.

Over the Home Assistant source's own WebSocket (no second connection):

* on every (re)connect, the three ``config/*_registry/list`` results replace what the store holds (items HA
  no longer has are removed);
* ``*_registry_updated`` events carry ids, not values, so they mark what to fetch again: an area or device
  event re-lists that registry; entity events collect ids for one ``config/entity_registry/get_entries``
  (a missing entry means removed; a rename brings ``old_entity_id``, which goes). Fetches wait
  ``refresh_delay_s`` so a burst of events (an integration reloading) costs one round trip.

It also holds an in-memory copy of the registries, from which it builds the ``RegistryIndex`` (entity ->
place and entity -> tags) that the point mapping and webhook rules read on the hot path (no SQL).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from homeiq_daemon.metadata.registry import (
    EVENT_TYPES,
    LIST_COMMANDS,
    Area,
    Device,
    EntityPlace,
    RegistryEntity,
    RegistryError,
    RegistryIndex,
    RegistryKind,
    locate,
    parse_entries,
    parse_event,
    parse_list,
    tag_table,
)
from homeiq_daemon.metadata.store import MetadataStore
from homeiq_daemon.runtime.logs import get_logger

if TYPE_CHECKING:
    from homeiq_daemon.sources.homeassistant.connection import ConnectHook, EventHandler, HAConnection


class _Connections(Protocol):
    """What the sync needs of the Home Assistant source: hooks on its connections."""

    def add_connect_hook(self, hook: ConnectHook) -> None: ...

    def add_event_handler(self, event_type: str, handler: EventHandler) -> None: ...

log = get_logger("homeiq.registry")

MAX_ENTRIES_PER_GET = 500  # more changed entities than this at once: re-list the whole entity registry


class RegistrySync:
    def __init__(
        self,
        store: MetadataStore,
        index: RegistryIndex | None = None,
        *,
        area_tag: bool = False,
        device_tag: bool = False,
        refresh_delay_s: float = 1.0,
        is_live: Callable[[str], bool] | None = None,
    ) -> None:
        self._store = store
        self.index = index if index is not None else RegistryIndex()
        self._area_tag = area_tag
        self._device_tag = device_tag
        self._refresh_delay_s = refresh_delay_s
        self.areas: dict[str, Area] = {}
        self.devices: dict[str, Device] = {}
        self.entities: dict[str, RegistryEntity] = {}
        self._conn: HAConnection | None = None
        self._dirty: set[RegistryKind] = set()
        self._dirty_entities: set[str] = set()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self.full_syncs = 0
        self.events = 0
        self.malformed = 0
        self.failures = 0
        self.changed = asyncio.Event()  # set after each applied change (tests wait on it)
        self._is_live = is_live  # does HA currently report a state for this entity?

    # --- wiring ---------------------------------------------------------------------------------------

    def attach(self, source: _Connections) -> None:
        source.add_connect_hook(self.on_connect)
        for event_type in EVENT_TYPES:
            source.add_event_handler(event_type, partial(self.on_event, event_type))

    @property
    def places(self) -> Mapping[str, EntityPlace]:
        return self.index.places

    @property
    def tags(self) -> Mapping[str, Mapping[str, str]]:
        return self.index.tags

    @property
    def enriches(self) -> bool:
        return self._area_tag or self._device_tag

    async def load(self) -> None:
        """Start from what the store kept, so points are enriched before Home Assistant answers."""
        areas, devices, entities = await self._store.load_registries()
        self.areas = {a.area_id: a for a in areas}
        self.devices = {d.device_id: d for d in devices}
        self.entities = {e.entity_id: e for e in entities}
        self._rebuild()

    def _rebuild(self) -> None:
        places = locate(self.entities.values(), self.devices, self.areas)
        self.index.tags = tag_table(places, area=self._area_tag, device=self._device_tag) if self.enriches else {}
        self.index.places = places
        self.changed.set()

    # --- full sync at connect -------------------------------------------------------------------------

    async def on_connect(self, conn: HAConnection) -> None:
        self._conn = conn
        self._dirty.clear()
        self._dirty_entities.clear()
        try:
            async with self._lock:
                lists = {}
                for kind, command in LIST_COMMANDS.items():
                    lists[kind] = await self._list(conn, kind, command)
                await self._replace("area", lists["area"])
                await self._replace("device", lists["device"])
                await self._replace("entity", lists["entity"])
                if self._is_live is not None:
                    await self._store.prune_state_only(self._is_live)
                self._rebuild()
        except (RegistryError, sqlite3.Error) as exc:
            # Metadata trouble must not cost the time series its connection: log, retry at the next event.
            self.failures += 1
            self._dirty.update(("area", "device", "entity"))
            log.error("registry.sync_failed", error=str(exc)[:300])
            return
        self.full_syncs += 1
        log.info(
            "registry.synced", areas=len(self.areas), devices=len(self.devices), entities=len(self.entities)
        )

    async def _list(self, conn: HAConnection, kind: RegistryKind, command: str) -> list[Any]:
        from homeiq_daemon.sources.homeassistant.connection import CommandFailed  # noqa: PLC0415 - aiohttp on first use

        try:
            raw = await conn.call(command, timeout_s=120.0)
        except CommandFailed as exc:
            raise RegistryError(f"{command}: {exc}") from None
        items, bad = parse_list(kind, raw)
        if bad:
            self.malformed += bad
            log.warning("registry.items_skipped", registry=kind, count=bad)
        return items

    async def _replace(self, kind: RegistryKind, items: Sequence[Any]) -> None:
        if kind == "area":
            await self._store.replace_areas(items)
            self.areas = {a.area_id: a for a in items}
        elif kind == "device":
            await self._store.replace_devices(items)
            self.devices = {d.device_id: d for d in items}
        else:
            await self._store.replace_entities(items)
            self.entities = {e.entity_id: e for e in items}

    # --- events ---------------------------------------------------------------------------------------

    def on_event(self, event_type: str, event: dict[str, Any]) -> None:
        """Runs on the WebSocket reader: no IO here, only marks what to fetch."""
        try:
            parsed = parse_event(event_type, event.get("data"))
        except RegistryError as exc:
            self.malformed += 1
            log.warning("registry.event_skipped", event_type=event_type[:60], reason=str(exc)[:200])
            return
        self.events += 1
        if parsed.kind == "entity":
            self._dirty_entities.add(parsed.item_id)
            if parsed.old_entity_id:
                self._dirty_entities.add(parsed.old_entity_id)
        else:
            self._dirty.add(parsed.kind)
        self._wake.set()

    async def run(self) -> None:
        """Apply what events marked, ``refresh_delay_s`` after the first of a burst."""
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._refresh_delay_s)
            self._wake.clear()
            await self.refresh()

    async def refresh(self) -> None:
        conn = self._conn
        if conn is None or not (self._dirty or self._dirty_entities):
            return
        kinds, self._dirty = self._dirty, set()
        entity_ids, self._dirty_entities = self._dirty_entities, set()
        if len(entity_ids) > MAX_ENTRIES_PER_GET:
            kinds.add("entity")
        try:
            async with self._lock:
                for kind in ("area", "device", "entity"):
                    if kind in kinds:
                        await self._replace(kind, await self._list(conn, kind, LIST_COMMANDS[kind]))
                if entity_ids and "entity" not in kinds:
                    await self._refresh_entities(conn, sorted(entity_ids))
                self._rebuild()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a dead connection or a store error: the next connect re-syncs
            self.failures += 1
            self._dirty |= kinds
            self._dirty_entities |= entity_ids
            log.warning("registry.refresh_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    async def _refresh_entities(self, conn: HAConnection, entity_ids: list[str]) -> None:
        from homeiq_daemon.sources.homeassistant.connection import CommandFailed  # noqa: PLC0415

        try:
            raw = await conn.call("config/entity_registry/get_entries", entity_ids=entity_ids, timeout_s=60.0)
        except CommandFailed as exc:
            raise RegistryError(f"config/entity_registry/get_entries: {exc}") from None
        found, missing, bad = parse_entries(raw)
        self.malformed += bad
        if found:
            await self._store.upsert_entities(found)
        if missing:
            await self._store.delete_entities(missing)
        for entity in found:
            self.entities[entity.entity_id] = entity
        for entity_id in missing:
            self.entities.pop(entity_id, None)
        log.debug("registry.entities_refreshed", updated=len(found), removed=len(missing))


class RegistryCollector:
    """The registry sync's Prometheus metrics (registered with it, at the sources stage)."""

    def __init__(self, sync: RegistrySync) -> None:
        self._sync = sync

    def collect(self) -> Iterator[Any]:
        sync = self._sync
        sizes = GaugeMetricFamily("homeiq_registry_items", "Items mirrored from HA's registries.", labels=["registry"])
        sizes.add_metric(["area"], len(sync.areas))
        sizes.add_metric(["device"], len(sync.devices))
        sizes.add_metric(["entity"], len(sync.entities))
        yield sizes
        yield CounterMetricFamily("homeiq_registry_events", "Registry update events seen.", value=sync.events)
        yield CounterMetricFamily("homeiq_registry_syncs", "Full registry syncs.", value=sync.full_syncs)
        yield CounterMetricFamily("homeiq_registry_failures", "Failed registry fetches.", value=sync.failures)
