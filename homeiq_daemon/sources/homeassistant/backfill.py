"""Backfill: on every (re)connect, fetch from HA's recorder what changed while the daemon was not listening.

For each exported entity whose current ``last_updated`` is past its watermark, the recorder is asked for
every change from the watermark to the present, while live events flow (duplicates are harmless: a point
written twice stays one point). The last window is read ``commit_wait_s`` after live events started, so
everything the recorder had not committed yet at that moment is in the answer. Requests are paged by entity
chunks and adaptive time windows, and each answer waits for room in the delivery queue: memory stays
bounded however long the gap.

What cannot be healed is said once and shown in /healthz, and the daemon carries on live-only: no recorder
(or HA too old for the command), an entity the recorder does not record, a gap older than ``max_age_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Protocol

from homeiq_daemon.config.backfill import BackfillSettings
from homeiq_daemon.model import EntityState, ns_to_iso
from homeiq_daemon.pipeline.watermarks import Watermarks
from homeiq_daemon.runtime.logs import get_logger
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sources.homeassistant import history

log = get_logger("homeiq.backfill")

Call = Callable[..., Awaitable[Any]]
_OVERLAP_NS = 1_000_000  # windows overlap by 1 ms: HA's bounds are exclusive and its times are floats


class HistorySink(Protocol):
    def submit_history(self, states: list[EntityState]) -> int: ...

    async def wait_for_room(self) -> None: ...

    def flush(self) -> None: ...


async def unavailable_reason(call: Call, code: str) -> str:
    """Why ``history/history_during_period`` is refused, in words a person can act on."""
    if code != "unknown_command":
        return f"Home Assistant refused {history.COMMAND} ({code})"
    try:
        config = await call("get_config", timeout_s=10.0)
        components = set(config.get("components", [])) if isinstance(config, dict) else set()
        version = str(config.get("version", "?")) if isinstance(config, dict) else "?"
    except Exception:  # noqa: BLE001 - the reason is only a better message
        return f"Home Assistant does not know {history.COMMAND}"
    if "recorder" not in components:
        return "Home Assistant's recorder is not enabled (add `recorder:` or `default_config:`)"
    if "history" not in components:
        return "Home Assistant's history integration is not loaded (add `history:` or `default_config:`)"
    return f"Home Assistant {version} is older than {history.COMMAND} (needs 2022.6 or newer)"


async def recorder_caught_up(call: Call, commit_wait_s: float, limit_s: float = 30.0) -> None:
    """Wait (bounded) until the recorder has written its queue, then one more commit interval: a recorder
    busy after HA's start may hold changes the answer would otherwise miss."""
    deadline = time.monotonic() + limit_s
    waited = False
    while time.monotonic() < deadline:
        try:
            info = await call("recorder/info", timeout_s=10.0)
        except Exception:  # noqa: BLE001 - an HA without the command: the commit wait has to do
            return
        if not isinstance(info, dict) or (info.get("backlog") or 0) == 0:
            break
        waited = True
        await asyncio.sleep(0.5)
    if waited:
        await asyncio.sleep(commit_wait_s)


class HistoryFetcher:
    """Paged reads of the recorder over one connection: entity chunks x adaptive time windows."""

    def __init__(self, call: Call, settings: BackfillSettings) -> None:
        self._call = call
        self._settings = settings
        self.requests = 0

    async def fetch(self, entity_ids: list[str], start_ns: int, end_ns: int | None) -> object:
        self.requests += 1
        return await self._call(
            history.COMMAND, timeout_s=self._settings.request_timeout_s, **history.request(entity_ids, start_ns, end_ns)
        )

    async def windows(
        self,
        entity_ids: list[str],
        start_ns: int,
        until_ns: int,
        *,
        open_end: bool,
        before_last: Callable[[], Awaitable[None]] | None = None,
    ) -> AsyncGenerator[tuple[object, int], None]:
        """Yield ``(answer, window_end_ns)`` from ``start_ns`` on; the last window is open-ended (up to now)
        when ``open_end``, else it ends at ``until_ns``. The next window is asked for before this one is
        handed on, so HA prepares it while the caller writes (at most two answers in memory)."""
        sizer = history.sizer_for(self._settings)

        def ask(start: int) -> tuple[asyncio.Task[object], int, bool]:
            end = sizer.next_end(start, until_ns)
            last = end >= until_ns
            return asyncio.ensure_future(
                self._ask(entity_ids, start, end=end, last=last, open_end=open_end, before_last=before_last)
            ), end, last

        pending = ask(start_ns)
        try:
            while True:
                task, end, last = pending
                answer = await task
                if not last:
                    sizer.observe(sum(len(v) for v in answer.values()) if isinstance(answer, dict) else 0)
                    pending = ask(end - _OVERLAP_NS)
                yield answer, end
                if last:
                    return
        finally:
            task = pending[0]
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _ask(
        self,
        entity_ids: list[str],
        start: int,
        *,
        end: int,
        last: bool,
        open_end: bool,
        before_last: Callable[[], Awaitable[None]] | None,
    ) -> object:
        if last and before_last is not None:
            await before_last()
        return await self.fetch(entity_ids, start, None if last and open_end else end)


