"""Home Assistant's include/exclude entity filter, with the same semantics (helpers/entityfilter.py). Pure code."""

from __future__ import annotations

import fnmatch
import re

from homeiq_daemon.config.sections import EntityFilterSettings


def glob_regex(globs: list[str]) -> re.Pattern[str] | None:
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs))


class EntityFilter:
    """Home Assistant's include/exclude rules (helpers/entityfilter.py), so a user's existing config keeps
    its meaning. Entity lists win over globs, globs over domains; see the six cases in the docs."""

    def __init__(self, include: EntityFilterSettings, exclude: EntityFilterSettings) -> None:
        self._inc_e = frozenset(include.entities)
        self._inc_d = frozenset(include.domains)
        self._inc_g = glob_regex(include.entity_globs)
        self._exc_e = frozenset(exclude.entities)
        self._exc_d = frozenset(exclude.domains)
        self._exc_g = glob_regex(exclude.entity_globs)
        self._have_include = bool(self._inc_e or self._inc_d or self._inc_g)
        self._have_exclude = bool(self._exc_e or self._exc_d or self._exc_g)
        self._cache: dict[str, bool] = {}

    def __call__(self, entity_id: str) -> bool:
        result = self._cache.get(entity_id)
        if result is None:
            if len(self._cache) > 100_000:
                self._cache.clear()
            result = self._cache[entity_id] = self._decide(entity_id)
        return result

    def _decide(self, entity_id: str) -> bool:
        domain = entity_id.partition(".")[0]
        inc_g = bool(self._inc_g and self._inc_g.match(entity_id))
        exc_g = bool(self._exc_g and self._exc_g.match(entity_id))
        if not self._have_include and not self._have_exclude:
            return True
        if self._have_include and not self._have_exclude:
            return entity_id in self._inc_e or domain in self._inc_d or inc_g
        if not self._have_include and self._have_exclude:
            return not (entity_id in self._exc_e or domain in self._exc_d or exc_g)
        if self._inc_d or self._inc_g:
            if entity_id in self._inc_e:
                return True
            if entity_id in self._exc_e:
                return False
            if inc_g:
                return True
            if exc_g:
                return False
            return domain in self._inc_d
        if self._exc_d or self._exc_g:
            if entity_id in self._inc_e:
                return True
            if entity_id in self._exc_e:
                return False
            return not (exc_g or domain in self._exc_d)
        return entity_id in self._inc_e
