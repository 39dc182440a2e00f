"""A partner's entity, as sent, turned into what the IOC keeps: a sensor of the registry (its kind
from the entity's type, its place from ``location``), its numbers as readings for ingest to
validate and store like any other, and the rest as attributes kept as given.

Pure functions, no I/O; every refusal says which attribute and why.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ioc_core.ngsild.entities import KIND_OF_TYPE, METRIC_OF_ATTRIBUTE, MODELS, parse_iso
from ioc_core.ngsild.jsonld import Translation
from ioc_core.ngsild.present import ATTRIBUTE_TYPES

_METRIC = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")
_RESERVED = frozenset({"id", "type", "@context", "scope", "createdAt", "modifiedAt", "observedAt"})
NULL = "urn:ngsi-ld:null"  # deletes an attribute in a merge


class EntityError(ValueError):
    """The entity cannot be taken as sent (a BadRequestData)."""


@dataclass(slots=True)
class Parsed:
    """An entity in the IOC's terms: what becomes the sensor, its readings and its kept attributes."""

    id: str | None
    type: str | None
    static: dict[str, Any] = field(default_factory=dict)  # normalized, by the IOC's names
    readings: dict[str | None, dict[str, float]] = field(default_factory=dict)  # observedAt (None: now) -> values
    point: tuple[float, float] | None = None  # (lon, lat)
    deleted: set[str] = field(default_factory=set)  # attributes set to null in a merge
    names: set[str] = field(default_factory=set)  # every attribute it names

    def payloads(self) -> list[dict[str, Any]]:
        """The readings as ingest's payloads (DESIGN.md): one object per observation time."""
        return [{**({"ts": ts} if ts else {}), "values": values} for ts, values in self.readings.items() if values]


def sensor_id_for(tenant: str, entity_id: str) -> str:
    """The registry id of a partner's entity: its tenant, the end of its URI, and a hash that
    keeps two URIs with the same end apart."""
    tail = _SLUG.sub("-", entity_id.rsplit(":", 1)[-1]).strip("-.")[:60] or "entity"
    return f"{tenant}.{tail}-{hashlib.sha256(entity_id.encode()).hexdigest()[:10]}"


def attribute_of(kind: str, metric: str) -> str:
    """The attribute a stored metric of a partner's sensor is shown as."""
    return next((attr for (k, attr), m in METRIC_OF_ATTRIBUTE.items() if k == kind and m == metric), metric)


def kind_of(entity_type: str) -> str:
    kind = KIND_OF_TYPE.get(entity_type)
    if kind is None:
        known = ", ".join(sorted(KIND_OF_TYPE))
        raise EntityError(f"type {entity_type!r} is not one the IOC takes from partners; these are: {known}")
    return kind


def _observed(name: str, raw: Any) -> str:
    t = parse_iso(raw)
    if t is None:
        raise EntityError(f"{name}: observedAt {raw!r} is not an ISO 8601 date and time")
    if t.tzinfo is None:
        raise EntityError(f"{name}: observedAt {raw!r} has no time zone")
    return raw


def _normalized(name: str, raw: Any) -> dict[str, Any]:
    """An attribute in its normalized form, from the normalized or the concise one."""
    if isinstance(raw, dict) and raw.get("type") in ATTRIBUTE_TYPES:
        attr = dict(raw)
    elif isinstance(raw, dict) and "object" in raw:
        attr = {"type": "Relationship", **raw}
    elif isinstance(raw, dict) and "value" in raw:
        attr = {"type": "Property", **raw}
    elif isinstance(raw, dict) and raw.get("type") == "Point":
        attr = {"type": "GeoProperty", "value": raw}
    elif isinstance(raw, dict) and "languageMap" in raw:
        attr = {"type": "LanguageProperty", **raw}
    else:
        attr = {"type": "Property", "value": raw}
    kind = attr["type"]
    needs = {"Relationship": "object", "LanguageProperty": "languageMap", "JsonProperty": "json"}.get(kind, "value")
    if kind not in ("ListProperty", "VocabProperty") and needs not in attr:
        raise EntityError(f"{name}: a {kind} has {needs!r}")
    if kind == "Relationship" and not (isinstance(attr["object"], str) and ":" in attr["object"]):
        raise EntityError(f"{name}: a Relationship's object is a URI")
    return attr


def _point(name: str, attr: dict[str, Any]) -> tuple[float, float]:
    geometry = attr.get("value")
    if not isinstance(geometry, dict) or geometry.get("type") != "Point":
        raise EntityError(f"{name}: a partner's entity stands at a GeoJSON Point")
    coordinates = geometry.get("coordinates")
    if (
        not isinstance(coordinates, list)
        or len(coordinates) not in (2, 3)
        or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in coordinates)
    ):
        raise EntityError(f"{name}: coordinates are [longitude, latitude]")
    lon, lat = float(coordinates[0]), float(coordinates[1])
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise EntityError(f"{name}: [{lon}, {lat}] is not a longitude and latitude")
    return lon, lat


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse(body: Any, terms: Translation, *, whole: bool = True, kind: str | None = None) -> Parsed:
    """``body`` (an entity, or a fragment of attributes when not ``whole``) in the IOC's terms.
    ``kind`` is the sensor kind of the entity a fragment belongs to."""
    if not isinstance(body, dict):
        raise EntityError("an entity is a JSON object")
    entity_id, entity_type = body.get("id"), body.get("type")
    if whole:
        if not isinstance(entity_id, str) or ":" not in entity_id or any(c.isspace() for c in entity_id):
            raise EntityError("id is a URI, such as urn:ngsi-ld:AirQualityObserved:station-1")
        if not isinstance(entity_type, str) or not entity_type:
            raise EntityError("type is one entity type")
        entity_type = terms.to_ioc(entity_type)
        kind = kind_of(entity_type)
    parsed = Parsed(entity_id if whole else None, entity_type if whole else None)
    codes = {attr: code for attr, code in MODELS[kind].attributes.values()} if kind else {}
    for key, raw in body.items():
        if key in _RESERVED:
            continue
        if key.startswith("@"):
            raise EntityError(f"{key} is a JSON-LD keyword, not an attribute")
        name = terms.to_ioc(key)
        parsed.names.add(name)
        if raw is None or raw == NULL or (isinstance(raw, dict) and raw.get("value") == NULL):
            parsed.deleted.add(name)
            continue
        attr = _normalized(key, raw)
        if "observedAt" in attr:
            _observed(key, attr["observedAt"])
        if name == "location":
            if attr["type"] != "GeoProperty":
                raise EntityError("location is a GeoProperty")
            parsed.point = _point(key, attr)
            continue
        value = attr.get("value")
        metric = METRIC_OF_ATTRIBUTE.get((kind, name)) if kind else None
        metric = metric or (name if _METRIC.match(name) else None)
        if attr["type"] == "Property" and _is_number(value) and metric:
            if not math.isfinite(value):
                raise EntityError(f"{key}: {value} is not a finite number")
            code = attr.get("unitCode")
            if code is not None and codes.get(name) not in (None, code):
                raise EntityError(f"{key}: the IOC keeps it in {codes[name]}, not {code}: convert it first")
            parsed.readings.setdefault(attr.get("observedAt"), {})[metric] = float(value)
        else:
            parsed.static[name] = attr
    return parsed
