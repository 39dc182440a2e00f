"""NGSI-LD against the real API and database: entities of the Smart Data Models, queries, forms,
JSON-LD contexts, content negotiation, errors and who sees what."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import orjson
import pytest

from ioc_core.ngsild.jsonld import CORE_URL, IOC_CONTEXT_PATH
from tests.ioc_api import ngsild_support
from tests.ioc_api.ngsild_support import LINK, SENSORS, entity_ids, ioc_link
from tests.support import Service, as_, free_port, wait_until

SDM = "https://smartdatamodels.org/"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
ld_city = ngsild_support.ld_city  # the fixtures, shared with tests/ioc_api/test_smart_data_models.py
ld = ngsild_support.ld


def fresh(ld: httpx.Client, check, what: str):
    """The entities are at most IOC_NGSILD_MAX_AGE_S old: ask until the fixture's rows are in."""
    return wait_until(check, what=what)


def test_every_kind_is_an_entity_of_its_smart_data_model_with_location_and_its_unit(
    ld: httpx.Client, api: Service, ld_city, tokens
) -> None:
    headers = {**ioc_link(api), **as_(tokens["city"])}

    def all_there():
        r = ld.get("/entities", params={"idPattern": "^urn:ngsi-ld:.*:ld-", "limit": 100}, headers=headers)
        return r.json() if len(r.json()) >= 17 else None

    found = {e["id"]: e for e in fresh(ld, all_there, "the fixture's entities")}
    expected = {
        "urn:ngsi-ld:AirQualityObserved:ld-air-1": "AirQualityObserved",
        "urn:ngsi-ld:WaterObserved:ld-water-1": "WaterObserved",
        "urn:ngsi-ld:NoiseLevelObserved:ld-noise-1": "NoiseLevelObserved",
        "urn:ngsi-ld:WeatherObserved:ld-rain-1": "WeatherObserved",
        "urn:ngsi-ld:TrafficFlowObserved:ld-traffic-1": "TrafficFlowObserved",
        "urn:ngsi-ld:TrafficFlowObserved:ld-cam-1": "TrafficFlowObserved",
        "urn:ngsi-ld:Streetlight:ld-light-1": "Streetlight",
        "urn:ngsi-ld:Camera:ld-cam-1": "Camera",
        "urn:ngsi-ld:Device:ld-park-1": "Device",
        "urn:ngsi-ld:Device:ld-cam-1": "Device",
    }
    for entity_id, entity_type in expected.items():
        assert found[entity_id]["type"] == entity_type
    air = found["urn:ngsi-ld:AirQualityObserved:ld-air-1"]
    assert air["pm25"]["type"] == "Property" and air["pm25"]["value"] == 41.5 and air["pm25"]["unitCode"] == "GQ"
    assert "observedAt" in air["pm25"]
    assert air["location"] == {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [108.2208, 16.0678]}}
    assert air["refAdministrativeUnit"] == {"type": "Relationship", "object": "urn:ngsi-ld:AdministrativeUnit:hai-chau"}
    assert air["refDevice"]["object"] == "urn:ngsi-ld:Device:ld-air-1"
    assert found["urn:ngsi-ld:TrafficFlowObserved:ld-traffic-1"]["intensity"]["value"] == 49
    assert found["urn:ngsi-ld:TrafficFlowObserved:ld-cam-1"]["intensity"]["value"] == 37
    camera = found["urn:ngsi-ld:Camera:ld-cam-1"]
    assert "secret" not in orjson.dumps(camera).decode()  # a stream's address may carry its credentials
    unit = ld.get("/entities/urn:ngsi-ld:AdministrativeUnit:hai-chau", headers=headers)
    assert unit.status_code == 200 and unit.json()["type"] == "AdministrativeUnit"


def test_open_alerts_are_alerts_and_the_public_sees_only_the_public_ones(
    ld: httpx.Client, api: Service, ld_city, tokens
) -> None:
    public, private = (f"urn:ngsi-ld:Alert:{ld_city[n]}" for n in ("public", "private"))
    h = ioc_link(api)  # "Alert" is the Smart Data Models' term, not the core context's

    def city() -> set[str]:
        return entity_ids(
            ld.get("/entities", params={"type": "Alert", "limit": 1000}, headers={**h, **as_(tokens["city"])})
        )

    fresh(ld, lambda: {public, private} <= city(), "the alerts as entities")
    alert = ld.get(f"/entities/{public}", params={"options": "keyValues"}, headers=ioc_link(api)).json()
    assert alert["category"] == "environment" and alert["subCategory"] == "airPollution"
    assert alert["severity"] == "high" and alert["alertSource"] == "urn:ngsi-ld:Device:ld-air-1"
    assert ld.get(f"/entities/{private}").status_code == 404
    anyone = entity_ids(ld.get("/entities", params={"type": "Alert"}, headers=h))
    assert public in anyone and private not in anyone


