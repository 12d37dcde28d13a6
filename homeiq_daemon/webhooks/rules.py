"""Rule matching on state changes: sans-IO, synchronous, cheap. Timers are injected (``loop.call_later``).

Conditions follow Home Assistant's triggers, so a rule reads like the automation a user would write:

* ``to``/``from``: the watched value (state, or ``attribute``) changed, into ``to`` and out of ``from``.
* ``above``/``below``: the value *crossed into* the range (old value outside it or not a number, new inside);
  staying inside does not fire again.
* neither: the watched value changed (with ``attribute``: "this attribute changed").
* ``for_s``: the condition must still hold that long (a change that breaks it cancels the timer).
* ``debounce_s``: fire once matches have been quiet that long, with the latest one.
* ``throttle_s``: at most one delivery per entity in that window.

Origins: live, replay and other sources fire rules. ``snapshot`` (the first full state list after start)
and ``gapfill`` (what changed while the Home Assistant connection was down) never *start* a match: the
first is a baseline, not a change, and the second is history — after an HA restart it re-emits nearly every
entity, so firing on it would send a burst of stale deliveries. They can still *cancel* a pending ``for_s``
hold, because they do show the condition no longer holds.
"""

from __future__ import annotations

import fnmatch
import math
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

from homeiq_daemon.config.webhooks import WebhookRule, WebhookSettings
from homeiq_daemon.model import EntityState, StateChange
from homeiq_daemon.webhooks.stats import WebhookStats

NOT_FIRING_ORIGINS = frozenset({"snapshot", "gapfill"})
_MISSING: Any = object()


class Cancellable(Protocol):
    def cancel(self) -> None: ...


CallLater = Callable[[float, Callable[[], None]], Cancellable]
AreaLookup = Callable[[str], Collection[str]]
"""entity_id -> the ids and names of its area (lower case), empty when unknown."""


@dataclass(frozen=True, slots=True)
class Match:
    """A rule fired for one change; what the outbox turns into a delivery."""

    rule: str
    target: str
    change: StateChange
    received_ns: int  # wall clock when the triggering event reached the daemon
    fired_ns: int  # wall clock when the rule fired (after for_s / debounce_s)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def _number(value: Any) -> float | None:
    if value is _MISSING or value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return None if math.isnan(number) else number


class CompiledRule:
    __slots__ = (
        "above",
        "areas",
        "attribute",
        "below",
        "debounce_s",
        "domains",
        "entity_ids",
        "for_s",
        "from_",
        "glob",
        "index",
        "name",
        "numeric",
        "target",
        "throttle_s",
        "to",
    )

    def __init__(self, index: int, rule: WebhookRule) -> None:
        self.index = index
        self.name = rule.name
        self.target = rule.target_name
        globs = [e for e in rule.entities if any(ch in e for ch in "*?[")]
        self.entity_ids = frozenset(e for e in rule.entities if e not in globs)
        self.glob = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs)) if globs else None
        self.domains = frozenset(rule.domains)
        self.areas = frozenset(a.lower() for a in rule.areas)
        self.to = frozenset(rule.to) if rule.to is not None else None
        self.from_ = frozenset(rule.from_) if rule.from_ is not None else None
        self.above = rule.above
        self.below = rule.below
        self.numeric = rule.above is not None or rule.below is not None
        self.attribute = rule.attribute
        self.for_s = rule.for_s
        self.debounce_s = rule.debounce_s
        self.throttle_s = rule.throttle_s

    def selects_statically(self, entity_id: str) -> bool:
        return (
            entity_id in self.entity_ids
            or entity_id.partition(".")[0] in self.domains
            or bool(self.glob and self.glob.match(entity_id))
        )

    def watched(self, state: EntityState | None) -> Any:
        if state is None:
            return _MISSING
        if self.attribute is None:
            return state.state
        return state.attributes.get(self.attribute, _MISSING)

    def in_range(self, value: Any) -> bool:
        number = _number(value)
        if number is None:
            return False
        return (self.above is None or number > self.above) and (self.below is None or number < self.below)

    def transition(self, old: Any, new: Any) -> bool:
        """Did this change make the condition true?"""
        if new is _MISSING:
            return False
        if self.numeric:
            return self.in_range(new) and not self.in_range(old)
        if old is not _MISSING and _text(old) == _text(new):
            return False
        if self.to is not None and _text(new) not in self.to:
            return False
        return self.from_ is None or (old is not _MISSING and _text(old) in self.from_)

    def holds(self, value: Any, at_trigger: Any) -> bool:
        """Does the condition still hold for a pending ``for_s``?"""
        if value is _MISSING:
            return False
        if self.numeric:
            return self.in_range(value)
        if self.to is not None:
            return _text(value) in self.to
        return _text(value) == _text(at_trigger)


