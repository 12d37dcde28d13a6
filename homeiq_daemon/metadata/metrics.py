"""The metadata store's Prometheus metrics, registered by its owner (the app) at the metadata stage."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from homeiq_daemon.metadata.store import MetadataStore
from homeiq_daemon.runtime.metrics import duration_family


class StoreCollector:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Any]:
        store = self._store
        yield duration_family(
            "homeiq_sqlite_query_duration_seconds", "Metadata store read durations.", "query", store.query_times
        )
        yield CounterMetricFamily("homeiq_metadata_states_flushed", "Entity states written (coalesced).",
                                  value=store.states_flushed)  # fmt: skip
        yield GaugeMetricFamily("homeiq_metadata_states_pending", "Entity states waiting for the next flush.",
                                value=store.pending_states)  # fmt: skip
