"""The NGSI-LD temporal API against the stored readings and their rollups: instances, temporal
values, lastN, aggregates per period (from the rollups and from the raw readings), a capped answer,
errors, and who sees which history."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from ingest.maintenance import roll_up
from ioc_core.ngsild.entities import iso
from ioc_core.ngsild.jsonld import IOC_CONTEXT_PATH
from tests.support import Service, as_, wait_until

AIR = "urn:ngsi-ld:AirQualityObserved:tp-air-1"
NOISE = "urn:ngsi-ld:NoiseLevelObserved:tp-noise-1"
LINK = '<{}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
MANY = 10_050  # past the 10,000 instances an attribute answers at once


@pytest.fixture(scope="module")
def history(database_url: str) -> datetime:
    """Three hours of PM2.5 every 10 minutes (values 0..17) and PM10 (twice that), rolled up;
    a noise meter with more seconds of history than one answer holds."""
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    with psycopg.connect(database_url, autocommit=True) as db:
        for sensor_id, kind, unit in (("tp-air-1", "air_quality", "hai-chau"), ("tp-noise-1", "noise", "hoa-cuong")):
            db.execute(
                "INSERT INTO sensors (id, kind, name, unit_id, lat, lon, interval_s, status)"
                " VALUES (%s, %s, %s, %s, 16.06, 108.22, 600, 'online')",
                (sensor_id, kind, sensor_id, unit),
            )
        times = [base + timedelta(minutes=10 * i) for i in range(18)]
        for i, t in enumerate(times):
            db.execute(
                "INSERT INTO readings VALUES (%s, 'tp-air-1', 'pm25', %s), (%s, 'tp-air-1', 'pm10', %s)",
                (t, float(i), t, 2.0 * i),
            )
            db.execute("INSERT INTO rollup_dirty (minute) VALUES (%s)", (t,))
        db.execute(
            "INSERT INTO latest VALUES ('tp-air-1', 'pm25', %s, 17), ('tp-air-1', 'pm10', %s, 34)",
            (times[-1], times[-1]),
        )
        db.execute(
            "INSERT INTO readings SELECT %s + s * interval '1 second', 'tp-noise-1', 'laeq_db', 50 + s %% 10"
            " FROM generate_series(0, %s - 1) s",
            (base, MANY),
        )
        db.execute("INSERT INTO latest VALUES ('tp-noise-1', 'laeq_db', %s, 59)", (base + timedelta(seconds=MANY - 1),))
        roll_up(db)
    return base


@pytest.fixture(scope="module")
def ld(api: Service, history: datetime) -> Iterator[httpx.Client]:
    link = {"Link": LINK.format(f"http://127.0.0.1:{api.port}{IOC_CONTEXT_PATH}")}
    with httpx.Client(base_url=f"http://127.0.0.1:{api.port}/ngsi-ld/v1", headers=link, timeout=30) as client:
        wait_until(lambda: client.get(f"/entities/{AIR}").status_code == 200, what="the entity")
        yield client


def between(base: datetime, hours: float = 3) -> dict[str, str]:
    return {"timerel": "between", "timeAt": iso(base), "endTimeAt": iso(base + timedelta(hours=hours))}


def test_an_attributes_history_is_its_instances_in_time_order(ld: httpx.Client, history: datetime) -> None:
    r = ld.get(f"/temporal/entities/{AIR}", params={**between(history), "attrs": "pm25"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == AIR and body["type"] == "AirQualityObserved" and "pm10" not in body
    instances = body["pm25"]
    assert [i["value"] for i in instances] == [float(i) for i in range(18)]
    assert instances[0] == {"type": "Property", "value": 0.0, "observedAt": iso(history), "unitCode": "GQ"}

    pairs = ld.get(f"/temporal/entities/{AIR}", params={**between(history), "options": "temporalValues"}).json()
    assert pairs["pm10"]["type"] == "Property"
    assert pairs["pm10"]["values"][:2] == [[0.0, iso(history)], [2.0, iso(history + timedelta(minutes=10))]]

    last = ld.get(f"/temporal/entities/{AIR}", params={"lastN": 3, "attrs": "pm25"}).json()
    assert [i["value"] for i in last["pm25"]] == [15.0, 16.0, 17.0]  # the newest three, oldest first

    before = ld.get(
        f"/temporal/entities/{AIR}",
        params={"timerel": "before", "timeAt": iso(history + timedelta(minutes=30)), "attrs": "pm25"},
    ).json()
    assert [i["value"] for i in before["pm25"]] == [0.0, 1.0, 2.0]
    after = ld.get(
        f"/temporal/entities/{AIR}",
        params={"timerel": "after", "timeAt": iso(history + timedelta(minutes=150)), "attrs": "pm25"},
    ).json()
    assert [i["value"] for i in after["pm25"]] == [15.0, 16.0, 17.0]


@pytest.mark.parametrize("period", ["PT1H", "PT20M"])  # the hourly rollup, then the raw readings
def test_aggregates_per_period_agree_with_the_readings(ld: httpx.Client, history: datetime, period: str) -> None:
    r = ld.get(
        f"/temporal/entities/{AIR}",
        params={
            **between(history),
            "options": "aggregatedValues",
            "aggrMethods": "totalCount,sum,avg,min,max",
            "aggrPeriodDuration": period,
            "attrs": "pm25",
        },
    )
    assert r.status_code == 200, r.text
    pm25 = r.json()["pm25"]
    step = 6 if period == "PT1H" else 2  # readings per period
    width = timedelta(hours=1) if period == "PT1H" else timedelta(minutes=20)
    groups = [list(range(k, k + step)) for k in range(0, 18, step)]
    assert [row[0] for row in pm25["totalCount"]] == [float(step)] * len(groups)
    assert [row[0] for row in pm25["sum"]] == [float(sum(g)) for g in groups]
    assert [row[0] for row in pm25["avg"]] == pytest.approx([sum(g) / step for g in groups])
    assert [row[0] for row in pm25["min"]] == [float(g[0]) for g in groups]
    assert [row[0] for row in pm25["max"]] == [float(g[-1]) for g in groups]
    assert pm25["avg"][1][1:] == [iso(history + width), iso(history + 2 * width)]

    whole = ld.get(
        f"/temporal/entities/{AIR}",
        params={**between(history), "options": "aggregatedValues", "aggrMethods": "max,totalCount"},
    ).json()
    assert whole["pm25"]["max"] == [[17.0, iso(history), iso(history + timedelta(hours=3))]]
    assert whole["pm10"]["totalCount"][0][0] == 18


def test_a_history_past_one_answer_is_partial_and_says_which_times(ld: httpx.Client, history: datetime) -> None:
    r = ld.get(f"/temporal/entities/{NOISE}", params={**between(history, 4), "options": "temporalValues"})
    assert r.status_code == 206, r.text
    assert r.headers["content-range"].startswith(f"date-time {iso(history)}-")
    values = r.json()["LAeq"]["values"]
    assert len(values) == 10_000 and values[-1][1] == iso(history + timedelta(seconds=9_999))
    rest = ld.get(
        f"/temporal/entities/{NOISE}",
        params={"timerel": "after", "timeAt": iso(history + timedelta(seconds=10_000)), "options": "temporalValues"},
    )
    assert rest.status_code == 200 and len(rest.json()["LAeq"]["values"]) == MANY - 10_000


def test_a_temporal_query_selects_like_entities_and_needs_a_time(ld: httpx.Client, history: datetime, tokens) -> None:
    params = {"type": "AirQualityObserved", "idPattern": "tp-", "attrs": "pm25", "lastN": 1, "count": "true"}
    r = ld.get("/temporal/entities", params=params)
    assert r.status_code == 200, r.text
    assert [(e["id"], [i["value"] for i in e["pm25"]]) for e in r.json()] == [(AIR, [17.0])]
    assert r.headers["ngsild-results-count"] == "1"
    missing = ld.get("/temporal/entities", params={"type": "AirQualityObserved"})
    assert missing.status_code == 400 and missing.json()["type"] == ERRORS + "BadRequestData"


@pytest.mark.parametrize(
    "params",
    [
        {"timerel": "between", "timeAt": "2026-01-01T00:00:00Z"},
        {"timerel": "during", "timeAt": "2026-01-01T00:00:00Z"},
        {"timerel": "after", "timeAt": "yesterday"},
        {"timerel": "after"},
        {"timeAt": "2026-01-01T00:00:00Z"},
        {"lastN": "0"},
        {"lastN": "many"},
        {"options": "aggregatedValues"},
        {"options": "aggregatedValues", "aggrMethods": "median"},
        {"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "P1M"},
        {"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "1h"},
        {"timeproperty": "modifiedAt"},
        {"timerel": "after", "timeAt": "9999-12-31T23:59:59Z"},
        {"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "P999999999W"},
        {"timerel": "between", "timeAt": "2026-01-02T00:00:00Z", "endTimeAt": "2026-01-01T00:00:00Z"},
    ],
)
def test_a_temporal_request_that_cannot_be_answered_says_why(ld: httpx.Client, params: dict[str, str]) -> None:
    r = ld.get(f"/temporal/entities/{AIR}", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["type"] == ERRORS + "BadRequestData" and r.json()["detail"]


def test_a_history_is_seen_by_those_who_see_its_entity(api: Service, history: datetime, tokens) -> None:
    base = f"http://127.0.0.1:{api.port}/ngsi-ld/v1/temporal/entities"
    params = {"lastN": 1}
    assert httpx.get(f"{base}/{AIR}", params=params).status_code == 200  # an observation is open data
    assert httpx.get(f"{base}/{AIR}", params=params, headers=as_(tokens["hai_chau"])).status_code == 200
    other = httpx.get(f"{base}/{AIR}", params=params, headers=as_(tokens["hoa_cuong"]))
    assert other.status_code == 404 and other.json()["type"] == ERRORS + "ResourceNotFound"
    device = httpx.get(f"{base}/urn:ngsi-ld:Device:tp-air-1", params=params)
    assert device.status_code == 404  # devices are not open data
    assert (
        httpx.get(f"{base}/urn:ngsi-ld:Device:nowhere", params=params, headers=as_(tokens["city"])).status_code == 404
    )
