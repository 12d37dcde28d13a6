"""SwitchBot source: polls the Cloud API v1.1 (through ``switchbot_client``) and takes its webhook pushes.

* Polling: the device list at start and every ``device_list_interval_s``, then the selected devices' status,
  round-robin, one request per slot. Slots are spaced by the poll interval computed from the device count and
  the budget, and slowed further when the requests left today would not last until midnight. A device that
  pushed within the last poll interval is skipped: its push is at least as new as a poll would be.
* Budget: every request (retries too) is first taken from the day's count, persisted write-ahead in the
  metadata store, so neither retries nor restarts take the daemon past ``daily_budget - reserved_requests``.
* Time stamps: a push carries ``timeOfSample``; a poll is stamped with the time the request was sent, so a
  push measured while the poll was in flight wins in the tracker. A reading equal to the entity's last state
  is no change (``switchbot_readings.changes``), so a poll repeating a push writes no second point.
* Quota used up or credentials refused: one ``switchbot.halted`` line and no request until the next UTC day.
  The halt is stored with a fingerprint of the credentials: a restart stays halted, new credentials lift it.
* Pushes: ``handle_webhook`` serves ``POST /switchbot/webhook/<secret>`` for the HTTP server.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

from homeiq_daemon.config.switchbot import SwitchBotSettings
from homeiq_daemon.errors import ProtocolError
from homeiq_daemon.metadata.registry import Device, RegistryEntity
from homeiq_daemon.metadata.store import MetadataStore
from homeiq_daemon.model import EntityState
from homeiq_daemon.pipeline.core import Pipeline
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.retry import backoff_delay
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sources.switchbot.api import (
    DailyBudget,
    SwitchBotAuthError,
    SwitchBotDevice,
    SwitchBotQuotaError,
    SwitchBotRequestError,
    SwitchBotTransientError,
    credential_fingerprint,
    poll_interval_s,
    request_spacing_s,
    seconds_to_next_day,
    select_devices,
    utc_day,
)
from homeiq_daemon.sources.switchbot.client import SwitchBotClient
from homeiq_daemon.sources.switchbot.metrics import SwitchBotCollector, SwitchBotStats
from homeiq_daemon.sources.switchbot.persistence import (
    KEY_BUDGET,
    KEY_DEVICES,
    SOURCE,
    STORE_PREFIX,
    SwitchBotPersistence,
)
from homeiq_daemon.sources.switchbot.readings import (
    Reading,
    changes,
    entity_id,
    object_ids,
    parse_webhook,
    sample_time_ns,
    slugify,
    status_readings,
)

log = get_logger("homeiq.switchbot")



class BudgetSpent(Exception):
    """Today's requests are used up; nothing is sent before midnight UTC."""


