"""SIGHUP: reload what can change while running, name what cannot, never stop the daemon.

Reloaded in place: ``log`` (level and format), ``mapping`` (include/exclude filters, tags, measurements: the
next event uses them) and ``webhooks.rules`` (when the targets and delivery settings stay the same). Every
other changed section is named in the log line: it takes effect at the next restart. A configuration that
no longer validates is refused with its one-line error, and the running one stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

from homeiq_daemon.app import App
from homeiq_daemon.config import Settings
from homeiq_daemon.errors import HomeIQError
from homeiq_daemon.runtime.logs import configure_logging, get_logger

log = get_logger("homeiq.reload")

RELOADABLE = ("log", "mapping", "webhooks")


def changed_sections(old: Settings, new: Settings) -> list[str]:
    return [name for name in type(old).model_fields if getattr(old, name) != getattr(new, name)]


class Reloader:
    def __init__(self, app: App, load: Callable[[], Settings]) -> None:
        self._app = app
        self._load = load
        self.current = app.settings
        self.reloads = 0

    def reload(self) -> None:
        try:
            new = self._load()
        except HomeIQError as exc:
            log.error("homeiq.reload_failed", error=str(exc)[:300], action="kept the running configuration")
            return
        old, app = self.current, self._app
        changed = changed_sections(old, new)
        reloaded: list[str] = []
        if "log" in changed:
            configure_logging(new.log.format, new.log.level)
            reloaded.append("log")
        if "mapping" in changed and app.pipeline is not None:
            app.pipeline.set_mapping(new.mapping)
            reloaded.append("mapping")
        if "webhooks" in changed and self._rules_only(old, new) and app.webhooks is not None:
            app.webhooks.set_rules(new.webhooks)
            reloaded.append("webhooks.rules")
        needs_restart = [name for name in changed if name not in reloaded and f"{name}.rules" not in reloaded]
        # What was reloaded becomes the baseline; what was not stays as running, so it is named again next time.
        self.current = old.model_copy(update={name.partition(".")[0]: getattr(new, name.partition(".")[0])
                                              for name in reloaded})  # fmt: skip
        self.reloads += 1
        log.info("homeiq.reloaded", reloaded=reloaded or "nothing changed that can be reloaded",
                 needs_restart=needs_restart or "none", count=self.reloads)  # fmt: skip

    @staticmethod
    def _rules_only(old: Settings, new: Settings) -> bool:
        same_rest = old.webhooks.model_copy(update={"rules": []}) == new.webhooks.model_copy(update={"rules": []})
        return same_rest and old.webhooks.all_targets == new.webhooks.all_targets


def attach_reload(app: App, load: Callable[[], Settings]) -> Reloader:
    """SIGHUP is ignored until the loop runs (its default would kill the process), then reloads."""
    reloader = Reloader(app, load)
    with contextlib.suppress(ValueError, OSError):  # not the main thread (tests)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def install() -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reloader.reload)

    app.on_ready.append(install)
    return reloader