def test_the_public_sees_observations_a_ward_its_units_a_city_operator_all(
    ld: httpx.Client, api: Service, ld_city, tokens
) -> None:
    params = {"idPattern": ":ld-", "limit": 1000}
    fresh(
        ld,
        lambda: (
            "urn:ngsi-ld:Device:ld-air-2" in entity_ids(ld.get("/entities", params=params, headers=as_(tokens["city"])))
        ),
        "entities",
    )
    anyone = entity_ids(ld.get("/entities", params=params))
    assert "urn:ngsi-ld:AirQualityObserved:ld-air-1" in anyone
    assert not any(":Device:" in i or ":Camera:" in i for i in anyone)  # no devices, no cameras
    ward = entity_ids(ld.get("/entities", params=params, headers=as_(tokens["hai_chau"])))
    assert "urn:ngsi-ld:Device:ld-air-1" in ward and "urn:ngsi-ld:Camera:ld-cam-1" in ward
    assert not any("ld-air-2" in i or "ld-rain-1" in i for i in ward)  # Hòa Cường's
    assert (
        ld.get("/entities/urn:ngsi-ld:AirQualityObserved:ld-air-2", headers=as_(tokens["hai_chau"])).status_code == 404
    )
    bad = ld.get("/entities", params=params, headers=as_("ioc_not-a-token"))
    assert bad.status_code == 401 and bad.json()["type"] == ERRORS + "Unauthorized"


def test_names_follow_the_callers_context(ld: httpx.Client, api: Service, ld_city) -> None:
    entity = "/entities/urn:ngsi-ld:AirQualityObserved:ld-air-1"
    fresh(ld, lambda: ld.get(entity).status_code == 200, "the air station")
    core = ld.get(entity)  # no context: the core's, so the models' terms are full IRIs
    assert core.headers["content-type"] == "application/json"
    assert CORE_URL in core.headers["link"]
    assert core.json()["type"] == SDM + "dataModel.Environment/AirQualityObserved"
    assert SDM + "dataModel.Environment/pm25" in core.json()
    short = ld.get(entity, headers=ioc_link(api))
    assert short.json()["type"] == "AirQualityObserved" and "pm25" in short.json()
    as_ld = ld.get(entity, headers={**ioc_link(api), "Accept": "application/ld+json"})
    assert as_ld.headers["content-type"] == "application/ld+json"
    assert as_ld.json()["@context"].endswith(IOC_CONTEXT_PATH) and "link" not in as_ld.headers
    by_iri = ld.get("/entities", params={"type": SDM + "dataModel.Environment/AirQualityObserved", "limit": 1000})
    assert "urn:ngsi-ld:AirQualityObserved:ld-air-1" in entity_ids(by_iri)


