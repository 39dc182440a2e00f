"""Every NGSI-LD entity type the API emits, in the keyValues and the normalized form, against the
Smart Data Models' JSON Schemas in shared/interop/smart-data-models.

Each schema is checked under the draft it declares, with its formats (date-time, uri) checked; a
remote ``$ref`` resolves to the file there that has that ``$id`` (or is that file published on
raw.githubusercontent.com), and nothing is ever fetched. The normalized form is first written as
the schemas have it, each attribute by its value, once its NGSI-LD shape has been checked."""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from jsonschema import FormatChecker
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource

from ioc_core.settings import Settings
from tests.ioc_api import ngsild_support
from tests.ioc_api.ngsild_support import SENSORS, entity_ids, ioc_link
from tests.support import Service, as_, wait_until

ld_city = ngsild_support.ld_city  # the fixtures, shared with tests/ioc_api/test_ngsild.py
ld = ngsild_support.ld

SCHEMAS = Settings().shared_dir / "interop" / "smart-data-models"
# Emitted types that no schema here describes, skipped on purpose. AdministrativeUnit (the city's
# wards and communes, which the other entities name in refAdministrativeUnit) has no Smart Data
# Models schema in shared/interop, so there is nothing to validate it against. Any other type the
# API emits must have its schema: a new type without one fails
# test_every_type_the_api_emits_has_its_schema.
WITHOUT_SCHEMA = frozenset({"AdministrativeUnit"})
FORMS = ("keyValues", "normalized")
LIMIT = 1000  # the most entities one query may return

# An attribute's NGSI-LD type and the member that holds its value.
VALUE_MEMBERS = {
    "Property": "value",
    "Relationship": "object",
    "GeoProperty": "value",
    "LanguageProperty": "languageMap",
    "ListProperty": "valueList",
}
# Members of an attribute that are neither its value nor a sub-attribute.
ATTRIBUTE_MEMBERS = frozenset(
    {
        "type",
        "observedAt",
        "unitCode",
        "datasetId",
        "createdAt",
        "modifiedAt",
        "deletedAt",
        "instanceId",
        "lang",
        "objectType",
    }
)
# Members of an entity that are not attributes (``createdAt`` and ``modifiedAt`` come with sysAttrs).
ENTITY_MEMBERS = frozenset({"@context", "id", "type", "scope", "createdAt", "modifiedAt", "deletedAt"})
UTC_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z")
# RFC 3986's URI: a scheme, then only the characters a URI may hold (any other percent-encoded).
URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?#\[\]]|%[0-9A-Fa-f]{2})*")

FORMATS = FormatChecker()
if "uri" not in FORMATS.checkers:  # jsonschema has a checker of its own only with rfc3987 installed

    @FORMATS.checks("uri")
    def _uri(instance: object) -> bool:
        return not isinstance(instance, str) or URI.fullmatch(instance) is not None


def _schema_files() -> list[Path]:
    """The shared definitions (``*-schema.json``) and each model's ``schema.json``; not the examples."""
    return sorted([*SCHEMAS.glob("*.json"), *SCHEMAS.glob("*/schema.json")])


def _addresses(schema_id: str) -> set[str]:
    """Where a schema is published: its ``$id`` (GitHub Pages) and the raw file on GitHub."""
    pages = re.fullmatch(r"https://smart-data-models\.github\.io/([^/]+)/(.+)", schema_id)
    raw = {f"https://raw.githubusercontent.com/smart-data-models/{pages[1]}/master/{pages[2]}"} if pages else set()
    return {schema_id, *raw}


def _not_fetched(uri: str) -> Resource:
    raise NoSuchResource(ref=uri)  # no network: what is not a file here does not resolve


@cache
def registry() -> Registry:
    resources = []
    for path in _schema_files():
        contents = orjson.loads(path.read_bytes())
        resource = Resource.from_contents(contents)  # the specification its "$schema" names
        resources += [(address, resource) for address in _addresses(contents["$id"])]
    return Registry(retrieve=_not_fetched).with_resources(resources).crawl()


def model_types() -> set[str]:
    """The entity types with a schema here: the folders that hold one."""
    return {path.parent.name for path in SCHEMAS.glob("*/schema.json")}


@cache
def validator(entity_type: str) -> Validator:
    schema = orjson.loads((SCHEMAS / entity_type / "schema.json").read_bytes())
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, registry=registry(), format_checker=FORMATS)