class Backfill:
    """One per source; ``run`` once per connection, as a task beside the live stream."""

    def __init__(self, settings: BackfillSettings, sink: HistorySink, watermarks: Watermarks, stats: Stats) -> None:
        self.settings = settings
        self._sink = sink
        self._watermarks = watermarks
        self._stats = stats
        self._warned: set[str] = set()

    def plan(self, states: list[EntityState], accepts: Callable[[str], bool], now_ns: int) -> dict[str, int]:
        """Entity -> where its backfill starts. Entities unchanged since their watermark need none; a start
        older than ``max_age_s`` is moved up to it and the rest reported as unhealed."""
        horizon = now_ns - int(self.settings.max_age_s * 1e9)
        starts: dict[str, int] = {}
        too_old: list[str] = []
        for state in states:
            entity_id = state.entity_id
            if not accepts(entity_id):
                continue
            start = self._watermarks.start_for(entity_id)
            if start is None or state.last_updated_ns <= start:
                continue  # nothing known yet (a fresh install: see import-history), or unchanged since
            if start < horizon:
                too_old.append(entity_id)
                start = horizon
            starts[entity_id] = start
        if too_old:
            oldest = min(self._watermarks.start_for(e) or horizon for e in too_old)
            why = f"gap from {ns_to_iso(oldest)} is older than home_assistant.backfill.max_age_s"
            for entity_id in too_old:
                self._stats.backfill_unhealed[entity_id] = why
            log.warning(
                "backfill.gap_too_old",
                entities=len(too_old),
                unhealed_from=ns_to_iso(oldest),
                unhealed_until=ns_to_iso(horizon),
                max_age_s=self.settings.max_age_s,
                hint="import it with: homeiq import-history --since <when>",
            )
        return starts

    async def run(
        self, call: Call, states: list[EntityState], accepts: Callable[[str], bool], live_since: float
    ) -> None:
        """``live_since``: time.monotonic() when the live subscription was confirmed."""
        from homeiq_daemon.sources.homeassistant.connection import CommandFailed  # noqa: PLC0415 - aiohttp on first use

        if not self.settings.enabled:
            return
        started = time.monotonic()
        now_ns = time.time_ns()
        starts = self.plan(states, accepts, now_ns)
        if not starts:
            return
        self._watermarks.set_floors(starts)
        current = {state.entity_id: state.last_updated_ns for state in states}
        self._stats.backfill_running = True
        fetcher = HistoryFetcher(call, self.settings)
        seen: set[str] = set()
        points = 0
        first_start = min(starts.values())

        async def commit_wait() -> None:
            await asyncio.sleep(max(0.0, live_since + self.settings.commit_wait_s - time.monotonic()))
            await recorder_caught_up(call, self.settings.commit_wait_s)

        ordered = sorted(starts, key=starts.__getitem__)
        try:
            for chunk in history.chunks(ordered, self.settings.entities_per_request):
                chunk_start = starts[chunk[0]] - _OVERLAP_NS
                windows = fetcher.windows(chunk, chunk_start, now_ns, open_end=True, before_last=commit_wait)
                async with contextlib.aclosing(windows):
                    async for answer, _ in windows:
                        batch = list(history.parse_answer(answer, after_ns=starts))
                        seen.update(state.entity_id for state in batch)
                        points += self._sink.submit_history(batch)
                        del batch
                        await self._sink.wait_for_room()
        except CommandFailed as exc:
            self._stats.backfill_running = False
            reason = await unavailable_reason(call, exc.code)
            self._unavailable(reason)
            return
        except BaseException:
            self._stats.backfill_running = False
            raise
        self._stats.backfill_unavailable = None
        self._sink.flush()
        floors = dict(starts)
        self._watermarks.when_committed(lambda: self._watermarks.clear_floors(floors, floors))
        self._report_unrecorded(starts, current, seen)
        st = self._stats
        st.backfill_running = False
        st.backfill_runs += 1
        st.backfill_last_start_ns = first_start
        st.backfill_last_end_ns = now_ns
        st.backfill_last_duration_s = time.monotonic() - started
        log.info(
            "backfill.done",
            entities=len(starts),
            points=points,
            requests=fetcher.requests,
            since=ns_to_iso(first_start),
            seconds=round(st.backfill_last_duration_s, 3),
        )

    def _report_unrecorded(self, starts: dict[str, int], current: dict[str, int], seen: set[str]) -> None:
        """An entity whose state changed after its start (HA's own state says so) but that the recorder
        returned nothing for is not recorded: the recorder excludes it."""
        missing = [e for e, start in starts.items() if e not in seen and current.get(e, 0) > start]
        fresh = [e for e in missing if e not in self._stats.backfill_unhealed]
        for entity_id in missing:
            self._stats.backfill_unhealed[entity_id] = "not in the recorder (excluded from it?)"
        if fresh:
            log.warning(
                "backfill.not_recorded",
                entities=fresh[:20],
                count=len(fresh),
                reason="the recorder holds no state of these entities; their gaps cannot be healed",
                hint="include them in the recorder, or accept live-only capture for them",
            )

    def _unavailable(self, reason: str) -> None:
        self._stats.backfill_unavailable = reason
        if reason not in self._warned:
            self._warned.add(reason)
            log.warning(
                "backfill.unavailable",
                reason=reason,
                effect="gaps while the daemon or the connection was down cannot be healed; capturing live only",
            )
