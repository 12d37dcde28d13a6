"""``homeiq run`` at a terminal: the status page's address once it listens, "first points written", and a
heartbeat line every 10 s (runtime/heartbeat.py) unless ``--quiet``. Not at a terminal (journald, a pipe),
only the first-points event, as a log line."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from homeiq_daemon.runtime.heartbeat import Heartbeat
from homeiq_daemon.runtime.progress import is_tty

if TYPE_CHECKING:
    from homeiq_daemon.app import App


def attach_console(app: App, *, quiet: bool, stream: TextIO | None = None) -> Heartbeat:
    out = stream if stream is not None else sys.stderr
    terminal = is_tty(out)

    def sink() -> str:
        return app.writer.describe if app.writer is not None else "the sink"

    heartbeat = Heartbeat(
        app.stats,
        app.activity,
        stream=out,
        terminal=terminal,
        quiet=quiet,
        hub_configured=bool(app.settings.home_assistant.url),
        sink=sink,
    )
    # At a terminal every second (the heartbeat's 10 s are counted from it); elsewhere only the first-points
    # event is due, so a slower tick is enough and keeps an idle Pi's wake-ups down.
    app.scheduler.every("console_heartbeat", 1.0 if terminal else 5.0, heartbeat.tick)
    if terminal:

        def show_url() -> None:
            url = app.status_url()
            if url is not None:
                out.write(f"homeiq: status page at {url}  (Ctrl-C stops)\n")
                out.flush()

        app.on_ready.append(show_url)
    return heartbeat

