"""The part of the device registry ingest needs, cached in memory and refreshed periodically:
which sensors exist, their unit (for live digests), their metrics' valid ranges, the gateway
that may report for them, and how many sensors ingest registered on its own (which admission
bounds).

A device registered since the last refresh is looked up at its first message (``learn``), so it
is stored under its own unit, kind and ranges at once, never taken for an unknown device that
ingest registers on its own and counts against its bounds."""

from collections import Counter
from collections.abc import Iterable

import psycopg

from ingest.reloading import Reloading
from ioc_core.loops import record_failure
from ioc_core.units import CITY_ID

_DEVICES = (
    "SELECT id, kind, unit_id, lat, lon, metrics, gateway_id, registered FROM sensors {where}"
    " UNION ALL SELECT id, 'camera', unit_id, lat, lon, '{{}}'::jsonb, NULL, true FROM cameras {where}"
)
_ALL = _DEVICES.format(where="")
_SOME = _DEVICES.format(where="WHERE id = ANY(%(ids)s)")


class Devices:
    """The maps of one load, filled a row at a time."""

    def __init__(self) -> None:
        self.units: dict[str, str] = {}  # device id -> unit id
        self.kinds: dict[str, str] = {}  # sensor id -> sensor kind (what rules are scoped by)
        self.ranges: dict[str, dict[str, tuple[float | None, float | None]]] = {}
        self.locations: dict[str, tuple[float, float]] = {}  # device id -> (lat, lon)
        self.gateways: dict[str, str] = {}  # sensor id -> the gateway that may report for it
        self.per_gateway: Counter[str] = Counter()  # gateway id -> sensors bound to it
        self.unregistered = 0  # sensors ingest registered on its own, not yet by an engineer

    def add(self, device_id, kind, unit_id, lat, lon, metrics, gateway_id, registered) -> None:
        self.unregistered += not registered
        self.units[device_id] = unit_id or CITY_ID
        if kind is not None:
            self.kinds[device_id] = kind
        bounds = {m: (spec.get("min"), spec.get("max")) for m, spec in (metrics or {}).items()}
        if bounds:
            self.ranges[device_id] = bounds
        if lat is not None and lon is not None:
            self.locations[device_id] = (lat, lon)
        if gateway_id is not None:
            self.gateways[device_id] = gateway_id
            self.per_gateway[gateway_id] += 1


class RegistryCache(Reloading):
    name = "registry"

    def __init__(self, url: str, refresh_s: float = 10.0):
        super().__init__(url, refresh_s)
        self._use(Devices())
        self._lookups: psycopg.Connection | None = None

    def _use(self, devices: Devices) -> None:
        """Swap in a whole load at once: readers on other threads see the old maps or the new."""
        self._devices = devices
        self.units, self.kinds, self.ranges = devices.units, devices.kinds, devices.ranges
        self.locations, self.gateways, self.per_gateway = devices.locations, devices.gateways, devices.per_gateway
        self._absent: set[str] = set()  # looked up since the last load, and not there

    @property
    def unregistered(self) -> int:
        return self._devices.unregistered

    def load(self) -> None:
        devices = Devices()
        with psycopg.connect(self._url, connect_timeout=5) as conn:
            for row in conn.execute(_ALL):
                devices.add(*row)
        self._use(devices)

    def learn(self, device_ids: Iterable[str]) -> bool:
        """Look up, in one query, the devices of a message that the cache does not hold: those the
        database has are known from now on (true if there were any); the others are not asked for
        again until the next load. If the database cannot answer, they stay unknown for now."""
        ask = [d for d in device_ids if d not in self.units and d not in self._absent]
        if not ask:
            return False
        try:
            if self._lookups is None or self._lookups.closed:
                self._lookups = psycopg.connect(self._url, connect_timeout=5, autocommit=True)
            rows = self._lookups.execute(_SOME, {"ids": ask}).fetchall()
        except psycopg.Error as exc:
            record_failure("registry-lookup", exc)
            if self._lookups is not None:
                self._lookups.close()
            return False
        for row in rows:
            self._devices.add(*row)
        self._absent.update(d for d in ask if d not in self.units)
        return bool(rows)

    def is_known(self, device_id: str) -> bool:
        return device_id in self.units

    def remember(self, device_id: str, gateway_id: str | None = None) -> None:
        """A device registered by ingest itself (once its batch is committed), known from now on."""
        if device_id not in self.units:
            self._absent.discard(device_id)
            self._devices.add(device_id, None, None, None, None, None, gateway_id, False)

    def unit_of(self, device_id: str) -> str:
        return self.units.get(device_id, CITY_ID)

    def close(self) -> None:
        if self._lookups is not None:
            self._lookups.close()
