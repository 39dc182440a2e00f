"""The IOC's registry, latest values and open alerts as NGSI-LD entities of the Smart Data Models.

Each registered sensor is a ``Device`` and, once it has a value and a place, an entity of its
kind's model (``MODELS``); each camera a ``Camera``, a ``Device`` and, once it has counted, a
``TrafficFlowObserved``; each open alert an ``Alert``; each unit an ``AdministrativeUnit``, which
the others name in ``refAdministrativeUnit``. Entities are built in the normalized form under the
IOC's context (``contexts/ioc-context.jsonld``); ``present.py`` writes the other forms.

A partner's entity (``tenant`` set) keeps the id, type and static attributes it was sent with;
its numeric properties are the sensor's latest values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

URN = "urn:ngsi-ld:"


@dataclass(frozen=True, slots=True)
class Model:
    """How a sensor kind maps to a Smart Data Model: its type, its metrics' attributes with their
    UN/CEFACT unit codes, and what the Device says it measures."""

    type: str
    attributes: dict[str, tuple[str, str | None]]
    controls: tuple[str, ...]
    period: bool = False  # the model needs dateObservedFrom and dateObservedTo
    devices_listed: bool = False  # the model's refDevice is a list of devices, even of one


MODELS: dict[str, Model] = {
    "air_quality": Model(
        "AirQualityObserved",
        {"pm25": ("pm25", "GQ"), "pm10": ("pm10", "GQ"), "no2": ("no2", "GQ")},
        ("airPollution",),
    ),
    "water_level": Model("WaterObserved", {"level_m": ("waterLevel", "MTR")}, ("waterLevel",)),
    "noise": Model("NoiseLevelObserved", {"laeq_db": ("LAeq", "2N")}, ("noiseLevel",), period=True),
    "rainfall": Model("WeatherObserved", {"rain_mm_h": ("precipitation", "H67")}, ("precipitation",)),
    "traffic": Model(
        "TrafficFlowObserved",
        {"speed_kmh": ("averageVehicleSpeed", "KMH")},
        ("trafficFlow", "speed"),
    ),
    "street_light": Model(
        "Streetlight", {"power_w": ("powerConsumption", "WTT")}, ("light", "power"), devices_listed=True
    ),
    "parking": Model("", {}, ("occupancy",)),  # no parking model to serve: a Device only
}
# The kind of a partner's entity, from its type: its values meet the same rules as the city's.
KIND_OF_TYPE = {m.type: kind for kind, m in MODELS.items() if m.type}
# A partner's attribute names as the city's metrics of the kind.
METRIC_OF_ATTRIBUTE = {(kind, attr): metric for kind, m in MODELS.items() for metric, (attr, _) in m.attributes.items()}
TRAFFIC_CLASSES = ("motorcycles", "cars", "trucks", "buses")
_COUNT = re.compile(r"^(?P<line>.+)_(?P<cls>[a-z]+)_(?P<dir>in|out)$")
# Alerts by the kind of what raised them: (category, subCategory) of the Alert model.
ALERT_CATEGORIES = {
    "air_quality": ("environment", "airPollution"),
    "noise": ("environment", None),
    "water_level": ("naturalDisaster", "flood"),
    "rainfall": ("weather", "rainfall"),
    "traffic": ("traffic", "trafficJam"),
    "camera": ("traffic", None),
    "street_light": ("security", None),
}
SEVERITIES = {"info": "informational", "minor": "low", "major": "high", "critical": "critical"}
# What the public (no token) sees: observations and public alerts, never devices or cameras.
PUBLIC_TYPES = frozenset({*(m.type for m in MODELS.values() if m.type), "Alert", "AdministrativeUnit"})


@dataclass(slots=True)
class Entity:
    id: str
    type: str
    attrs: dict[str, Any]  # normalized attributes by the IOC's names
    unit_id: str | None = None
    public: bool = False
    point: tuple[float, float] | None = None  # (lon, lat) of location, for geo-queries
    created: datetime | None = None
    modified: datetime | None = None
    tenant: str = ""
    source: str | None = None  # the sensor or camera whose values it shows


@dataclass(slots=True)
class Sensor:
    id: str
    kind: str
    name: str | None
    unit_id: str | None
    lat: float | None
    lon: float | None
    interval_s: float | None
    status: str
    last_seen: datetime | None
    created_at: datetime
    exercise: bool = False
    tenant: str = ""
    entity_id: str | None = None  # a partner's: the id, type and attributes it sent
    entity_type: str | None = None
    static: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Camera:
    id: str
    name: str | None
    unit_id: str | None
    lat: float | None
    lon: float | None
    status: str
    last_seen: datetime | None
    created_at: datetime
    exercise: bool = False


@dataclass(slots=True)
class Alert:
    id: int
    unit_id: str | None
    source_type: str
    source_id: str
    source_kind: str | None
    severity: str
    state: str
    title: str
    lat: float | None
    lon: float | None
    opened_at: datetime
    public: bool
    exercise: bool = False


@dataclass(slots=True)
class Unit:
    id: str
    name: str
    kind: str
    parent_id: str | None
    lon: float | None
    lat: float | None
    population: int | None
    area_km2: float | None


Latest = dict[str, tuple[datetime, float]]  # metric -> (time, value)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(raw: Any) -> datetime | None:
    """An ISO 8601 date and time as a caller wrote it (with or without its zone); None if it is none."""
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


def prop(value: Any, observed: datetime | None = None, unit_code: str | None = None) -> dict:
    out: dict[str, Any] = {"type": "Property", "value": value}
    if observed is not None:
        out["observedAt"] = iso(observed)
    if unit_code:
        out["unitCode"] = unit_code
    return out


def rel(target: str | list[str]) -> dict:
    """A Relationship to one entity or, where the model wants a list, to several."""
    return {"type": "Relationship", "object": target}


def geo(lon: float, lat: float) -> dict:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


def unit_urn(unit_id: str) -> str:
    return f"{URN}AdministrativeUnit:{unit_id}"


def device_urn(device_id: str) -> str:
    return f"{URN}Device:{device_id}"


def _placed(attrs: dict, unit_id: str | None, units: dict[str, Unit], lon: float | None, lat: float | None) -> None:
    if lon is not None and lat is not None:
        attrs["location"] = geo(lon, lat)
    if unit_id is not None:
        attrs["refAdministrativeUnit"] = rel(unit_urn(unit_id))
        if unit_id in units:
            attrs["areaServed"] = prop(units[unit_id].name)


def _point(lon: float | None, lat: float | None) -> tuple[float, float] | None:
    return None if lon is None or lat is None else (lon, lat)


def sensor_entities(sensor: Sensor, latest: Latest, units: dict[str, Unit]) -> list[Entity]:
    """The Device of a sensor and, once it has a value and a place, the entity of its model."""
    model = MODELS.get(sensor.kind)
    newest = max((t for t, _ in latest.values()), default=None)
    point = _point(sensor.lon, sensor.lat)
    common = {"unit_id": sensor.unit_id, "point": point, "created": sensor.created_at, "tenant": sensor.tenant}
    entities = []
    if sensor.tenant:
        entities.append(_partner_entity(sensor, latest, units, newest, common))
        return entities
    device = {
        "name": prop(sensor.name or sensor.id),
        "category": prop(["sensor"]),
        "controlledProperty": prop(list(model.controls) if model else []),
        "deviceState": prop(sensor.status),
    }
    if sensor.last_seen is not None:
        device["dateLastValueReported"] = prop(iso(sensor.last_seen))
    _placed(device, sensor.unit_id, units, sensor.lon, sensor.lat)
    seen = max(filter(None, (sensor.last_seen, newest)), default=sensor.created_at)
    entities.append(Entity(device_urn(sensor.id), "Device", device, modified=seen, source=sensor.id, **common))
    if model is None or not model.type or newest is None or point is None:
        return entities
    attrs: dict[str, Any] = {"name": prop(sensor.name or sensor.id), "dateObserved": prop(iso(newest))}
    for metric, (time, value) in sorted(latest.items()):
        name, unit_code = model.attributes.get(metric, (metric, None))
        attrs[name] = prop(value, time, unit_code)
    if model.period:
        start = newest - timedelta(seconds=sensor.interval_s or 0)
        attrs["dateObservedFrom"] = prop(iso(start))
        attrs["dateObservedTo"] = prop(iso(newest))
    if sensor.kind == "traffic":
        counted = [latest[c] for c in TRAFFIC_CLASSES if c in latest]
        if counted:
            attrs["intensity"] = prop(sum(v for _, v in counted), max(t for t, _ in counted))
    if sensor.kind == "street_light":
        attrs["observationDateTime"] = prop(iso(newest))
        attrs["status"] = prop("ok")
        if "power_w" in latest:
            attrs["powerState"] = prop("on" if latest["power_w"][1] > 0 else "off", latest["power_w"][0])
    attrs["refDevice"] = rel([device_urn(sensor.id)] if model.devices_listed else device_urn(sensor.id))
    _placed(attrs, sensor.unit_id, units, sensor.lon, sensor.lat)
    entity_id = f"{URN}{model.type}:{sensor.id}"
    public = not sensor.exercise
    entities.append(Entity(entity_id, model.type, attrs, public=public, modified=newest, source=sensor.id, **common))
    return entities


def _partner_entity(sensor: Sensor, latest: Latest, units: dict[str, Unit], newest, common) -> Entity:
    attrs = dict(sensor.static)
    kind = KIND_OF_TYPE.get(sensor.entity_type or "")
    names = {metric: attr for (k, attr), metric in METRIC_OF_ATTRIBUTE.items() if k == kind}
    codes = {attr: code for attr, code in (MODELS[kind].attributes.values() if kind else ())}
    for metric, (time, value) in latest.items():
        name = names.get(metric, metric)
        unit_code = attrs.get(name, {}).get("unitCode") or codes.get(name)
        attrs[name] = prop(value, time, unit_code)
    if newest is not None and (kind or "dateObserved" in attrs):
        attrs["dateObserved"] = prop(iso(newest))
    _placed(attrs, sensor.unit_id, units, sensor.lon, sensor.lat)
    return Entity(
        sensor.entity_id or device_urn(sensor.id),
        sensor.entity_type or "Device",
        attrs,
        public=True,
        modified=max(filter(None, (newest, sensor.last_seen)), default=sensor.created_at),
        source=sensor.id,
        **common,
    )


def camera_entities(camera: Camera, latest: Latest, units: dict[str, Unit]) -> list[Entity]:
    """A camera as ``Camera`` and ``Device`` (never its stream's address, which may hold its
    credentials), and its line counts as ``TrafficFlowObserved``."""
    point = _point(camera.lon, camera.lat)
    common = {"unit_id": camera.unit_id, "point": point, "created": camera.created_at, "source": camera.id}
    seen = camera.last_seen or camera.created_at
    attrs = {
        "cameraName": prop(camera.name or camera.id),
        "cameraUsage": prop("TRAFFIC"),
        "on": prop(camera.status == "online"),
        "refDevice": rel(device_urn(camera.id)),
    }
    _placed(attrs, camera.unit_id, units, camera.lon, camera.lat)
    device = {
        "name": prop(camera.name or camera.id),
        "category": prop(["sensor", "multimedia"]),
        "controlledProperty": prop(["trafficFlow"]),
        "deviceState": prop(camera.status),
    }
    if camera.last_seen is not None:
        device["dateLastValueReported"] = prop(iso(camera.last_seen))
    _placed(device, camera.unit_id, units, camera.lon, camera.lat)
    entities = [
        Entity(f"{URN}Camera:{camera.id}", "Camera", attrs, modified=seen, **common),
        Entity(device_urn(camera.id), "Device", device, modified=seen, **common),
    ]
    counts = [(t, v) for metric, (t, v) in latest.items() if _COUNT.match(metric)]
    if counts and point is not None:
        newest = max(t for t, _ in counts)
        flow = {
            "dateObserved": prop(iso(newest)),
            "intensity": prop(sum(v for t, v in counts if t == newest), newest),
            "refDevice": rel(device_urn(camera.id)),
        }
        for metric, (t, v) in sorted(latest.items()):
            if t == newest:
                flow[metric] = prop(v, t)
        _placed(flow, camera.unit_id, units, camera.lon, camera.lat)
        flow_id = f"{URN}TrafficFlowObserved:{camera.id}"
        public = not camera.exercise
        entities.append(Entity(flow_id, "TrafficFlowObserved", flow, public=public, modified=newest, **common))
    return entities


def alert_entity(alert: Alert, units: dict[str, Unit]) -> Entity:
    category, sub = ALERT_CATEGORIES.get(alert.source_kind or alert.source_type, ("security", None))
    attrs = {
        "category": prop(category),
        "severity": prop(SEVERITIES[alert.severity]),
        "description": prop(alert.title),
        "dateIssued": prop(iso(alert.opened_at)),
        "validFrom": prop(iso(alert.opened_at)),
        "alertSource": prop(device_urn(alert.source_id)),
        "alertState": prop(alert.state),
    }
    if sub:
        attrs["subCategory"] = prop(sub)
    _placed(attrs, alert.unit_id, units, alert.lon, alert.lat)
    return Entity(
        f"{URN}Alert:{alert.id}",
        "Alert",
        attrs,
        unit_id=alert.unit_id,
        public=alert.public and not alert.exercise,
        point=_point(alert.lon, alert.lat),
        created=alert.opened_at,
        modified=alert.opened_at,
        source=alert.source_id,
    )


def unit_entity(unit: Unit) -> Entity:
    attrs: dict[str, Any] = {"name": prop(unit.name), "unitKind": prop(unit.kind)}
    if unit.population is not None:
        attrs["population"] = prop(unit.population)
    if unit.area_km2 is not None:
        attrs["area"] = prop(unit.area_km2, unit_code="KMK")
    if unit.lon is not None and unit.lat is not None:
        attrs["location"] = geo(unit.lon, unit.lat)
    if unit.parent_id is not None:
        attrs["refParentUnit"] = rel(unit_urn(unit.parent_id))
    return Entity(
        unit_urn(unit.id),
        "AdministrativeUnit",
        attrs,
        unit_id=unit.id if unit.kind != "city" else None,
        public=True,
        point=_point(unit.lon, unit.lat),
    )