@dataclass(slots=True)
class _Pending:
    handle: Cancellable
    match: Match
    value: Any  # the watched value when the hold began


@dataclass(slots=True)
class RuleEngine:
    """Feeds every accepted change through the rules; calls ``emit`` for each match, synchronously."""

    settings: WebhookSettings
    emit: Callable[[Match], None]
    call_later: CallLater
    stats: WebhookStats
    area_of: AreaLookup | None = None
    monotonic: Callable[[], float] = time.monotonic
    wall_ns: Callable[[], int] = time.time_ns
    rules: list[CompiledRule] = field(init=False)
    _by_entity: dict[str, tuple[CompiledRule, ...]] = field(init=False, default_factory=dict)
    _area_rules: tuple[CompiledRule, ...] = field(init=False)
    _pending: dict[tuple[int, str], _Pending] = field(init=False, default_factory=dict)
    _last_fired: dict[tuple[int, str], float] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.rules = [CompiledRule(i, r) for i, r in enumerate(self.settings.rules) if r.enabled]
        self._area_rules = tuple(r for r in self.rules if r.areas)

    @property
    def pending_holds(self) -> int:
        return len(self._pending)

    def _rules_for(self, entity_id: str) -> tuple[CompiledRule, ...]:
        rules = self._by_entity.get(entity_id)
        if rules is None:
            if len(self._by_entity) > 100_000:
                self._by_entity.clear()
            rules = self._by_entity[entity_id] = tuple(r for r in self.rules if r.selects_statically(entity_id))
        if self._area_rules and self.area_of is not None:
            areas = self.area_of(entity_id)
            if areas:
                extra = tuple(r for r in self._area_rules if r not in rules and not r.areas.isdisjoint(areas))
                if extra:
                    rules = rules + extra
        return rules

    def handle(self, change: StateChange, received_ns: int) -> None:
        rules = self._rules_for(change.entity_id)
        if not rules:
            return
        fires = change.origin not in NOT_FIRING_ORIGINS
        for rule in rules:
            key = (rule.index, change.entity_id)
            new = rule.watched(change.new_state)
            pending = self._pending.get(key)
            if pending is not None and rule.for_s and not rule.holds(new, pending.value):
                pending.handle.cancel()
                del self._pending[key]
            if not fires or not rule.transition(rule.watched(change.old_state), new):
                continue
            self.stats.matches[rule.name] += 1
            match = Match(rule.name, rule.target, change, received_ns, 0)
            if rule.for_s:
                if key not in self._pending:
                    self._schedule(rule, key, match, rule.for_s, new)
            elif rule.debounce_s:
                if pending is not None:
                    pending.handle.cancel()
                self._schedule(rule, key, match, rule.debounce_s, new)
            else:
                self._fire(rule, key, match)

    def _schedule(self, rule: CompiledRule, key: tuple[int, str], match: Match, delay: float, value: Any) -> None:
        def expire() -> None:
            current = self._pending.get(key)
            if current is not None and current.match is match:
                del self._pending[key]
                self._fire(rule, key, match)

        self._pending[key] = _Pending(self.call_later(delay, expire), match, value)

    def _fire(self, rule: CompiledRule, key: tuple[int, str], match: Match) -> None:
        if rule.throttle_s:
            now = self.monotonic()
            last = self._last_fired.get(key)
            if last is not None and now - last < rule.throttle_s:
                self.stats.throttled[rule.name] += 1
                return
            if len(self._last_fired) > 100_000:
                self._last_fired.clear()
            self._last_fired[key] = now
        fired = Match(match.rule, match.target, match.change, match.received_ns, self.wall_ns())
        self.emit(fired)

    def close(self) -> None:
        """Cancel every pending hold (at shutdown: a hold not yet complete does not fire)."""
        for pending in self._pending.values():
            pending.handle.cancel()
        self._pending.clear()
