"""The SwitchBot source's state across restarts and halts: the day's request budget, a halt (quota, auth,
budget) until it may resume, the device list and the last states, all in the metadata store's key-value
table. A part of ``SwitchBotSource`` (source.py); the state it shares with the poll loop is declared below.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from typing import Any

import orjson

from homeiq_daemon.config.switchbot import SwitchBotSettings
from homeiq_daemon.metadata.store import EntityQuery, MetadataStore
from homeiq_daemon.model import EntityState, iso_to_ns
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.sources.switchbot.api import DailyBudget, SwitchBotDevice, seconds_to_next_day, utc_day
from homeiq_daemon.sources.switchbot.metrics import SwitchBotStats
from homeiq_daemon.sources.switchbot.readings import DOMAIN

log = get_logger("homeiq.switchbot")

SOURCE = "switchbot"
KEY_BUDGET = "switchbot.budget"
KEY_HALT = "switchbot.halt"
KEY_DEVICES = "switchbot.devices"
STORE_PREFIX = "switchbot:"  # device ids in the metadata store, apart from Home Assistant's
RESUME_SLACK_S = 5.0
HINTS = {
    "quota": "the account's daily request quota is used up (other apps on the account count too)",
    "auth": "check switchbot.token and switchbot.secret (SwitchBot app > Developer Options) and the system "
    "clock; SwitchBot also answers 401 once the daily quota is used up",
    "budget": "the daemon's own share (daily_budget - reserved_requests) is used up",
}


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")


class SwitchBotPersistence:
    _s: SwitchBotSettings
    _store: MetadataStore
    _clock: Any
    _fingerprint: str
    _halted_until: float | None
    _next_list_at: float
    _registered: set[str]
    _seen: dict[str, EntityState]
    _store_failed: bool
    devices: dict[str, SwitchBotDevice]
    metrics: SwitchBotStats
    ready: asyncio.Event

    def _apply_devices(self, devices: list[SwitchBotDevice]) -> None:  # the poll loop's (source.py)
        raise NotImplementedError

    @property
    def webhook_enabled(self) -> bool:  # the push receiver's (source.py)
        raise NotImplementedError

    async def _halt(self, reason: str, error: str) -> None:
        now = self._clock()
        self._halted_until = now + seconds_to_next_day(now)
        self.metrics.halted_reason = reason
        logger = log.warning if reason == "budget" else log.error
        logger("switchbot.halted", reason=reason, error=error[:300], resumes_at=_iso(self._halted_until),
               requests_today=self.metrics.budget.used, hint=HINTS[reason])  # fmt: skip
        if reason != "budget":  # the budget's own count is persisted already
            await self._put(KEY_HALT, {"day": utc_day(now), "reason": reason, "credentials": self._fingerprint})

    async def _sleep_while_halted(self) -> None:
        if self._halted_until is None:
            return
        delay = self._halted_until - self._clock()
        if delay > 0:
            await asyncio.sleep(delay + RESUME_SLACK_S)
        self._halted_until = None
        self.metrics.halted_reason = None
        self._next_list_at = 0.0  # a new day: look at the device list first
        log.info("switchbot.resumed")

    async def _restore(self) -> None:
        now = self._clock()
        budget = await self._get(KEY_BUDGET)
        self.metrics.budget = DailyBudget.restore(self._s.usable_requests, budget, now)
        halt = await self._get(KEY_HALT)
        if (
            isinstance(halt, dict)
            and halt.get("day") == utc_day(now)
            and halt.get("credentials") == self._fingerprint
            and halt.get("reason") in HINTS
        ):
            reason = str(halt["reason"])
            self._halted_until = now + seconds_to_next_day(now)
            self.metrics.halted_reason = reason
            log.error("switchbot.halted", reason=reason, error="stopped earlier today", restored=True,
                      resumes_at=_iso(self._halted_until), hint=HINTS[reason])  # fmt: skip
        stored = await self._get(KEY_DEVICES)
        if isinstance(stored, list):
            self._apply_devices([
                SwitchBotDevice(r[0], r[1] or r[0], r[2] or "unknown", r[3])
                for r in stored
                if isinstance(r, list) and len(r) == 4 and all(isinstance(v, str | None) for v in r) and r[0]
            ])  # fmt: skip
            if self.devices:
                self.ready.set()
        await self._restore_states()
        log.info("switchbot.starting", base_url=self._s.base_url, requests_today=self.metrics.budget.used,
                 requests_allowed=self.metrics.budget.cap, webhook=self.webhook_enabled)  # fmt: skip

    async def _restore_states(self) -> None:
        """The last states the store has for SwitchBot entities: the first reading after a restart that
        repeats one of them is no change (no duplicate point per entity at every restart)."""
        try:
            rows = await self._store.entities(EntityQuery(domain=DOMAIN, limit=100_000))
        except sqlite3.Error as exc:
            self._store_error("entities", exc)
            return
        for row in rows:
            if row.get("state") is not None and row.get("last_updated"):
                try:
                    updated_ns = iso_to_ns(row["last_updated"])
                except ValueError:
                    continue
                self._seen[row["entity_id"]] = EntityState(
                    row["entity_id"], row["state"], {}, row["last_changed"] or row["last_updated"],
                    row["last_updated"], updated_ns,
                )  # fmt: skip
            if row.get("device_id"):
                self._registered.add(row["entity_id"])

    async def _get(self, key: str) -> Any:
        try:
            raw = await self._store.get_value(key)
            return orjson.loads(raw) if raw is not None else None
        except (sqlite3.Error, orjson.JSONDecodeError) as exc:
            self._store_error(key, exc)
            return None

    async def _put(self, key: str, value: Any) -> None:
        try:
            await self._store.put_value(key, orjson.dumps(value).decode())
        except sqlite3.Error as exc:
            self._store_error(key, exc)

    def _store_error(self, what: str, exc: Exception) -> None:
        logger = log.error if not self._store_failed else log.debug
        self._store_failed = True
        logger("switchbot.store_failed", what=what, error=str(exc)[:200])
