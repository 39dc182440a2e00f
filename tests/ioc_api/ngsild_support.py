"""What the NGSI-LD tests share: a city with sensors of every kind, a camera and alerts in the
database, a client of the NGSI-LD API and the Link header that names the IOC's context.

A test module takes the fixtures by naming them in its namespace (``ld_city = ngsild_support.ld_city``);
the rows go in once per database, whichever module asks first."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest

from ioc_core.ngsild.jsonld import IOC_CONTEXT_PATH
from tests.support import Service

# (id, kind, unit, lat, lon, {metric: value})
SENSORS = [
    ("ld-air-1", "air_quality", "hai-chau", 16.0678, 108.2208, {"pm25": 41.5, "pm10": 60.0, "no2": 20.0}),
    ("ld-air-2", "air_quality", "hoa-cuong", 16.0300, 108.2200, {"pm25": 12.0, "pm10": 20.0, "no2": 8.0}),
    ("ld-water-1", "water_level", "hai-chau", 16.0700, 108.2240, {"level_m": 1.2}),
    ("ld-noise-1", "noise", "hai-chau", 16.0650, 108.2150, {"laeq_db": 71.0}),
    ("ld-rain-1", "rainfall", "hoa-cuong", 16.0310, 108.2210, {"rain_mm_h": 35.0}),
    ("ld-traffic-1", "traffic", "hai-chau", 16.0690, 108.2190, {"motorcycles": 40, "cars": 9, "speed_kmh": 31.0}),
    ("ld-light-1", "street_light", "hai-chau", 16.0660, 108.2170, {"power_w": 80.0}),
    ("ld-park-1", "parking", "hai-chau", 16.0665, 108.2175, {"occupancy": 0.5}),
]
LINK = '<{}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'

_INSERTED: dict[str, dict[str, int]] = {}  # database URL -> the alerts' ids


def _insert_city(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url, autocommit=True) as db:
        for sensor_id, kind, unit, lat, lon, values in SENSORS:
            db.execute(
                "INSERT INTO sensors (id, kind, name, unit_id, lat, lon, interval_s, status)"
                " VALUES (%s, %s, %s, %s, %s, %s, 60, 'online')",
                (sensor_id, kind, f"Station {sensor_id}", unit, lat, lon),
            )
            for metric, value in values.items():
                db.execute(
                    "INSERT INTO latest VALUES (%s, %s, now() - interval '5 seconds', %s)", (sensor_id, metric, value)
                )
                db.execute(
                    "INSERT INTO readings VALUES (now() - interval '5 seconds', %s, %s, %s)", (sensor_id, metric, value)
                )
        db.execute(
            "INSERT INTO cameras (id, name, unit_id, lat, lon, stream_url, status) VALUES"
            " ('ld-cam-1', 'Cầu Rồng', 'hai-chau', 16.0612, 108.2272, %s, 'online')",
            ("rtsp://user:secret@127.0.0.1:9/1",),  # a closed port: a vision worker gives up at once
        )
        db.execute(  # one interval's counts share its time
            "INSERT INTO latest VALUES ('ld-cam-1', 'l1_car_in', now() - interval '3 seconds', 7),"
            " ('ld-cam-1', 'l1_motorcycle_out', now() - interval '3 seconds', 30)"
        )
        public_rule = db.execute(
            "INSERT INTO rules (name, type, sensor_kind, metric, severity, params, public)"
            " VALUES ('ld PM2.5 high', 'threshold', 'air_quality', 'pm25', 'major', '{\"above\": 40}', true)"
            " RETURNING id"
        ).fetchone()[0]
        alerts = {}
        for name, rule, unit, sensor in (
            ("public", public_rule, "hai-chau", "ld-air-1"),
            ("private", None, "hai-chau", "ld-water-1"),
        ):
            alerts[name] = db.execute(
                "INSERT INTO alerts (rule_id, unit_id, source_type, source_id, severity, title, lat, lon)"
                " VALUES (%s, %s, 'sensor', %s, 'major', %s, 16.0678, 108.2208) RETURNING id",
                (rule, unit, sensor, f"ld alert {name}"),
            ).fetchone()[0]
    return alerts


@pytest.fixture(scope="module")
def ld_city(database_url: str) -> dict[str, int]:
    """Sensors of every kind with values, a camera with counts, a public and a private alert:
    the alerts' ids by "public" and "private"."""
    if database_url not in _INSERTED:  # each module that takes the fixture gets its own copy of it
        _INSERTED[database_url] = _insert_city(database_url)
    return _INSERTED[database_url]


@pytest.fixture(scope="module")
def ld(api: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{api.port}/ngsi-ld/v1", timeout=10) as client:
        yield client


def ioc_link(api: Service) -> dict[str, str]:
    """The Link header that names the IOC's context: the Smart Data Models' short terms."""
    return {"Link": LINK.format(f"http://127.0.0.1:{api.port}{IOC_CONTEXT_PATH}")}


def entity_ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {e["id"] for e in response.json()}
