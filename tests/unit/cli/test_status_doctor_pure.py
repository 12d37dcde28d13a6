"""The pure parts of `homeiq status` and `homeiq doctor`: rendering a status document, the sparkline, the
clock skew from HA's Date header, and HA addresses given as ws:// URLs."""

from __future__ import annotations

from homeiq_daemon.cli.doctor import Reply, _clock_skew, _http_base
from homeiq_daemon.cli.status import human_duration, render, sparkline

DOC = {
    "version": "9.9.9", "now": "2026-01-01T12:00:00Z", "uptime_s": 3725.0, "status": "degraded",
    "reasons": ["spool backlog of 12 points"],
    "home_assistant": {"configured": True, "connected": False, "state": "connecting", "reconnects": 4,
                       "since": "2026-01-01T11:58:00Z", "last_event_age_s": 130.0},
    "sink": {"state": "up", "since": "2026-01-01T11:00:00Z", "describe": "InfluxDB 1.x at http://x:8086 (db=h)"},
    "events": {"total": 12345, "per_s": 3.25, "skipped": 2},
    "points": {"written": 12000, "per_s": 3.0, "dropped": 1},
    "spool": {"points": 12, "bytes": 2048, "fill_ratio": 0.001, "oldest": "2026-01-01T11:59:00Z"},
    "last_hour": [{"minute": "x", "events": 1, "points": p} for p in (0, 5, 10)],
    "work": [{"task": "backfill", "unit": "states", "done": 50, "total": 200, "rate_per_s": 10.0, "eta_s": 15.0,
              "elapsed_s": 5.0, "finished": False}],
    "dead_letters": {"count": 1, "recent": [{"time": "x", "reason": "HTTP 400: field type conflict"}]},
    "webhooks": {"delivered": 3, "failed": 1, "pending": 0},
    "busiest": [{"entity_id": "sensor.a", "events": 1500}],
}  # fmt: skip


def test_render_one_screen() -> None:
    lines = render(DOC).splitlines()
    assert lines[0] == "homeiq 9.9.9 · up 1 h 2 min · DEGRADED"
    assert lines[1] == "  • spool backlog of 12 points"
    text = "\n".join(lines)
    assert "Home Assistant  connecting, down since " in text
    assert "(2 min 0 s ago) · 4 reconnects · last event 2 min 10 s ago" in text
    assert "Events          3.25/s · 12,345 total · 2 skipped" in text
    assert "Spool           12 points · 2.0 KiB (0.1 % full) · oldest" in text
    assert "Work            backfill: 50/200 states · 10/s · ETA 0:15" in text
    assert "Dead letters    1 · last: HTTP 400: field type conflict" in text
    assert "Webhooks        3 delivered · 1 failed · 0 pending" in text
    assert "Busiest         sensor.a 1,500" in text


def test_sparkline_and_durations() -> None:
    assert sparkline([0, 5, 10]) == "▁▅█"
    assert sparkline([0, 0]) == "▁▁"
    assert human_duration(59) == "59 s"
    assert human_duration(3 * 86_400 + 7200) == "3 d 2 h"


def test_clock_skew_from_a_whole_second_date_header() -> None:
    date = "Thu, 01 Jan 2026 12:00:00 GMT"  # 1767268800
    in_step = Reply(200, {"Date": date}, b"", sent_at=1767268800.3, received_at=1767268800.4)
    assert _clock_skew(in_step).level == "ok"
    ahead = Reply(200, {"Date": date}, b"", sent_at=1767268810.0, received_at=1767268810.1)
    check = _clock_skew(ahead)
    assert (check.level, check.message) == ("warn", "this machine is 9.0 s ahead of HA")
    behind = Reply(200, {"Date": date}, b"", sent_at=1767268700.0, received_at=1767268700.1)
    assert _clock_skew(behind).level == "fail"
    assert _clock_skew(Reply(200, {}, b"", 0, 0)).level == "warn"


def test_home_assistant_address_from_a_websocket_url() -> None:
    assert _http_base("ws://ha.local:8123/api/websocket") == "http://ha.local:8123"
    assert _http_base("wss://ha.example/sub/api/websocket/") == "https://ha.example/sub"
    assert _http_base("http://ha.local:8123") == "http://ha.local:8123"
