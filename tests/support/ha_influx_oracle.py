"""Runs inside Home Assistant's own venv: feeds states to HA's real InfluxDB ``event_to_json``.

Protocol: one JSON request per stdin line ``{"config": {...influxdb options...}, "states": [state, ...]}``;
one JSON reply per line: a list with, per state, ``null`` (HA writes nothing) or
``{"measurement", "tags", "fields"}``. Used as the reference for our mapping.
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


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        conf = CONFIG_SCHEMA({"influxdb": request["config"]})["influxdb"]
        event_to_json = _generate_event_to_json(conf)
        out = []
        for raw in request["states"]:
            try:
                state = State(raw["entity_id"], raw["state"], raw["attributes"])
            except Exception as exc:  # report HA's refusal as data
                out.append({"error": f"{type(exc).__name__}: {exc}"})
                continue
            result = event_to_json(Event("state_changed", {"new_state": state},
                                         time_fired=datetime.now(UTC)))
            if result is None:
                out.append(None)
                continue
            out.append({"measurement": str(result["measurement"]),
                        "tags": {k: str(v) for k, v in result["tags"].items()},
                        "fields": {k: _jsonable(v) for k, v in result["fields"].items()}})
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
