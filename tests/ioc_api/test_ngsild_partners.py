"""Partners provide data through NGSI-LD, each in its own tenant: their entities become sensors
whose numbers travel the broker to ingest, to be validated, stored, judged by the rules and
dead-lettered like any reading; creates, merges, replaces, deletes and batches; what is refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import psycopg
import pytest

from ioc_core.ngsild.entities import iso
from ioc_core.ngsild.jsonld import IOC_CONTEXT_PATH
from ioc_core.ngsild.store import APPLICATION_NAME
from ioc_core.ngsild.writes import sensor_id_for
from tests.conftest import ingest_reloaded
from tests.support import Broker, Service, as_, start_api, wait_until

LINK = '<{}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
TENANT, OTHER = "quang-nam-aq", "hue-water"
STATION = "urn:ngsi-ld:AirQualityObserved:qn-station-1"


@pytest.fixture(scope="module")
def partners(database_url: str) -> dict[str, str]:
    from ioc_api.cli import create_token, create_user

    with psycopg.connect(database_url, autocommit=True) as conn:
        create_user(conn, "t-partner-qn", "partner", [], "pw-partner", tenant=TENANT)
        create_user(conn, "t-partner-hue", "partner", [], "pw-partner", tenant=OTHER)
        return {
            TENANT: create_token(conn, "t-partner-qn", "tests", 1),
            OTHER: create_token(conn, "t-partner-hue", "tests", 1),
        }


@pytest.fixture(scope="module")
def ld(api: Service, ingest: Service) -> Iterator[httpx.Client]:
    link = {"Link": LINK.format(f"http://127.0.0.1:{api.port}{IOC_CONTEXT_PATH}")}
    with httpx.Client(base_url=f"http://127.0.0.1:{api.port}/ngsi-ld/v1", headers=link, timeout=30) as client:
        yield client


def station(entity_id: str = STATION, pm25: float = 55.0, at: datetime | None = None, **extra) -> dict:
    at = at or datetime.now(UTC) - timedelta(seconds=10)
    return {
        "id": entity_id,
        "type": "AirQualityObserved",
        "name": {"type": "Property", "value": "Trạm Điện Bàn"},
        "pm25": {"type": "Property", "value": pm25, "observedAt": iso(at), "unitCode": "GQ"},
        "pm10": {"type": "Property", "value": 70.0, "observedAt": iso(at)},
        "dataProvider": {"type": "Property", "value": "Quảng Nam DONRE"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [108.2208, 16.0678]}},
        **extra,
    }


def write_headers(token: str, tenant: str = TENANT) -> dict[str, str]:
    return {**as_(token), "NGSILD-Tenant": tenant, "Content-Type": "application/json"}


def read_headers(token: str, tenant: str = TENANT) -> dict[str, str]:
    return {**as_(token), "NGSILD-Tenant": tenant}


def stored(database_url: str, sensor_id: str, metric: str) -> list[float]:
    with psycopg.connect(database_url) as db:
        rows = db.execute(
            "SELECT value FROM readings WHERE sensor_id = %s AND metric = %s ORDER BY time", (sensor_id, metric)
        ).fetchall()
    return [r[0] for r in rows]


def test_a_partners_station_is_a_sensor_whose_numbers_ingest_stores_and_the_rules_judge(
    ld: httpx.Client, partners, database_url: str, service_env, tokens
) -> None:
    """A rule of the city's (PM2.5 above 150) opens an alert on the partner's station."""
    with psycopg.connect(database_url, autocommit=True) as db:
        rule = db.execute(
            "INSERT INTO rules (name, type, sensor_kind, metric, severity, params) VALUES ('partner PM2.5 very high',"
            " 'threshold', 'air_quality', 'pm25', 'major', '{\"op\": \"above\", \"value\": 150}') RETURNING id"
        ).fetchone()[0]
    ingest_reloaded(int(service_env["IOC_INGEST_METRICS_PORT"]))
    try:
        _station_judged(ld, partners, database_url)
    finally:
        with psycopg.connect(database_url, autocommit=True) as db:
            db.execute("DELETE FROM rules WHERE id = %s", (rule,))
    _station_shown(ld, partners, tokens)


def _station_judged(ld: httpx.Client, partners, database_url: str) -> None:
    r = ld.post("/entities", content=orjson.dumps(station(pm25=180.0)), headers=write_headers(partners[TENANT]))
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/ngsi-ld/v1/entities/{STATION}"
    sensor_id = sensor_id_for(TENANT, STATION)
    assert wait_until(lambda: stored(database_url, sensor_id, "pm25") == [180.0], what="the partner's PM2.5 stored")
    with psycopg.connect(database_url) as db:
        kind, unit, tenant = db.execute(
            "SELECT kind, unit_id, tenant FROM sensors WHERE id = %s", (sensor_id,)
        ).fetchone()
        assert (kind, unit, tenant) == ("air_quality", "hai-chau", TENANT)  # placed by its location
        alert = wait_until(
            lambda: db.execute("SELECT severity FROM alerts WHERE source_id = %s", (sensor_id,)).fetchone(),
            what="the rule's alert on the partner's station",
        )
        assert alert == ("major",)


def _station_shown(ld: httpx.Client, partners, tokens) -> None:
    def shown() -> dict | None:
        got = ld.get(f"/entities/{STATION}", headers={**as_(partners[TENANT]), "NGSILD-Tenant": TENANT})
        return got.json() if got.status_code == 200 and "pm25" in got.json() else None

    entity = wait_until(shown, what="the entity with its value")
    assert entity["type"] == "AirQualityObserved" and entity["pm25"]["value"] == 180.0
    assert entity["pm25"]["unitCode"] == "GQ" and entity["dataProvider"]["value"] == "Quảng Nam DONRE"
    assert entity["refAdministrativeUnit"]["object"] == "urn:ngsi-ld:AdministrativeUnit:hai-chau"
    # The city reads the partner's tenant; the other partner and the public do not see it.
    city = ld.get(f"/entities/{STATION}", headers={**as_(tokens["city"]), "NGSILD-Tenant": TENANT})
    assert city.status_code == 200
    other = ld.get(f"/entities/{STATION}", headers={**as_(partners[OTHER]), "NGSILD-Tenant": TENANT})
    assert other.status_code == 404
    assert ld.get(f"/entities/{STATION}", headers={"NGSILD-Tenant": TENANT}).status_code == 404
    assert ld.get(f"/entities/{STATION}").status_code == 404  # not in the city's own tenant


def test_a_reading_ingest_refuses_is_a_dead_letter_with_its_reason(
    ld: httpx.Client, partners, database_url: str
) -> None:
    entity_id = "urn:ngsi-ld:AirQualityObserved:qn-station-skewed"
    ahead = datetime.now(UTC) + timedelta(days=1)
    r = ld.post(
        "/entities", content=orjson.dumps(station(entity_id, at=ahead)), headers=write_headers(partners[TENANT])
    )
    assert r.status_code == 201, r.text
    topic = f"ioc/v1/sensors/{sensor_id_for(TENANT, entity_id)}/readings"

    def dead() -> list[str]:
        with psycopg.connect(database_url) as db:
            return [row[0] for row in db.execute("SELECT reason FROM dead_letters WHERE topic = %s", (topic,))]

    reasons = wait_until(dead, what="the skewed reading dead-lettered")
    assert any("future_timestamp" in reason for reason in reasons), reasons


def test_merges_replaces_appends_and_deletes(ld: httpx.Client, partners, database_url: str) -> None:
    entity_id = "urn:ngsi-ld:WaterObserved:qn-river-1"
    sensor_id = sensor_id_for(TENANT, entity_id)
    headers = write_headers(partners[TENANT])
    body = {
        "id": entity_id,
        "type": "WaterObserved",
        "waterLevel": {"type": "Property", "value": 1.5, "unitCode": "MTR"},
        "dataProvider": "Quảng Nam DONRE",  # concise: a Property
        "refPointOfInterest": {"object": "urn:ngsi-ld:PointOfInterest:cau-giao-thuy"},  # concise Relationship
        "location": {"type": "Point", "coordinates": [108.2240, 16.0700]},
    }
    assert ld.post("/entities", content=orjson.dumps(body), headers=headers).status_code == 201
    assert wait_until(lambda: stored(database_url, sensor_id, "level_m") == [1.5], what="the level stored")

    update = ld.patch(
        f"/entities/{entity_id}/attrs",
        content=orjson.dumps({"waterLevel": 1.7, "salinity": 0.3}),
        headers=headers,
    )
    assert update.status_code == 207, update.text
    assert update.json()["notUpdated"] == [{"attributeName": "salinity", "reason": "the entity has no such attribute"}]
    assert wait_until(lambda: stored(database_url, sensor_id, "level_m") == [1.5, 1.7], what="the update stored")

    merge = ld.patch(
        f"/entities/{entity_id}",
        content=orjson.dumps({"dataProvider": None, "alternateName": "Sông Thu Bồn"}),
        headers={**headers, "Content-Type": "application/merge-patch+json"},
    )
    assert merge.status_code == 204, merge.text
    append = ld.post(
        f"/entities/{entity_id}/attrs",
        params={"options": "noOverwrite"},
        content=orjson.dumps({"alternateName": "changed", "description": "Trạm đo mực nước"}),
        headers=headers,
    )
    assert append.status_code == 207 and [n["attributeName"] for n in append.json()["notUpdated"]] == ["alternateName"]
    read = ld.get(f"/entities/{entity_id}", params={"options": "keyValues"}, headers=read_headers(partners[TENANT]))
    entity = read.json()
    assert "dataProvider" not in entity and entity["alternateName"] == "Sông Thu Bồn"
    assert entity["description"] == "Trạm đo mực nước"
    assert entity["refPointOfInterest"] == "urn:ngsi-ld:PointOfInterest:cau-giao-thuy"

    assert ld.delete(f"/entities/{entity_id}/attrs/description", headers=headers).status_code == 204
    assert ld.delete(f"/entities/{entity_id}/attrs/description", headers=headers).status_code == 404
    replace = ld.put(
        f"/entities/{entity_id}",
        content=orjson.dumps({"type": "WaterObserved", "waterLevel": 2.0, "location": body["location"]}),
        headers=headers,
    )
    assert replace.status_code == 204, replace.text
    entity = ld.get(
        f"/entities/{entity_id}", params={"options": "keyValues"}, headers=read_headers(partners[TENANT])
    ).json()
    assert "alternateName" not in entity and "refPointOfInterest" not in entity
    assert ld.delete(f"/entities/{entity_id}", headers=headers).status_code == 204
    gone = ld.get(f"/entities/{entity_id}", headers=read_headers(partners[TENANT]))
    assert gone.status_code == 404 and gone.json()["type"] == ERRORS + "ResourceNotFound"
    assert stored(database_url, sensor_id, "level_m")[:2] == [1.5, 1.7]  # its history stays


def test_a_batch_writes_what_it_can_and_names_what_it_refused(ld: httpx.Client, partners) -> None:
    headers = write_headers(partners[OTHER], OTHER)
    good = [station(f"urn:ngsi-ld:AirQualityObserved:hue-{i}", pm25=10.0 + i) for i in range(2)]
    bad = {**station("urn:ngsi-ld:Parking:hue-1"), "type": "OffStreetParking"}
    r = ld.post("/entityOperations/upsert", content=orjson.dumps([*good, bad]), headers=headers)
    assert r.status_code == 207, r.text
    assert r.json()["success"] == [e["id"] for e in good]
    [error] = r.json()["errors"]
    assert error["entityId"] == bad["id"] and error["error"]["type"] == ERRORS + "BadRequestData"
    again = ld.post(
        "/entityOperations/upsert", params={"options": "update"}, content=orjson.dumps(good), headers=headers
    )
    assert again.status_code == 204, again.text
    created = ld.post("/entityOperations/create", content=orjson.dumps(good[:1]), headers=headers)
    assert created.status_code == 207 and created.json()["errors"][0]["error"]["type"] == ERRORS + "AlreadyExists"
    ids = [e["id"] for e in good]
    listed = ld.get("/entities", params={"type": "AirQualityObserved"}, headers=read_headers(partners[OTHER], OTHER))
    assert {e["id"] for e in listed.json()} >= set(ids)
    deleted = ld.post("/entityOperations/delete", content=orjson.dumps([*ids, "urn:ngsi-ld:X:none"]), headers=headers)
    assert deleted.status_code == 207 and deleted.json()["success"] == ids


def test_a_write_holds_when_the_database_ended_the_entities_connection(
    ld: httpx.Client, partners, database_url: str
) -> None:
    """A database restart ends the connection the entities are rebuilt on: the next write and
    read make a new one rather than fail."""
    with psycopg.connect(database_url, autocommit=True) as db:
        ended = db.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            (APPLICATION_NAME,),
        ).fetchone()[0]
    assert ended == 1
    entity_id = "urn:ngsi-ld:AirQualityObserved:qn-after-restart"
    r = ld.post("/entities", content=orjson.dumps(station(entity_id)), headers=write_headers(partners[TENANT]))
    assert r.status_code == 201, r.text
    assert ld.get(f"/entities/{entity_id}", headers=read_headers(partners[TENANT])).status_code == 200


def test_when_the_broker_is_away_a_create_is_undone_and_may_be_sent_again(
    service_env: dict[str, str], own_broker: Broker, partners, database_url: str
) -> None:
    """The readings could not be handed over: the answer says so (503), and the entity it would
    have created is not there, so that the same request succeeds once the broker is back."""
    api = start_api({**service_env, "IOC_MQTT_URL": own_broker.url_for("api")})
    entity_id = "urn:ngsi-ld:AirQualityObserved:qn-broker-away"
    url = f"http://127.0.0.1:{api.port}/ngsi-ld/v1/entities"
    link = LINK.format(f"http://127.0.0.1:{api.port}{IOC_CONTEXT_PATH}")
    body, headers = orjson.dumps(station(entity_id)), {**write_headers(partners[TENANT]), "Link": link}
    try:
        own_broker.stop()
        r = httpx.post(url, content=body, headers=headers, timeout=30)
        assert r.status_code == 503, r.text
        assert r.json()["type"] == ERRORS + "InternalError" and "send them again" in r.json()["detail"]
        with psycopg.connect(database_url) as db:
            assert db.execute("SELECT 1 FROM ngsi_entities WHERE id = %s", (entity_id,)).fetchone() is None
        own_broker.start()
        again = wait_until(
            lambda: (a := httpx.post(url, content=body, headers=headers, timeout=30)).status_code == 201 and a,
            what="the same create taken once the broker is back",
        )
        assert again.status_code == 201
    finally:
        api.stop()
    with psycopg.connect(database_url) as db:  # (its readings went to this test's broker, which no ingest reads)
        assert db.execute("SELECT 1 FROM ngsi_entities WHERE id = %s", (entity_id,)).fetchone() is not None


def test_a_partners_token_serves_ngsi_ld_alone_and_the_public_sees_no_partners_station(
    api: Service, partners, tokens, ld: httpx.Client, database_url: str
) -> None:
    base = f"http://127.0.0.1:{api.port}/api/v1"
    refused = httpx.get(f"{base}/latest", headers=as_(partners[TENANT]))
    assert refused.status_code == 403 and "NGSI-LD" in refused.json()["detail"]
    entity_id = "urn:ngsi-ld:AirQualityObserved:qn-not-public"
    assert ld.post("/entities", content=orjson.dumps(station(entity_id)), headers=write_headers(partners[TENANT]))
    sensor_id = sensor_id_for(TENANT, entity_id)
    assert wait_until(lambda: stored(database_url, sensor_id, "pm25"), what="its reading")

    def ids(token: str) -> set[str]:
        return {f["id"] for f in httpx.get(f"{base}/latest", headers=as_(token)).json()["features"]}

    assert wait_until(lambda: sensor_id in ids(tokens["city"]), what="the city's staff see it")
    assert sensor_id not in ids(tokens["public"])
    history = httpx.get(
        f"{base}/sensors/{sensor_id}/readings", params={"metric": "pm25"}, headers=as_(tokens["public"])
    )
    assert history.status_code == 404


def test_json_ld_bodies_carry_their_context(ld: httpx.Client, api: Service, partners) -> None:
    body = {
        **station("urn:ngsi-ld:AirQualityObserved:qn-ld-1"),
        "@context": f"http://127.0.0.1:{api.port}{IOC_CONTEXT_PATH}",
    }
    headers = {**as_(partners[TENANT]), "Content-Type": "application/ld+json"}
    r = httpx.post(f"http://127.0.0.1:{api.port}/ngsi-ld/v1/entities", content=orjson.dumps(body), headers=headers)
    assert r.status_code == 201, r.text
    # Without the IOC's context "AirQualityObserved" is not the Smart Data Model's type.
    bare = {k: v for k, v in body.items() if k != "@context"} | {"id": "urn:ngsi-ld:AirQualityObserved:qn-ld-2"}
    r = httpx.post(
        f"http://127.0.0.1:{api.port}/ngsi-ld/v1/entities",
        content=orjson.dumps(bare),
        headers={**as_(partners[TENANT]), "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and "not one the IOC takes" in r.json()["detail"]


@pytest.mark.parametrize(
    ("change", "status", "kind"),
    [
        ({"content_type": "text/plain"}, 415, "UnsupportedMediaType"),
        ({"raw": b"{not json"}, 400, "InvalidRequest"),
        ({"body": {"type": "AirQualityObserved"}}, 400, "BadRequestData"),
        ({"body": {"id": "urn:ngsi-ld:X:1", "type": "Building"}}, 400, "BadRequestData"),
        ({"attr": {"pm25": {"type": "Property", "value": 0.05, "unitCode": "GP"}}}, 400, "BadRequestData"),
        ({"attr": {"pm25": {"type": "Property", "value": 5, "observedAt": "yesterday"}}}, 400, "BadRequestData"),
        (
            {"attr": {"location": {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": []}}}},
            400,
            "BadRequestData",
        ),
        ({"attr": {"refDevice": {"type": "Relationship", "object": "not a uri"}}}, 400, "BadRequestData"),
        ({"attr": {"@context": "https://example.org/ctx.jsonld"}}, 400, "BadRequestData"),
        ({"token": None}, 401, "Unauthorized"),
        ({"token": "city"}, 403, "AccessDenied"),
        ({"tenant": OTHER}, 403, "AccessDenied"),
        ({"again": True}, 409, "AlreadyExists"),
    ],
)
def test_what_a_partner_cannot_write_is_refused_with_its_reason(
    ld: httpx.Client, partners, tokens, change: dict, status: int, kind: str
) -> None:
    entity_id = f"urn:ngsi-ld:AirQualityObserved:qn-refused-{status}-{kind}"
    body = change.get("body") or {**station(entity_id), **change.get("attr", {})}
    token = change.get("token", TENANT)
    headers = {
        "Content-Type": change.get("content_type", "application/json"),
        "NGSILD-Tenant": change.get("tenant", TENANT),
    }
    if token is not None:
        headers.update(as_(partners[TENANT] if token == TENANT else tokens[token]))
    content = change.get("raw") or orjson.dumps(body)
    if change.get("again"):
        assert ld.post("/entities", content=content, headers=headers).status_code == 201
    r = ld.post("/entities", content=content, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json()["type"] == ERRORS + kind and r.json()["detail"]
