"""Per-entity journal fields: a list of entity ids becomes the field repeated; dead letters name their entity."""

from __future__ import annotations

from homeiq_daemon.runtime import journal
from homeiq_daemon.sinks.influx.deadletter import line_entity_id


def test_a_list_of_entity_ids_becomes_one_field_per_entity() -> None:
    fields = journal.entry_fields("warning", {"event": "x.y", "entity_id": ["sensor.a", "light.b"], "n": [1, 2]})
    assert [v for k, v in fields if k == "HOMEIQ_ENTITY_ID"] == ["sensor.a", "light.b"]
    assert ("HOMEIQ_N", "[1,2]") in fields  # other lists stay one JSON field
    decoded = journal.decode_entry(journal.encode_entry(fields))
    assert [v for k, v in decoded if k == "HOMEIQ_ENTITY_ID"] == [b"sensor.a", b"light.b"]


def test_the_entity_of_a_line_in_has_schema() -> None:
    assert line_entity_id("°C,domain=sensor,entity_id=kitchen_temperature value=21.5 1") == "sensor.kitchen_temperature"
    assert line_entity_id(r"my\ m,entity_id=a\,b,domain=sensor,x=y value=1") == "sensor.a,b"
    assert line_entity_id("m,domain=sensor value=1 1") is None
    assert line_entity_id("m,foo=domain=x,entity_id=z value=1") is None
    assert line_entity_id("m value=1,entity_id=x,domain=y") is None  # fields are not tags