def _utc_timestamp(value: Any) -> bool:
    if not isinstance(value, str) or not UTC_TIMESTAMP.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def attribute_problems(attr: Any) -> list[str]:
    """What makes ``attr`` no NGSI-LD attribute in the normalized form: its type, its value
    member, its observedAt and, recursively, its sub-attributes."""
    if isinstance(attr, list):  # several instances of the attribute, by datasetId
        return [f"[{i}] {p}" for i, instance in enumerate(attr) for p in attribute_problems(instance)]
    if not isinstance(attr, dict):
        return [f"{attr!r} is not an NGSI-LD attribute"]
    kind = attr.get("type")
    if kind not in VALUE_MEMBERS:
        return [f"type {kind!r} is none of NGSI-LD's attribute types {', '.join(VALUE_MEMBERS)}"]
    problems = []
    if VALUE_MEMBERS[kind] not in attr:
        problems.append(f"a {kind} without its {VALUE_MEMBERS[kind]!r}")
    for member in ("observedAt", "createdAt", "modifiedAt"):
        if member in attr and not _utc_timestamp(attr[member]):
            problems.append(f"{member} {attr[member]!r} is not an ISO 8601 UTC timestamp")
    for name, sub in attr.items():
        if name not in ATTRIBUTE_MEMBERS and name != VALUE_MEMBERS[kind]:
            problems += [f"{name}: {p}" for p in attribute_problems(sub)]
    return problems


def as_key_values(entity: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A normalized entity as the schemas have it (each attribute by its value, without
    sub-attributes such as observedAt and unitCode), and what is wrong with its attributes."""
    body: dict[str, Any] = {k: entity[k] for k in ("id", "type") if k in entity}
    problems = []
    for name, attr in entity.items():
        if name in ENTITY_MEMBERS:
            continue
        found = attribute_problems(attr)
        problems += [f"at $.{name}: {p}" for p in found]
        if not found and isinstance(attr, dict):
            body[name] = attr[VALUE_MEMBERS[attr["type"]]]
    return body, problems


def _message(error: ValidationError) -> str:
    """The error, with why each branch of an anyOf or a oneOf failed."""
    branches = sorted(error.context or (), key=lambda e: (e.schema_path[0], e.json_path))
    why = "; ".join(f"{e.schema_path[0]}: {e.message}" for e in branches)
    message = f"{error.message} ({why})" if why else error.message
    return message if len(message) < 500 else message[:500] + "…"


def schema_problems(entity: dict[str, Any], form: str) -> list[str]:
    """Everything the entity's schema says of it, each with the entity, the form and the path."""
    where = f"{entity.get('id')} ({form})"
    if form == "normalized":
        body, problems = as_key_values(entity)
    else:
        body, problems = {k: v for k, v in entity.items() if k != "@context"}, []
    problems = [f"{where} {p}" for p in problems]
    for error in sorted(validator(entity["type"]).iter_errors(body), key=lambda e: e.json_path):
        schema_path = "/".join(map(str, error.absolute_schema_path))
        problems.append(f"{where} at {error.json_path} [schema {schema_path}]: {_message(error)}")
    return problems


def all_of_type(ld: httpx.Client, headers: dict[str, str], entity_type: str, form: str) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"type": entity_type, "limit": LIMIT}
    if form == "keyValues":
        params["options"] = "keyValues"
    found: list[dict[str, Any]] = []
    while True:
        response = ld.get("/entities", params={**params, "offset": len(found)}, headers=headers)
        assert response.status_code == 200, response.text
        found += response.json()
        if len(response.json()) < LIMIT:
            return found


# The fixture's entities: one at least of every type it makes.
FIXTURE_ENTITIES = {
    *(f"urn:ngsi-ld:Device:{s[0]}" for s in SENSORS),
    "urn:ngsi-ld:AirQualityObserved:ld-air-1",
    "urn:ngsi-ld:AirQualityObserved:ld-air-2",
    "urn:ngsi-ld:WaterObserved:ld-water-1",
    "urn:ngsi-ld:NoiseLevelObserved:ld-noise-1",
    "urn:ngsi-ld:WeatherObserved:ld-rain-1",
    "urn:ngsi-ld:TrafficFlowObserved:ld-traffic-1",
    "urn:ngsi-ld:TrafficFlowObserved:ld-cam-1",
    "urn:ngsi-ld:Streetlight:ld-light-1",
    "urn:ngsi-ld:Camera:ld-cam-1",
    "urn:ngsi-ld:Device:ld-cam-1",
}


@pytest.fixture(scope="module")
def city_sees(api: Service, tokens) -> dict[str, str]:
    """A city operator's headers (who sees every entity) with the IOC's context (the models' short terms)."""
    return {**ioc_link(api), **as_(tokens["city"])}


@pytest.fixture(scope="module")
def emitted_types(ld: httpx.Client, city_sees: dict[str, str], ld_city) -> list[str]:
    """The types of the entities the API emits, once the fixture's are all in."""
    expected = FIXTURE_ENTITIES | {f"urn:ngsi-ld:Alert:{i}" for i in ld_city.values()}
    params = {"idPattern": "^urn:ngsi-ld:(Alert:[0-9]+|[A-Za-z]+:ld-.*)$", "limit": LIMIT}
    wait_until(
        lambda: expected <= entity_ids(ld.get("/entities", params=params, headers=city_sees)),
        what="the fixture's entities",
    )
    response = ld.get("/types", headers=city_sees)
    assert response.status_code == 200, response.text
    return response.json()["typeList"]


