"""The part of the device registry ingest needs, cached in memory and refreshed periodically:
which sensors exist, their unit (for live digests), their metrics' valid ranges, the gateway
that may report for them, and how many sensors ingest registered on its own (which admission
bounds)."""

from collections import Counter

import psycopg

from ingest.reloading import Reloading
from ioc_core.units import CITY_ID


class RegistryCache(Reloading):
    name = "registry"

    def __init__(self, url: str, refresh_s: float = 10.0):
        super().__init__(url, refresh_s)
        self.units: dict[str, str] = {}  # device id -> unit id
        self.kinds: dict[str, str] = {}  # sensor id -> sensor kind (what rules are scoped by)
        self.ranges: dict[str, dict[str, tuple[float | None, float | None]]] = {}
        self.locations: dict[str, tuple[float, float]] = {}  # device id -> (lat, lon)
        self.gateways: dict[str, str] = {}  # sensor id -> the gateway that may report for it
        self.unregistered = 0  # sensors ingest registered on its own, not yet by an engineer
        self.per_gateway: Counter[str] = Counter()  # gateway id -> sensors bound to it

    def load(self) -> None:
        units: dict[str, str] = {}
        ranges: dict[str, dict[str, tuple[float | None, float | None]]] = {}
        locations: dict[str, tuple[float, float]] = {}
        kinds: dict[str, str] = {}
        gateways: dict[str, str] = {}
        unregistered = 0
        with psycopg.connect(self._url, connect_timeout=5) as conn:
            for device_id, kind, unit_id, lat, lon, metrics, gateway_id, registered in conn.execute(
                "SELECT id, kind, unit_id, lat, lon, metrics, gateway_id, registered FROM sensors"
                " UNION ALL SELECT id, 'camera', unit_id, lat, lon, '{}'::jsonb, NULL, true FROM cameras"
            ):
                unregistered += not registered
                units[device_id] = unit_id or CITY_ID
                kinds[device_id] = kind
                bounds = {m: (spec.get("min"), spec.get("max")) for m, spec in (metrics or {}).items()}
                if bounds:
                    ranges[device_id] = bounds
                if lat is not None and lon is not None:
                    locations[device_id] = (lat, lon)
                if gateway_id is not None:
                    gateways[device_id] = gateway_id
        self.units, self.ranges, self.locations, self.kinds = units, ranges, locations, kinds
        self.gateways, self.unregistered, self.per_gateway = gateways, unregistered, Counter(gateways.values())

    def is_known(self, device_id: str) -> bool:
        return device_id in self.units

    def remember(self, device_id: str, gateway_id: str | None = None) -> None:
        """A device registered by ingest itself (once its batch is committed), known from now on."""
        if device_id in self.units:
            return
        self.units[device_id] = CITY_ID
        self.unregistered += 1
        if gateway_id is not None:
            self.gateways[device_id] = gateway_id
            self.per_gateway[gateway_id] += 1

    def unit_of(self, device_id: str) -> str:
        return self.units.get(device_id, CITY_ID)