class _ContextServer(BaseHTTPRequestHandler):
    document: ClassVar[dict] = {
        "@context": {
            "Aria": SDM + "dataModel.Environment/AirQualityObserved",
            "fine": SDM + "dataModel.Environment/pm25",
        }
    }
    fetched = 0

    def do_GET(self) -> None:
        type(self).fetched += 1
        body = orjson.dumps(self.document)
        self.send_response(200)
        self.send_header("Content-Type", "application/ld+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_a_callers_own_context_is_fetched_once_and_its_terms_used(ld: httpx.Client, ld_city) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _ContextServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        link = {"Link": LINK.format(f"http://127.0.0.1:{server.server_port}/mine.jsonld")}
        fresh(ld, lambda: ld.get("/entities", params={"type": "Aria"}, headers=link).json(), "entities by my terms")
        found = ld.get(
            "/entities", params={"type": "Aria", "q": "fine>40", "options": "keyValues"}, headers=link
        ).json()
        assert [e["id"] for e in found] == ["urn:ngsi-ld:AirQualityObserved:ld-air-1"]
        assert found[0]["type"] == "Aria" and found[0]["fine"] == 41.5
        assert _ContextServer.fetched == 1
    finally:
        server.shutdown()
    gone = ld.get(
        "/entities", params={"type": "X"}, headers={"Link": LINK.format(f"http://127.0.0.1:{free_port()}/c.jsonld")}
    )
    assert gone.status_code == 503 and gone.json()["type"] == ERRORS + "LdContextNotAvailable"


def test_q_geo_queries_attrs_and_pages(ld: httpx.Client, api: Service, ld_city, tokens) -> None:
    h = {**ioc_link(api), **as_(tokens["city"])}
    fresh(
        ld,
        lambda: len(ld.get("/entities", params={"type": "AirQualityObserved", "limit": 1000}, headers=h).json()) >= 2,
        "air",
    )

    def ids(**params) -> set[str]:
        return {
            i.rsplit(":", 1)[1] for i in entity_ids(ld.get("/entities", params={"limit": 1000, **params}, headers=h))
        } & {s[0] for s in SENSORS}

    assert ids(type="AirQualityObserved", q="pm25>40") == {"ld-air-1"}
    assert ids(type="AirQualityObserved", q="pm25==10..20;no2<10") == {"ld-air-2"}
    assert ids(type="AirQualityObserved", q='pm25>100|areaServed=="Phường Hòa Cường"') <= {"ld-air-2"}
    assert ids(
        type="AirQualityObserved,WaterObserved", q='refAdministrativeUnit=="urn:ngsi-ld:AdministrativeUnit:hai-chau"'
    ) == {
        "ld-air-1",
        "ld-water-1",
    }
    assert ids(type="AirQualityObserved", q='pm25.unitCode=="GQ";pm25.observedAt>2020-01-01T00:00:00Z') == {
        "ld-air-1",
        "ld-air-2",
    }
    near = ids(
        type="AirQualityObserved", georel="near;maxDistance==500", geometry="Point", coordinates="[108.2210,16.0680]"
    )
    assert near == {"ld-air-1"}
    box = "[[[108.21,16.06],[108.23,16.06],[108.23,16.075],[108.21,16.075],[108.21,16.06]]]"
    assert ids(idPattern=":ld-", georel="within", geometry="Polygon", coordinates=box) >= {
        "ld-air-1",
        "ld-water-1",
        "ld-noise-1",
    }
    picked = ld.get(
        "/entities/urn:ngsi-ld:AirQualityObserved:ld-air-1",
        params={"attrs": "pm25,location", "options": "keyValues"},
        headers=h,
    ).json()
    assert set(picked) == {"id", "type", "pm25", "location"} and picked["pm25"] == 41.5
    concise = ld.get(
        "/entities/urn:ngsi-ld:AirQualityObserved:ld-air-1", params={"format": "concise"}, headers=h
    ).json()
    assert concise["name"] == "Station ld-air-1" and concise["pm25"]["value"] == 41.5 and "type" not in concise["pm25"]
    assert concise["refDevice"] == {"object": "urn:ngsi-ld:Device:ld-air-1"}
    page = ld.get("/entities", params={"idPattern": ":ld-", "limit": 2, "count": "true"}, headers=h)
    total = int(page.headers["ngsild-results-count"])
    assert total >= 10 and len(page.json()) == 2 and 'rel="next"' in page.headers["link"]
    everything = []
    for offset in range(0, total, 4):
        everything += ld.get("/entities", params={"idPattern": ":ld-", "limit": 4, "offset": offset}, headers=h).json()
    assert len({e["id"] for e in everything}) == total
    only_count = ld.get("/entities", params={"type": "AirQualityObserved", "limit": 0, "count": "true"}, headers=h)
    assert only_count.json() == [] and int(only_count.headers["ngsild-results-count"]) >= 2
    geo = ld.get(
        "/entities", params={"type": "AirQualityObserved", "limit": 5}, headers={**h, "Accept": "application/geo+json"}
    )
    assert geo.headers["content-type"] == "application/geo+json" and geo.json()["type"] == "FeatureCollection"
    assert geo.json()["features"][0]["geometry"]["type"] == "Point"


@pytest.mark.parametrize(
    ("params", "headers", "status", "kind"),
    [
        ({}, {}, 400, "BadRequestData"),  # no filter at all
        ({"type": "AirQualityObserved", "limit": "1001"}, {}, 400, "BadRequestData"),
        ({"type": "AirQualityObserved", "limit": "x"}, {}, 400, "BadRequestData"),
        ({"type": "AirQualityObserved", "q": "pm25>"}, {}, 400, "BadRequestData"),
        ({"type": "AirQualityObserved", "q": "(pm25>1"}, {}, 400, "BadRequestData"),
        (
            {"type": "AirQualityObserved", "georel": "near", "geometry": "Point", "coordinates": "[1,2]"},
            {},
            400,
            "BadRequestData",
        ),
        (
            {"type": "AirQualityObserved", "georel": "within", "geometry": "Polygon", "coordinates": "[[1,2]"},
            {},
            400,
            "BadRequestData",
        ),
        ({"type": "AirQualityObserved", "idPattern": "("}, {}, 400, "BadRequestData"),
        ({"type": "AirQualityObserved", "idPattern": "(a+)+$"}, {}, 400, "BadRequestData"),  # backtracks for ever
        ({"type": "AirQualityObserved", "q": 'name~="(x|xx)*y"'}, {}, 400, "BadRequestData"),
        ({"type": "AirQualityObserved", "q": "(" * 40 + "pm25>1" + ")" * 40}, {}, 400, "BadRequestData"),
        (
            {"type": "AirQualityObserved", "georel": "near;maxDistance==10", "geometry": "Point", "coordinates": "[]"},
            {},
            400,
            "BadRequestData",
        ),
        (
            {"type": "AirQualityObserved", "georel": "within", "geometry": "MultiPoint", "coordinates": "[]"},
            {},
            400,
            "BadRequestData",
        ),
        ({"type": "AirQualityObserved", "options": "bogus"}, {}, 400, "BadRequestData"),
        ({"type": "AirQualityObserved"}, {"Accept": "text/html"}, 406, "NotAcceptable"),
        ({"type": "AirQualityObserved"}, {"NGSILD-Tenant": "nobody-here"}, 404, "NonexistentTenant"),
        (
            {"type": "AirQualityObserved"},
            {"Link": LINK.format("http://a/1") + ", " + LINK.format("http://a/2")},
            400,
            "BadRequestData",
        ),
    ],
)
def test_bad_requests_get_problem_details_of_their_ngsi_ld_type(
    ld: httpx.Client, params, headers, status, kind
) -> None:
    response = ld.get("/entities", params=params, headers=headers)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == ERRORS + kind and body["status"] == status and body["detail"]


@pytest.mark.parametrize("path", ["/types/@id", "/attributes/@type", "/entities?type=@id", "/entities?attrs=@value"])
def test_json_ld_keywords_are_no_names_here(ld: httpx.Client, path: str) -> None:
    assert ld.get(path).status_code in (200, 404)  # nothing of that name, never a failure


def test_a_missing_entity_is_resource_not_found(ld: httpx.Client) -> None:
    for path in ("/entities/urn:ngsi-ld:AirQualityObserved:nope", "/types/Nope", "/attributes/nope"):
        response = ld.get(path)
        assert response.status_code == 404 and response.json()["type"] == ERRORS + "ResourceNotFound"
    assert ld.get("/entities/not-a-uri").json()["type"] == ERRORS + "BadRequestData"


def test_types_and_attributes_describe_what_the_caller_sees(ld: httpx.Client, api: Service, ld_city, tokens) -> None:
    h = ioc_link(api)
    fresh(ld, lambda: "Streetlight" in ld.get("/types", headers=h).json()["typeList"], "types")
    public = ld.get("/types", headers=h).json()
    assert public["type"] == "EntityTypeList" and "Device" not in public["typeList"]
    city = ld.get("/types", headers={**h, **as_(tokens["city"])}).json()["typeList"]
    assert {"Device", "Camera", "AirQualityObserved", "Alert"} <= set(city)
    details = ld.get("/types", params={"details": "true"}, headers=h).json()
    air = next(t for t in details if t["typeName"] == "AirQualityObserved")
    assert air["id"] == SDM + "dataModel.Environment/AirQualityObserved" and "pm25" in air["attributeNames"]
    info = ld.get("/types/AirQualityObserved", headers=h).json()
    assert info["type"] == "EntityTypeInfo" and info["entityCount"] >= 2
    assert {"attributeName": "location", "attributeTypes": ["GeoProperty"]}.items() <= next(
        a for a in info["attributeDetails"] if a["attributeName"] == "location"
    ).items()
    attrs = ld.get("/attributes", headers=h).json()
    assert attrs["type"] == "AttributeList" and "pm25" in attrs["attributeList"]
    pm25 = ld.get("/attributes/pm25", headers=h).json()
    assert pm25["attributeCount"] >= 2 and pm25["typeNames"] == ["AirQualityObserved"]


def test_the_iocs_context_is_served(ld: httpx.Client) -> None:
    response = ld.get("/jsonldContexts/ioc-context.jsonld")
    assert response.status_code == 200 and response.headers["content-type"] == "application/ld+json"
    assert response.json()["@context"][1]["pm25"] == SDM + "dataModel.Environment/pm25"
