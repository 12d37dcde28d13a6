"""The event path shared by every source: dedupe -> listeners -> map -> encode -> batch -> ``on_batch``.

``submit`` is synchronous and never waits: sources call it from their read loop. The pipeline does not know
where batches go: the app hands it ``on_batch`` (the delivery loop's ``enqueue``) and ``room`` (its
back-pressure, for work that can wait). Other components read the current states through ``states``
(read-only) and subscribe to changes with ``add_listener``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Iterator

from homeiq_daemon.config import BatchSettings, MappingSettings
from homeiq_daemon.model import Batch, EntityState, Origin, StateChange
from homeiq_daemon.pipeline.batcher import Batcher
from homeiq_daemon.pipeline.mapping import PointMapper, TagSource
from homeiq_daemon.pipeline.tracking import StateTracker
from homeiq_daemon.pipeline.watermarks import Watermarks
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.stats import Stats

log = get_logger("homeiq.pipeline")

Listener = Callable[[StateChange], None]

# Origins whose timestamps are Home Assistant's last_updated: they carry watermarks.
_HA_ORIGINS = frozenset(("live", "snapshot", "gapfill"))


class StateView:
    """The last state seen per entity, read-only (what /api/v1, the registry sync and SwitchBot look at)."""

    __slots__ = ("_tracker",)

    def __init__(self, tracker: StateTracker) -> None:
        self._tracker = tracker

    def get(self, entity_id: str) -> EntityState | None:
        return self._tracker.get(entity_id)

    def __contains__(self, entity_id: object) -> bool:
        return isinstance(entity_id, str) and self._tracker.get(entity_id) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._tracker.entity_ids())

    def __len__(self) -> int:
        return len(self._tracker)


async def _always_room() -> None:
    return None


class Pipeline:
    def __init__(
        self,
        mapping: MappingSettings,
        batch: BatchSettings,
        stats: Stats,
        *,
        on_batch: Callable[[Batch], None],
        room: Callable[[], Awaitable[None]] = _always_room,
        extra_tags: TagSource | None = None,
        watermarks: Watermarks | None = None,
    ) -> None:
        self.stats = stats
        self.watermarks = watermarks
        self._on_batch = on_batch
        self._room = room
        self._tracker = StateTracker()
        self._extra_tags = extra_tags
        self._mapper = PointMapper(mapping, extra_tags)
        self._batcher = Batcher(batch.size, batch.flush_interval_s, self._hand_on)
        self._listeners: list[Listener] = []
        self.states = StateView(self._tracker)

    def set_mapping(self, mapping: MappingSettings) -> None:
        """New mapping settings (filters, tags, measurements) from here on (a SIGHUP reload)."""
        self._mapper = PointMapper(mapping, self._extra_tags)

    def add_listener(self, listener: Listener) -> None:
        """Called with every accepted change, before it is mapped; an exception in it is logged, not raised."""
        self._listeners.append(listener)

    def _hand_on(self, batch: Batch) -> None:
        if self.watermarks is not None:
            self.watermarks.track(batch)
        self._on_batch(batch)

    def submit(self, change: StateChange) -> None:
        """Take one change from a source."""
        stats = self.stats
        stats.events_received[change.origin] += 1
        stats.last_event_at = time.time()
        tracker = self._tracker
        if self._listeners and change.old_state is None:
            previous = tracker.get(change.entity_id)
            if previous is not None:
                change = StateChange(change.entity_id, change.new_state, previous, change.origin)
        if not tracker.accept(change):
            stats.events_skipped["duplicate"] += 1
            return
        self._process(change)

    def submit_snapshot(self, states: Iterable[EntityState], origin: Origin = "gapfill") -> int:
        """A full snapshot (on every (re)connect): emits only what changed since the last state seen."""
        changes = self._tracker.diff_snapshot(states, origin)
        for change in changes:
            self.stats.events_received[origin] += 1
            self._process(change)
        return len(changes)

    def _process(self, change: StateChange) -> None:
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:  # a listener bug must not stop the time series
                log.exception(
                    "pipeline.listener_failed",
                    listener=getattr(listener, "__qualname__", "?"),
                    entity_id=change.entity_id,
                )
        new_state = change.new_state
        if new_state is None:
            return
        try:
            line = self._mapper.map_line(new_state)
        except Exception:  # one odd state (or a mapping bug) must never stop the source that sent it
            self.stats.events_skipped["mapping_failed"] += 1
            failures = self.stats.events_skipped["mapping_failed"]
            if failures <= 10 or failures % 1000 == 0:
                log.exception("pipeline.mapping_failed", entity_id=change.entity_id[:255], count=failures)
            return
        if line is None:
            self.stats.events_skipped["not_mapped"] += 1
            return
        if change.origin in _HA_ORIGINS:
            self._batcher.add(line, change.entity_id, new_state.last_updated_ns, live=True)
        else:
            self._batcher.add(line)

    def submit_history(self, states: Iterable[EntityState]) -> int:
        """States from Home Assistant's recorder (a backfill): the same filters, mapping and schema as live
        capture, with their own ``last_updated``; no listeners (webhooks are about now, and the metadata store's
        latest state must not move backwards), no tracker (an older state is not a duplicate here)."""
        mapper = self._mapper
        add = self._batcher.add
        mapped = 0
        for state in states:
            line = mapper.map_line(state)
            if line is not None:
                add(line, state.entity_id, state.last_updated_ns)
                mapped += 1
        self.stats.backfill_points += mapped
        return mapped

    def accepts(self, entity_id: str) -> bool:
        """Whether the entity passes the include/exclude filter (what the daemon exports)."""
        return self._mapper.accepts(entity_id)

    async def wait_for_room(self) -> None:
        """Back-pressure for work that can wait (a backfill, a replay): the delivery's in-memory bound."""
        await self._room()

    @property
    def pending_points(self) -> int:
        """Points in the batch being built (not yet handed to ``on_batch``)."""
        return len(self._batcher)

    def flush(self) -> None:
        """Hand on the batch being built (at shutdown, or when a replay file ends)."""
        self._batcher.flush()
