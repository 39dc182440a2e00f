"""An entity as a caller asked for it: normalized, keyValues (simplified) or concise, with the
attributes it named, in its terms, as JSON, JSON-LD or GeoJSON."""

from __future__ import annotations

from typing import Any

from ioc_core.ngsild.entities import Entity, iso
from ioc_core.ngsild.jsonld import Translation

ATTRIBUTE_TYPES = (
    "Property",
    "Relationship",
    "GeoProperty",
    "LanguageProperty",
    "VocabProperty",
    "ListProperty",
    "JsonProperty",
)


def _simple(attr: Any) -> Any:
    if not isinstance(attr, dict):
        return attr
    for key in ("value", "object", "languageMap", "vocab", "json", "valueList", "objectList"):
        if key in attr:
            return attr[key]
    return attr


def _concise(attr: Any) -> Any:
    """A Property without sub-attributes is its value; otherwise the type goes, the rest stays.
    A Relationship keeps ``object``, so that it is not read as a value."""
    if not isinstance(attr, dict) or attr.get("type") not in ATTRIBUTE_TYPES:
        return attr
    rest = {
        k: (_concise(v) if isinstance(v, dict) and v.get("type") in ATTRIBUTE_TYPES else v) for k, v in attr.items()
    }
    del rest["type"]
    if attr["type"] in ("Property", "GeoProperty") and list(rest) == ["value"]:
        return rest["value"]
    return rest


def attributes(entity: Entity, names: frozenset[str] | None, sys_attrs: bool = False) -> dict[str, Any]:
    """The attributes of ``entity`` that ``names`` keeps (all when None), by the IOC's names."""
    attrs = entity.attrs if names is None else {k: v for k, v in entity.attrs.items() if k in names}
    if sys_attrs:
        attrs = dict(attrs)
        if entity.created is not None:
            attrs["createdAt"] = iso(entity.created)
        if entity.modified is not None:
            attrs["modifiedAt"] = iso(entity.modified)
    return attrs


def present(
    entity: Entity,
    terms: Translation,
    form: str = "normalized",
    names: frozenset[str] | None = None,
    sys_attrs: bool = False,
) -> dict[str, Any]:
    body: dict[str, Any] = {"id": entity.id, "type": terms.to_caller(entity.type)}
    for name, attr in attributes(entity, names, sys_attrs).items():
        if name in ("createdAt", "modifiedAt"):
            body[name] = attr
        elif form == "keyValues":
            body[terms.to_caller(name)] = _simple(attr)
        elif form == "concise":
            body[terms.to_caller(name)] = _concise(attr)
        else:
            body[terms.to_caller(name)] = attr
    return body


def feature(body: dict[str, Any], geoproperty: str = "location") -> dict[str, Any]:
    """An entity (already presented) as a GeoJSON Feature."""
    properties = {k: v for k, v in body.items() if k not in ("id", "@context")}
    place = body.get(geoproperty)
    geometry = place.get("value", place) if isinstance(place, dict) and place.get("type") == "GeoProperty" else place
    return {"id": body["id"], "type": "Feature", "geometry": geometry, "properties": properties}
