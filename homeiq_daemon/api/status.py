"""The status page's facts, as one JSON document (``GET /api/v1/status``) and the page itself (``GET /``).

The document is what the page, ``homeiq status`` and a person with curl all read: health verdict and
reasons, Home Assistant and sink connection with since-when, event and point rates with the last hour per
minute, the spool, long work in progress (replay, spool drain, backfill, history import: whatever is on the
progress board), dead letters with their last reasons, webhook deliveries, the busiest entities, version
and uptime. Times are ISO 8601 UTC strings; ages and durations are seconds.

The page is three static files shipped in the package (``api/static/``): no build step, nothing fetched from
elsewhere; its script polls the document every few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from homeiq_daemon import __version__
from homeiq_daemon.api.health import evaluate
from homeiq_daemon.runtime.activity import Activity
from homeiq_daemon.runtime.stats import Stats

STATIC_FILES = {
    "index.html": "text/html",
    "status.css": "text/css",
    "status.js": "text/javascript",
}


def iso(epoch_s: float | None) -> str | None:
    if epoch_s is None:
        return None
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def load_static() -> dict[str, bytes]:
    folder = resources.files("homeiq_daemon.api") / "static"
    return {name: (folder / name).read_bytes() for name in STATIC_FILES}


@dataclass(slots=True)
class StatusView:
    stats: Stats
    activity: Activity
    hub_configured: bool
    spool_max_bytes: int
    sink: str  # what the sink is, e.g. "InfluxDB http://localhost:8086 db=home_assistant"
    # Optional parts the app plugs in when they run (webhooks): name -> a function returning their section.
    sections: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)
    clock: Callable[[], float] = time.time

    def document(self) -> dict[str, Any]:
        now = self.clock()
        st = self.stats
        self.activity.sample()
        report = evaluate(st, now, hub_configured=self.hub_configured, spool_max_bytes=self.spool_max_bytes)
        health = report.body
        events_per_s, points_per_s = self.activity.rates()
        hub_since = st.hub_connected_since if st.hub_connected else (st.hub_down_since or st.started_at)
        spool = dict(health["spool"])
        spool["oldest"] = iso(st.spool_oldest_ms / 1000) if st.spool_oldest_ms else None
        doc: dict[str, Any] = {
            "version": __version__,
            "now": iso(now),
            "started_at": iso(st.started_at),
            "uptime_s": health["uptime_s"],
            "status": report.status,
            "reasons": health["reasons"],
            "home_assistant": {
                **health["hub"],
                "since": iso(hub_since) if self.hub_configured else None,
                "last_event_age_s": health["last_event_age_s"],
            },
            "sink": {
                **health["sink"],
                "describe": self.sink,
                "since": iso(st.sink_down_since if st.sink_state == "down" and st.sink_down_since else
                             st.sink_state_since),
            },
            "events": {
                "total": sum(st.events_received.values()),
                "per_s": round(events_per_s, 2),
                "by_source": dict(st.events_received),
                "skipped": sum(st.events_skipped.values()),
            },
            "points": {
                "written": st.points_written,
                "per_s": round(points_per_s, 2),
                "dropped": sum(st.points_dropped.values()),
                "dropped_by_reason": dict(st.points_dropped),
            },
            "last_hour": [
                {"minute": iso(bucket.start), "events": bucket.events, "points": bucket.points}
                for bucket in self.activity.minutes()
            ],
            "spool": spool,
            "work": [snap.as_dict() | {"started_at": iso(snap.started_at)} for snap in st.progress.snapshots()],
            "dead_letters": {
                "count": st.dead_letter_points,
                "recent": [{"time": iso(when), "reason": why} for when, why in reversed(st.dead_letter_recent)],
            },
            "busiest": [{"entity_id": name, "events": n} for name, n in self.activity.busiest(10)],
            "webhooks": None,
        }
        for name, section in self.sections.items():
            doc[name] = section()
        return doc


def webhook_section(stats: Any) -> Callable[[], dict[str, Any]]:
    """The webhooks part, from a ``WebhookStats`` (duck-typed: api/ does not import webhooks/)."""

    def section() -> dict[str, Any]:
        deliveries = stats.deliveries
        delivered = deliveries.get("delivered", 0)
        return {
            "delivered": delivered,
            "failed": sum(deliveries.values()) - delivered,
            "pending": stats.pending,
            "retries": stats.retries,
            "recent": [item | {"time": iso(item["time"])} for item in reversed(stats.recent)],
        }

    return section