def test_the_schemas_are_valid_and_resolve_every_reference_here() -> None:
    assert {"date-time", "uri"} <= set(FORMATS.checkers)  # rfc3339-validator is installed: date-times are checked
    assert model_types() >= {"AirQualityObserved", "Alert", "Camera", "Device", "Streetlight"}
    refs: set[tuple[str, str]] = set()

    def collect(node: Any, base: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add((base, node["$ref"]))
            for value in node.values():
                collect(value, base)
        elif isinstance(node, list):
            for value in node:
                collect(value, base)

    for path in _schema_files():
        schema = orjson.loads(path.read_bytes())
        validator_for(schema).check_schema(schema)
        collect(schema, schema["$id"])
    assert any(ref.startswith("https://raw.githubusercontent.com/") for _, ref in refs)
    for base, ref in sorted(refs):
        registry().resolver(base).lookup(ref)  # raises for any that would need the network


def test_the_validation_catches_what_a_model_forbids() -> None:
    """The validation works: formats, references across files and the normalized form's shape."""
    good = {
        "id": "urn:ngsi-ld:AirQualityObserved:t-1",
        "type": "AirQualityObserved",
        "dateObserved": "2025-01-01T00:00:00Z",
        "location": {"type": "Point", "coordinates": [108.2, 16.0]},
        "pm25": 4.0,
        "airQualityLevel": "good",
    }
    assert schema_problems(good, "keyValues") == []
    bad = {
        **good,
        "dateObserved": "yesterday",  # a date-time
        "pm25": -1,  # at least 0
        "refDevice": "not an id",  # an NGSI id or a URI
        "airQualityLevel": "x",  # at least 2 characters, in Environment-schema.json on raw.githubusercontent.com
        "location": {"type": "Point", "coordinates": [108.2]},  # in common-schema.json
    }
    found = "\n".join(schema_problems(bad, "keyValues"))
    for path in ("dateObserved", "pm25", "refDevice", "airQualityLevel", "location"):
        assert f"urn:ngsi-ld:AirQualityObserved:t-1 (keyValues) at $.{path} " in found, found
    normalized = {
        "id": good["id"],
        "type": "AirQualityObserved",
        "@context": "https://example.org/context.jsonld",
        "dateObserved": {"type": "Property", "value": "2025-01-01T00:00:00Z"},
        "location": {"type": "GeoProperty", "value": good["location"]},
        "pm25": {"type": "Property", "value": 4.0, "observedAt": "2025-01-01T07:00:00+07:00", "unitCode": "GQ"},
        "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:t-1"},
        "name": {"type": "LanguageProperty", "languageMap": {"vi": "Trạm"}},
        "no2": {"type": "Number", "value": 1.0},
        "so2": 3.0,
    }
    found = "\n".join(schema_problems(normalized, "normalized"))
    assert "(normalized) at $.pm25: observedAt '2025-01-01T07:00:00+07:00' is not an ISO 8601 UTC timestamp" in found
    assert "at $.no2: type 'Number' is none of" in found and "at $.so2: 3.0 is not an NGSI-LD attribute" in found
    assert "at $.name " in found  # a languageMap is no string: the schema says so
    assert as_key_values(normalized)[0]["refDevice"] == "urn:ngsi-ld:Device:t-1"


def test_every_type_the_api_emits_has_its_schema(emitted_types: list[str]) -> None:
    without = set(emitted_types) - model_types() - WITHOUT_SCHEMA
    assert not without, f"types the API emits with no Smart Data Models schema in {SCHEMAS}: {sorted(without)}"
    assert {
        "AirQualityObserved",
        "WaterObserved",
        "NoiseLevelObserved",
        "WeatherObserved",
        "TrafficFlowObserved",
        "Streetlight",
        "Camera",
        "Device",
        "Alert",
        "AdministrativeUnit",
    } <= set(emitted_types)


@pytest.mark.parametrize("form", FORMS)
def test_every_entity_the_api_emits_is_valid_in_its_smart_data_model(
    form: str, ld: httpx.Client, city_sees: dict[str, str], emitted_types: list[str], ld_city
) -> None:
    problems: list[str] = []
    validated: set[str] = set()
    for entity_type in sorted(set(emitted_types) & model_types()):  # the others fail the test above
        entities = all_of_type(ld, city_sees, entity_type, form)
        assert entities, f"no {entity_type} to validate"
        for entity in entities:
            assert entity["type"] == entity_type, entity
            problems += schema_problems(entity, form)
            validated.add(entity["id"])
    assert not problems, f"{len(problems)} problems in the {form} form:\n" + "\n".join(problems)
    assert validated >= FIXTURE_ENTITIES | {f"urn:ngsi-ld:Alert:{i}" for i in ld_city.values()}
