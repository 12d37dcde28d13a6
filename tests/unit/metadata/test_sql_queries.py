"""The entity list query on a real SQLite database, against a plain-Python reading of its filters: domain,
area (the entity's own or its device's, ``eff_area_id``), device, a case-insensitive ``q`` over the id and the
names, and keyset pages (``after`` the last id, ``limit``) that list every match exactly once, in id order."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeiq_daemon.metadata.sql import MIGRATIONS, EntityQuery, entity_dict, entity_query_sql
from homeiq_daemon.runtime.sqlite import add_functions
from tests.support.hypo import examples

ROWS = st.lists(st.fixed_dictionaries({
    "entity_id": st.tuples(st.sampled_from(["sensor", "light", "switch"]),
                           st.from_regex(r"[a-z]{1,4}(_[a-z0-9]{1,3})?", fullmatch=True)).map(".".join),
    "device_id": st.sampled_from([None, "d1", "d2"]),
    "eff_area_id": st.sampled_from([None, "kitchen", "office"]),
    "name": st.sampled_from([None, "Desk Lamp", "KITCHEN temp", "Übersicht"]),
    "friendly_name": st.sampled_from([None, "Hall", "desk"]),
}), max_size=25, unique_by=lambda r: r["entity_id"])
QUERIES = st.fixed_dictionaries({}, optional={
    "domain": st.sampled_from(["sensor", "light", "climate"]),
    "area_id": st.sampled_from(["kitchen", "office"]),
    "device_id": st.sampled_from(["d1", "d2"]),
    "q": st.sampled_from(["desk", "KITCHEN", "_", "sens", "zz", "ÜBER"]),
})


def database(rows: list[dict[str, Any]]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    add_functions(conn)
    for migration in MIGRATIONS:
        conn.executescript(migration)
    for row in rows:
        conn.execute(
            "INSERT INTO entities (entity_id, domain, device_id, eff_area_id, name, friendly_name) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (row["entity_id"], row["entity_id"].partition(".")[0], row["device_id"], row["eff_area_id"],
             row["name"], row["friendly_name"]),
        )
    return conn


def matches(row: dict[str, Any], query: dict[str, Any]) -> bool:
    if "domain" in query and row["entity_id"].partition(".")[0] != query["domain"]:
        return False
    if "area_id" in query and row["eff_area_id"] != query["area_id"]:
        return False
    if "device_id" in query and row["device_id"] != query["device_id"]:
        return False
    if "q" in query:
        needle = query["q"].casefold()  # Unicode case folding, on both sides
        shown = (row["name"] or row["friendly_name"] or "").casefold()
        if needle not in row["entity_id"] and needle not in shown:
            return False
    return True


@given(ROWS, QUERIES, st.integers(1, 7))
@settings(max_examples=examples(150), deadline=None)
def test_pages_list_every_match_once_in_order(rows: list[dict[str, Any]], query: dict[str, Any], limit: int) -> None:
    conn = database(rows)
    expected = sorted(r["entity_id"] for r in rows if matches(r, query))
    seen: list[str] = []
    after: str | None = None
    while True:
        sql, params = entity_query_sql(EntityQuery(after=after, limit=limit, **query))
        page = [entity_dict(r)["entity_id"] for r in conn.execute(sql, params).fetchall()]
        assert len(page) <= limit
        seen += page
        if len(page) < limit:
            break
        after = page[-1]
    assert seen == expected, query


def test_filter_values_are_parameters_never_sql() -> None:
    conn = database([{"entity_id": "sensor.a", "device_id": None, "eff_area_id": None, "name": None,
                      "friendly_name": None}])
    hostile = "x' OR '1'='1"
    sql, params = entity_query_sql(EntityQuery(domain=hostile, q=hostile, after=hostile))
    assert hostile not in sql
    assert conn.execute(sql, params).fetchall() == []


@pytest.mark.parametrize("typed", ["Übersicht", "übersicht", "ÜBERSICHT", "bersi", "Straße", "STRASSE"])
def test_q_folds_case_beyond_ascii(typed: str) -> None:
    conn = database([{"entity_id": "sensor.a", "device_id": None, "eff_area_id": None, "name": "Übersicht",
                      "friendly_name": None},
                     {"entity_id": "sensor.b", "device_id": None, "eff_area_id": None, "name": None,
                      "friendly_name": "Straße vorne"}])
    sql, params = entity_query_sql(EntityQuery(q=typed))
    found = [entity_dict(r)["entity_id"] for r in conn.execute(sql, params).fetchall()]
    assert found == (["sensor.b"] if typed.casefold().startswith("stra") else ["sensor.a"])
