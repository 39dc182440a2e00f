"""Which devices a message may speak for: the registry's sensors, a gateway's own, and a bounded
number of new ones.

A sensor that is not in the registry (``Intake`` looks a device up at its first message, so one
registered a moment ago is found) is registered as unregistered (``IOC_INGEST_UNKNOWN_SENSORS``
``accept``), bound to the gateway it came through, or refused (``reject``). So that a gateway or a
device inventing ids cannot fill the registry, ingest registers at most
``IOC_INGEST_MAX_UNREGISTERED`` sensors on its own in all, and at most
``IOC_INGEST_MAX_SENSORS_PER_GATEWAY`` through one gateway; past either bound the readings of
further new sensors are dead letters (``registration_limit``) until an engineer registers or
deletes some.
"""

from collections import Counter
from dataclasses import dataclass, field

from ingest.payloads import Parsed, Rejection
from ingest.registry import RegistryCache
from ioc_core.settings import Settings


@dataclass(slots=True)
class Pending:
    """The new sensors of the batch being built, counted against the bounds with the registry's."""

    sensors: dict[str, str | None] = field(default_factory=dict)  # id -> the gateway it came through
    per_gateway: Counter[str] = field(default_factory=Counter)

    def add(self, sensor_id: str, gateway_id: str | None) -> None:
        self.sensors[sensor_id] = gateway_id
        if gateway_id is not None:
            self.per_gateway[gateway_id] += 1


class Admission:
    def __init__(self, registry: RegistryCache, settings: Settings):
        self._registry = registry
        self._accept = settings.ingest_unknown_sensors == "accept"
        self._max_unregistered = settings.ingest_max_unregistered
        self._max_per_gateway = settings.ingest_max_sensors_per_gateway

    def hold_to_gateway(self, parsed: Parsed, gateway_id: str) -> None:
        """A gateway speaks only for the sensors bound to it (or not yet known): another gateway's
        sensor, or one that reports on its own, is refused, so no gateway passes as any sensor."""
        registry = self._registry
        wrong = {
            r.sensor_id
            for r in parsed.readings
            if registry.is_known(r.sensor_id) and registry.gateways.get(r.sensor_id) != gateway_id
        }
        for sensor_id in sorted(wrong):
            parsed.rejections.append(
                Rejection("wrong_gateway", f"sensor {sensor_id!r} is not bound to gateway {gateway_id!r}")
            )
        if wrong:
            parsed.readings[:] = [r for r in parsed.readings if r.sensor_id not in wrong]

    def admit(
        self, parsed: Parsed, new: dict[str, str | None], pending: Pending, gateway_id: str | None = None
    ) -> None:
        """Keep the readings of sensors that may be stored; new sensors go to ``new`` (this
        message's) and count against the bounds with ``pending`` (those of the batch so far)."""
        known, seen = self._registry.is_known, pending.sensors
        unknown = {r.sensor_id for r in parsed.readings if not known(r.sensor_id) and r.sensor_id not in seen}
        if not unknown:
            return
        refused = set()
        for sensor_id in sorted(unknown):
            rejection = self._registration(sensor_id, gateway_id, pending)
            if rejection is None:
                new[sensor_id] = gateway_id
                pending.add(sensor_id, gateway_id)
            else:
                refused.add(sensor_id)
                parsed.rejections.append(rejection)
        if refused:
            parsed.readings[:] = [r for r in parsed.readings if r.sensor_id not in refused]

    def admit_device(self, device_id: str, new: dict[str, str | None], pending: Pending) -> Rejection | None:
        """A device's status or a camera's event: known, or registered like a sensor."""
        if self._registry.is_known(device_id) or device_id in pending.sensors:
            return None
        rejection = self._registration(device_id, None, pending)
        if rejection is None:
            new[device_id] = None
            pending.add(device_id, None)
        return rejection

    def _registration(self, sensor_id: str, gateway_id: str | None, pending: Pending) -> Rejection | None:
        if not self._accept:
            return Rejection("unknown_sensor", f"sensor {sensor_id!r} is not registered")
        registry = self._registry
        if registry.unregistered + len(pending.sensors) >= self._max_unregistered:
            return Rejection(
                "registration_limit",
                f"sensor {sensor_id!r} is not registered, and ingest has registered"
                f" {self._max_unregistered} on its own already (IOC_INGEST_MAX_UNREGISTERED)",
            )
        through = registry.per_gateway[gateway_id] + pending.per_gateway[gateway_id] if gateway_id else 0
        if gateway_id is not None and through >= self._max_per_gateway:
            return Rejection(
                "registration_limit",
                f"sensor {sensor_id!r} is not registered, and gateway {gateway_id!r} has brought in"
                f" {self._max_per_gateway} already (IOC_INGEST_MAX_SENSORS_PER_GATEWAY)",
            )
        return None
