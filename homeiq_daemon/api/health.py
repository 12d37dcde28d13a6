"""The /healthz verdict: ok, degraded or critical, from the daemon's counters. Pure code.

Rules (the first matching level wins; every matching rule is listed in ``reasons``):

critical
  * Home Assistant is configured and has been unreachable for ``hub_down_critical_s`` (5 min) or more;
  * the sink (InfluxDB) has been down for ``sink_down_critical_s`` (5 min) or more;
  * the spool is at least ``spool_critical_ratio`` (90 %) full: the oldest data will soon be dropped.
degraded
  * Home Assistant is configured but not connected (reconnecting);
  * the sink is down (batches are going to the spool);
  * the spool holds points (a backlog is being replayed);
  * a backfill from HA's recorder is running ("backfilling": history of the gap is being caught up);
  * connected, but no event for ``stale_event_s`` (15 min): a quiet home, or a stuck subscription;
  * the last flush took ``slow_flush_s`` (5 s) or more, or flushes average ``slow_flush_avg_s`` (2 s) or more;
  * periodic jobs average ``slow_tick_s`` (0.5 s) or more.
ok
  * none of the above.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from homeiq_daemon.runtime.stats import Stats

Status = Literal["ok", "degraded", "critical"]


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    hub_down_critical_s: float = 300.0
    sink_down_critical_s: float = 300.0
    spool_critical_ratio: float = 0.9
    stale_event_s: float = 900.0
    slow_flush_s: float = 5.0
    slow_flush_avg_s: float = 2.0
    slow_tick_s: float = 0.5


@dataclass(frozen=True, slots=True)
class HealthReport:
    status: Status
    body: dict[str, Any]

    @property
    def http_status(self) -> int:
        return 200 if self.status == "ok" else 503


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else round(max(0.0, now - then), 3)


def _backfill(stats: Stats) -> dict[str, Any]:
    state = "backfilling" if stats.backfill_running else "unavailable" if stats.backfill_unavailable else "idle"
    unhealed = stats.backfill_unhealed
    return {
        "state": state,
        "unavailable_reason": stats.backfill_unavailable,
        "points": stats.backfill_points,
        "runs": stats.backfill_runs,
        "last_window_start_ns": stats.backfill_last_start_ns,
        "last_window_end_ns": stats.backfill_last_end_ns,
        "last_duration_s": None if stats.backfill_last_duration_s is None else round(stats.backfill_last_duration_s, 3),
        "unhealed_entities": len(unhealed),
        "unhealed": dict(list(unhealed.items())[:20]),
    }


def evaluate(
    stats: Stats,
    now: float,
    *,
    hub_configured: bool,
    spool_max_bytes: int,
    limits: HealthThresholds = HealthThresholds(),  # frozen, so one shared default is safe
) -> HealthReport:
    critical: list[str] = []
    degraded: list[str] = []

    hub_down_for: float | None = None
    if hub_configured and not stats.hub_connected:
        since = stats.hub_down_since or stats.started_at
        hub_down_for = max(0.0, now - since)
        if hub_down_for >= limits.hub_down_critical_s:
            critical.append(f"home assistant unreachable for {hub_down_for:.0f} s")
        else:
            degraded.append(f"home assistant {stats.hub_state}")

    sink_down_for: float | None = None
    if stats.sink_state == "down":
        sink_down_for = max(0.0, now - (stats.sink_down_since or now))
        if sink_down_for >= limits.sink_down_critical_s:
            critical.append(f"sink down for {sink_down_for:.0f} s")
        else:
            degraded.append("sink down, spooling to disk")

    fill = stats.spool_bytes / spool_max_bytes if spool_max_bytes > 0 else 0.0
    if fill >= limits.spool_critical_ratio:
        critical.append(f"spool {fill:.0%} full")
    elif stats.spool_points > 0:
        degraded.append(f"spool backlog of {stats.spool_points} points")

    if stats.backfill_running:
        degraded.append("backfilling")

    last_event_age = _age(now, stats.last_event_at)
    if hub_configured and stats.hub_connected:
        quiet_for = last_event_age if last_event_age is not None else now - stats.started_at
        if quiet_for >= limits.stale_event_s:
            degraded.append(f"no event for {quiet_for:.0f} s")

    flush_last = stats.flush.last_s
    flush_avg = stats.flush.average_s
    if flush_last is not None and flush_last >= limits.slow_flush_s:
        degraded.append(f"last flush took {flush_last:.1f} s")
    elif flush_avg is not None and flush_avg >= limits.slow_flush_avg_s:
        degraded.append(f"flushes average {flush_avg:.1f} s")
    tick_avg = stats.ticks.average_s
    if tick_avg is not None and tick_avg >= limits.slow_tick_s:
        degraded.append(f"periodic jobs average {tick_avg:.2f} s")

    status: Status = "critical" if critical else "degraded" if degraded else "ok"
    body: dict[str, Any] = {
        "status": status,
        "reasons": critical + degraded,
        "uptime_s": round(now - stats.started_at, 1),
        "hub": {
            "configured": hub_configured,
            "connected": stats.hub_connected,
            "state": stats.hub_state if hub_configured else "none",
            "down_for_s": None if hub_down_for is None else round(hub_down_for, 1),
            "reconnects": stats.reconnects,
        },
        "last_event_age_s": last_event_age,
        "sink": {
            "state": stats.sink_state,
            "down_for_s": None if sink_down_for is None else round(sink_down_for, 1),
            "errors": sum(stats.sink_errors.values()),
        },
        "spool": {
            "points": stats.spool_points,
            "records": stats.spool_records,
            "bytes": stats.spool_bytes,
            "max_bytes": spool_max_bytes,
            "fill_ratio": round(fill, 4),
            "oldest_age_s": _age(now, stats.spool_oldest_ms / 1000 if stats.spool_oldest_ms else None),
        },
        "flush": {"last_ms": _ms(flush_last), "average_ms": _ms(flush_avg), "count": stats.flush.count},
        "ticks": {"average_ms": _ms(tick_avg), "count": stats.ticks.count},
        "points_written": stats.points_written,
        "points_dropped": sum(stats.points_dropped.values()),
        "backfill": _backfill(stats),
    }
    return HealthReport(status, body)
