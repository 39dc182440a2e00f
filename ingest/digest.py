"""Once a second, one message per unit with the latest value of each sensor metric that changed.

Screens never see raw readings: the API's load follows the number of units and screens, not the
reading rate (DESIGN.md).
"""

import threading
from collections.abc import Callable, Iterable
from datetime import datetime

import orjson

from ingest.payloads import Reading


class LiveDigest:
    def __init__(self, unit_of: Callable[[str], str]):
        self._unit_of = unit_of
        self._lock = threading.Lock()
        self._pending: dict[str, dict[tuple[str, str], tuple[datetime, float]]] = {}

    def add(self, readings: Iterable[Reading]) -> None:
        """Keep the newest stored reading per sensor and metric until the next digest."""
        with self._lock:
            for r in readings:
                unit = self._pending.setdefault(self._unit_of(r.sensor_id), {})
                key = (r.sensor_id, r.metric)
                held = unit.get(key)
                if held is None or held[0] <= r.time:
                    unit[key] = (r.time, r.value)

    def drain(self) -> dict[str, bytes]:
        """The digest payload of every unit with changes since the last call."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return {
            unit_id: orjson.dumps(
                {
                    "unit_id": unit_id,
                    "values": [
                        {"sensor_id": s, "metric": m, "time": t, "value": v} for (s, m), (t, v) in values.items()
                    ],
                }
            )
            for unit_id, values in pending.items()
        }
