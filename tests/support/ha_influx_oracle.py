"""Runs inside Home Assistant's own venv: feeds states to HA's real InfluxDB ``event_to_json``.

Protocol: one JSON request per stdin line ``{"config": {...influxdb options...}, "states": [state, ...]}``;
one JSON reply per line: a list with, per state, ``null`` (HA writes nothing) or
``{"measurement", "tags", "fields"}``; for a state HA's ``State`` refuses, ``{"refused": reason, "point": ...}``
with what ``event_to_json`` makes of it when the checks are skipped. Used as the reference for our mapping.
"""

import json
import math
import sys
from datetime import UTC, datetime

from homeassistant.components.influxdb import CONFIG_SCHEMA, _generate_event_to_json
from homeassistant.core import Event, State


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    return value


def _unchecked_state(raw):
    """A State HA's constructor would refuse (entity id format, state over 255 characters), built with its
    checks skipped, so event_to_json shows what HA's rules make of the same input."""
    state = State(raw["entity_id"], "placeholder", raw["attributes"], validate_entity_id=False)
    state.state = raw["state"]
    return state


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        conf = CONFIG_SCHEMA({"influxdb": request["config"]})["influxdb"]
        event_to_json = _generate_event_to_json(conf)
        out = []
        for raw in request["states"]:
            refused = None
            try:
                state = State(raw["entity_id"], raw["state"], raw["attributes"])
            except Exception as exc:  # HA refuses the state itself: report it, and map it all the same
                refused = f"{type(exc).__name__}: {exc}"
                state = _unchecked_state(raw)
            result = event_to_json(Event("state_changed", {"new_state": state},
                                         time_fired=datetime.now(UTC)))
            point = None if result is None else {
                "measurement": str(result["measurement"]),
                "tags": {k: str(v) for k, v in result["tags"].items()},
                "fields": {k: _jsonable(v) for k, v in result["fields"].items()},
            }
            out.append(point if refused is None else {"refused": refused, "point": point})
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