class SwitchBotSource(SwitchBotPersistence):
    def __init__(
        self,
        settings: SwitchBotSettings,
        pipeline: Pipeline,
        stats: Stats,
        store: MetadataStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        assert settings.token is not None
        assert settings.secret is not None
        self._s = settings
        self._pipeline = pipeline
        self._stats = stats
        self._store = store
        self._clock = clock
        self._fingerprint = credential_fingerprint(settings.token.get_secret_value(),
                                                   settings.secret.get_secret_value())  # fmt: skip
        self.metrics = SwitchBotStats(DailyBudget(cap=settings.usable_requests, day=utc_day(clock())))
        secret = settings.webhook_path_secret
        self._path_secret = secret.get_secret_value().encode() if secret is not None else None
        self.devices: dict[str, SwitchBotDevice] = {}
        self.polled: list[SwitchBotDevice] = []
        self._prefixes: dict[str, str] = {}
        self._turn = 0
        self._next_list_at = 0.0
        self._halted_until: float | None = None
        self._last_push: dict[str, float] = {}  # device id -> monotonic time of its last push
        self._registered: set[str] = set()
        self._seen: dict[str, EntityState] = {}  # last states from the store, for the first readings after start
        self._reported: set[tuple[str, object]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures = 0
        self._store_failed = False
        self.ready = asyncio.Event()  # set once a device list is known

    # --- the poll loop ------------------------------------------------------------------------------------

    def collector(self) -> SwitchBotCollector:
        """The Prometheus collector of this source's counters (for ``Metrics.register``)."""
        return SwitchBotCollector(self.metrics)

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            await self.close()

    async def _run(self) -> None:
        await self._restore()
        async with SwitchBotClient(self._s, spend=self._spend, counts=self.metrics.requests) as client:
            while True:
                await self._sleep_while_halted()
                try:
                    await self._slot(client)
                except (SwitchBotQuotaError, SwitchBotAuthError) as exc:
                    await self._halt("quota" if isinstance(exc, SwitchBotQuotaError) else "auth", str(exc))
                    continue
                except BudgetSpent:
                    await self._halt("budget", f"{self.metrics.budget.used} requests made today")
                    continue
                except SwitchBotTransientError as exc:
                    self._failures += 1
                    delay = backoff_delay(self._failures, min(1.0, self._s.retry_max_s), self._s.retry_max_s)
                    logger = log.warning if self._failures == 1 else log.debug
                    logger("switchbot.unavailable", error=str(exc)[:300], retry_in_s=round(delay, 1),
                           attempt=self._failures)  # fmt: skip
                    await asyncio.sleep(delay)
                    continue
                if self._failures:
                    log.info("switchbot.available", failures=self._failures)
                    self._failures = 0
                await asyncio.sleep(self._spacing())

    async def _slot(self, client: SwitchBotClient) -> None:
        if self._clock() >= self._next_list_at:
            await self._refresh_devices(client)
            return
        device = self._next_device()
        if device is not None:
            await self._poll(client, device)

    def _spacing(self) -> float:
        now = self._clock()
        budget = self.metrics.budget
        budget.roll(now)
        interval = self.metrics.poll_interval_s
        to_midnight = seconds_to_next_day(now)
        nominal = interval / len(self.polled) if self.polled and math.isfinite(interval) else to_midnight
        spacing = request_spacing_s(nominal, to_midnight, budget.left)
        return max(0.0, min(spacing, self._next_list_at - now)) if budget.left else spacing

    def _next_device(self) -> SwitchBotDevice | None:
        """The next device round-robin, skipping those that pushed within the poll interval."""
        now = time.monotonic()
        for _ in range(len(self.polled)):
            device = self.polled[self._turn % len(self.polled)]
            self._turn += 1
            pushed = self._last_push.get(device.device_id)
            if pushed is None or now - pushed >= self.metrics.poll_interval_s:
                return device
        return None

    async def _spend(self) -> None:
        budget = self.metrics.budget
        if not budget.take(self._clock()):
            raise BudgetSpent
        reservation = budget.reservation()
        if reservation is not None:
            await self._put(KEY_BUDGET, reservation)

    async def _refresh_devices(self, client: SwitchBotClient) -> None:
        devices = await client.device_list()
        self._next_list_at = self._clock() + self._s.device_list_interval_s
        self._apply_devices(devices)
        await self._put(KEY_DEVICES, [[d.device_id, d.name, d.device_type, d.hub_device_id] for d in devices])
        try:
            await self._store.replace_source_devices(SOURCE, [_store_device(d) for d in devices])
        except sqlite3.Error as exc:
            self._store_error("devices", exc)
        self.ready.set()

    def _apply_devices(self, devices: list[SwitchBotDevice]) -> None:
        self.devices = {d.device_id: d for d in devices}
        self._prefixes = object_ids(devices)
        polled, missing = select_devices(devices, self._s.devices)
        changed = [d.device_id for d in polled] != [d.device_id for d in self.polled]
        self.polled = polled
        interval = poll_interval_s(len(polled), self._s.usable_requests, self._s.device_list_interval_s,
                                   self._s.min_poll_interval_s)  # fmt: skip
        self.metrics.devices_known = len(devices)
        self.metrics.devices_polled = len(polled)
        self.metrics.poll_interval_s = interval
        if missing and ("missing", tuple(missing)) not in self._reported:
            self._reported.add(("missing", tuple(missing)))
            log.warning("switchbot.devices_not_found", devices=", ".join(missing)[:300],
                        hint="switchbot.devices names ids or names from the SwitchBot app")  # fmt: skip
        if changed:
            log.info("switchbot.poll_plan", devices=len(devices), polled=len(polled),
                     poll_interval_s=round(interval, 1), requests_per_day=self._s.usable_requests)  # fmt: skip

    async def _poll(self, client: SwitchBotClient, device: SwitchBotDevice) -> None:
        sent_ns = time.time_ns()
        try:
            body = await client.status(device.device_id)
            found = status_readings(body)
        except SwitchBotRequestError as exc:
            key = (device.device_id, exc.status_code)
            logger = log.warning if key not in self._reported else log.debug
            self._reported.add(key)
            logger("switchbot.device_error", device=device.name, device_id=device.device_id, error=str(exc))
            return
        except ProtocolError as exc:
            self._stats.malformed_messages[SOURCE] += 1
            log.warning("switchbot.status_skipped", device_id=device.device_id, reason=str(exc)[:200])
            return
        self._submit(device.device_id, found, sent_ns)

    # --- readings -> pipeline -------------------------------------------------------------------------------

    def _last_state(self, entity: str) -> EntityState | None:
        return self._pipeline.states.get(entity) or self._seen.get(entity)

    def _submit(self, device_id: str, found: list[Reading], time_ns: int) -> int:
        device = self.devices.get(device_id)
        name = device.name if device is not None else device_id
        prefix = self._prefixes.get(device_id) or slugify(device_id)
        submitted = changes(prefix, name, found, time_ns, self._last_state)
        for change in submitted:
            self._pipeline.submit(change)
        new = [r for r in found if entity_id(prefix, r) not in self._registered]
        if new:
            self._registered.update(entity_id(prefix, r) for r in new)
            entities = [
                RegistryEntity(entity_id(prefix, r), platform=SOURCE, unique_id=f"{device_id}_{r.spec.key}",
                               device_id=STORE_PREFIX + device_id, original_name=f"{name} {r.spec.label}")
                for r in new
            ]  # fmt: skip
            self._spawn(self._register(entities), "homeiq-switchbot-register")
        return len(submitted)

    async def _register(self, entities: list[RegistryEntity]) -> None:
        try:
            await self._store.upsert_source_entities(SOURCE, entities)
        except sqlite3.Error as exc:
            self._registered.difference_update(e.entity_id for e in entities)
            self._store_error("entities", exc)

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- webhook ----------------------------------------------------------------------------------------------

    @property
    def webhook_enabled(self) -> bool:
        return self._path_secret is not None

    def webhook_secret_ok(self, given_secret: str) -> bool:
        """Constant-time check of the path secret; the HTTP server asks before it reads any body."""
        expected = self._path_secret
        if expected is None or not hmac.compare_digest(given_secret.encode(), expected):
            self.metrics.webhooks["wrong_secret"] += 1
            return False
        return True

    def handle_webhook(self, given_secret: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """One push; returns (HTTP status, JSON reply). Wrong path secret: 404, as for any unknown path."""
        counts = self.metrics.webhooks
        if not self.webhook_secret_ok(given_secret):
            return 404, {"error": "not found", "status": 404}
        try:
            event = parse_webhook(body)
        except ProtocolError as exc:
            counts["malformed"] += 1
            self._stats.malformed_messages[SOURCE] += 1
            if counts["malformed"] <= 10 or counts["malformed"] % 1000 == 0:
                log.warning("switchbot.webhook_malformed", reason=str(exc)[:200], count=counts["malformed"])
            return 400, {"error": str(exc)[:200], "status": 400}
        if event.event_type != "changeReport":
            counts["ignored"] += 1
            return 200, {"accepted": 0, "ignored": "eventType"}
        device_id = event.device_id
        known = device_id in self.devices
        selected = any(d.device_id == device_id for d in self.polled) or (known and not self._s.devices)
        if not selected:
            counts["ignored"] += 1
            return 200, {"accepted": 0, "ignored": "device not selected" if known else "unknown device"}
        self._last_push[device_id] = time.monotonic()
        accepted = self._submit(device_id, list(event.readings), sample_time_ns(event.sample_ms, time.time_ns()))
        counts["accepted"] += 1
        return 200, {"accepted": accepted}

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _store_device(device: SwitchBotDevice) -> Device:
    hub = STORE_PREFIX + device.hub_device_id if device.hub_device_id else None
    return Device(STORE_PREFIX + device.device_id, name=device.name, manufacturer="SwitchBot",
                  model=device.device_type, via_device_id=hub)  # fmt: skip


__all__ = ["BudgetSpent", "SwitchBotClient", "SwitchBotSource"]
