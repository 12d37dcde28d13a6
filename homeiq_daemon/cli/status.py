"""``homeiq status``: one screen with what the status page shows, read from the running daemon's API
(``GET /api/v1/status`` at the configured ``http.host``/``http.port``, with ``http.token`` when set).

Exit codes: 0 healthy, 1 degraded or critical, 3 not running (nothing answers), 77 the daemon refused the
token. ``--json`` prints the document as the API gives it.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any, TextIO

from homeiq_daemon.cli.common import Loader, add_command
from homeiq_daemon.config import Settings
from homeiq_daemon.errors import EXIT_FAILURE, EXIT_NOPERM, EXIT_OK
from homeiq_daemon.runtime.progress import format_duration

EXIT_NOT_RUNNING = 3  # as `systemctl status` says of a unit that is not active
TIMEOUT_S = 5.0
_SPARK = "▁▂▃▄▅▆▇█"


class NotRunning(Exception):
    """Nothing answers at the daemon's address."""


class Refused(Exception):
    """The daemon answered 401: the token in the config is not the one it runs with."""


def register(sub: Any) -> None:
    status = add_command(
        sub, "status", cmd_status, help="what the running daemon is doing (exit 0 healthy, 1 degraded, 3 not running)"
    )
    status.add_argument("--json", action="store_true", help="print the daemon's /api/v1/status document")


def daemon_url(settings: Settings) -> str:
    host = settings.http.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - listening on all addresses: ask over loopback
        host = "127.0.0.1" if host != "::" else "::1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{settings.http.port}"


def fetch_status(settings: Settings, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    url = daemon_url(settings) + "/api/v1/status"
    headers = {"Accept": "application/json"}
    if settings.http.token is not None:
        headers["Authorization"] = f"Bearer {settings.http.token.get_secret_value().strip()}"
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) URL built from the settings
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            document: dict[str, Any] = json.loads(response.read())
            return document
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise Refused(f"{url} refused the token (http.token differs from the daemon's)") from None
        raise NotRunning(f"{url} answered HTTP {exc.code}: not the homeiq API?") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NotRunning(f"nothing answers at {url} ({reason})") from None


def cmd_status(args: argparse.Namespace, load: Loader) -> int:
    return run(args, load(read_only=True))


def run(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        doc = fetch_status(settings)
    except NotRunning as exc:
        sys.stderr.write(f"homeiq is not running: {exc}\n")
        sys.stderr.write("  start it: systemctl start homeiq (or: homeiq run); logs: journalctl -u homeiq -n 50\n")
        return EXIT_NOT_RUNNING
    except Refused as exc:
        sys.stderr.write(f"homeiq: error: {exc}\n")
        return EXIT_NOPERM
    if args.json:
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        out.write(render(doc))
    return EXIT_OK if doc.get("status") == "ok" else EXIT_FAILURE


# --- rendering (pure) -------------------------------------------------------------------------------------


def _n(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"


def human_duration(seconds: float) -> str:
    """``42 s``, ``17 min 23 s``, ``3 h 5 min``, ``2 d 4 h``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86_400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86_400} d {s % 86_400 // 3600} h"


def _clock(iso: str | None, now: datetime) -> str:
    if not iso:
        return "-"
    when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    age = human_duration((now - when).total_seconds())
    return f"{when.astimezone().strftime('%H:%M:%S')} ({age} ago)"


def _bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def sparkline(values: list[int]) -> str:
    top = max(values, default=0)
    if top <= 0:
        return _SPARK[0] * len(values)
    return "".join(_SPARK[min(len(_SPARK) - 1, round(v / top * (len(_SPARK) - 1)))] for v in values)


def render(doc: dict[str, Any]) -> str:
    now = datetime.fromisoformat(doc["now"].replace("Z", "+00:00")) if doc.get("now") else datetime.now(UTC)
    lines = [f"homeiq {doc['version']} · up {human_duration(doc['uptime_s'])} · {doc['status'].upper()}"]
    lines += [f"  • {reason}" for reason in doc.get("reasons", [])]
    ha = doc["home_assistant"]
    if not ha["configured"]:
        ha_text = "not configured"
    else:
        state = "connected since" if ha["connected"] else f"{ha['state']}, down since"
        ha_text = f"{state} {_clock(ha['since'], now)} · {ha['reconnects']} reconnects"
        age = ha.get("last_event_age_s")
        ha_text += f" · last event {human_duration(age)} ago" if age is not None else " · no event yet"
    sink = doc["sink"]
    events, points, spool = doc["events"], doc["points"], doc["spool"]
    rows = [
        ("Home Assistant", ha_text),
        ("Sink", f"{sink['state']} since {_clock(sink['since'], now)} · {sink['describe']}"),
        ("Events", f"{_n(events['per_s'])}/s · {_n(events['total'])} total · {_n(events['skipped'])} skipped"),
        ("Points", f"{_n(points['written'])} written · {_n(points['per_s'])}/s · {_n(points['dropped'])} dropped"),
    ]
    spool_text = f"{_n(spool['points'])} points · {_bytes(spool['bytes'])} ({spool['fill_ratio'] * 100:.1f} % full)"
    if spool.get("oldest"):
        spool_text += f" · oldest {_clock(spool['oldest'], now)}"
    rows.append(("Spool", spool_text))
    hour = doc.get("last_hour", [])
    if hour:
        per_minute = [m["points"] for m in hour]
        rows.append(("Last hour", f"{sparkline(per_minute)}  points/min (max {max(per_minute):,})"))
    for item in doc.get("work", []):
        amount = f"{_n(item['done'])}/{_n(item['total'])}" if item["total"] is not None else _n(item["done"])
        text = f"{item['task']}: {amount} {item['unit']}"
        if item.get("rate_per_s"):
            text += f" · {_n(item['rate_per_s'])}/s"
        if item["finished"]:
            text += f" · done in {format_duration(item['elapsed_s'])}"
        elif item.get("eta_s") is not None:
            text += f" · ETA {format_duration(item['eta_s'])}"
        rows.append(("Work", text))
    dead = doc["dead_letters"]
    dead_text = _n(dead["count"])
    if dead["recent"]:
        dead_text += f" · last: {dead['recent'][0]['reason'][:90]}"
    rows.append(("Dead letters", dead_text))
    hooks = doc.get("webhooks")
    if hooks is not None:
        rows.append(("Webhooks", f"{_n(hooks['delivered'])} delivered · {_n(hooks['failed'])} failed · "
                                 f"{_n(hooks['pending'])} pending"))  # fmt: skip
    busiest = doc.get("busiest", [])
    if busiest:
        rows.append(("Busiest", " · ".join(f"{b['entity_id']} {b['events']:,}" for b in busiest[:5])))
    width = max(len(label) for label, _ in rows)
    lines += [f"{label.ljust(width)}  {text}" for label, text in rows]
    return "\n".join(lines) + "\n"
