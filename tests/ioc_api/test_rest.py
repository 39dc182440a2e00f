"""The REST API against the real database: authentication, scope, registry, history, alerts."""

from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from ingest.maintenance import roll_up
from ioc_api.security import digest
from tests.support import as_


@pytest.fixture(scope="module")
def two_units(db_module: psycopg.Connection) -> dict[str, int]:
    """A sensor, a camera and an open alert in Hải Châu and in Hòa Cường."""
    db = db_module
    ids = {}
    for unit in ("hai-chau", "hoa-cuong"):
        db.execute(
            "INSERT INTO sensors (id, kind, unit_id, lat, lon) VALUES (%s, 'water', %s, 16.06, 108.22)",
            (f"rest-{unit}", unit),
        )
        db.execute("INSERT INTO readings VALUES (now() - interval '1 minute', %s, 'level', 1.5)", (f"rest-{unit}",))
        db.execute("INSERT INTO latest VALUES (%s, 'level', now(), 1.5)", (f"rest-{unit}",))
        ids[unit] = db.execute(
            "INSERT INTO alerts (unit_id, source_type, source_id, metric, severity, title)"
            " VALUES (%s, 'sensor', %s, 'level', 'major', 'Water level above alarm I') RETURNING id",
            (unit, f"rest-{unit}"),
        ).fetchone()[0]
        db.execute(
            "INSERT INTO events (time, kind, severity, unit_id, source_type, source_id, title)"
            " VALUES (now(), 'alert.opened', 'major', %s, 'sensor', %s, 'Water level above alarm I')",
            (unit, f"rest-{unit}"),
        )
    return ids


@pytest.fixture(scope="module")
def db_module(database_url: str):
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def test_a_missing_or_bad_token_gets_401_as_problem_json(http: httpx.Client) -> None:
    for headers in ({}, as_("ioc_not-a-token")):
        response = http.get("/alerts", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["status"] == 401


def test_an_expired_or_revoked_token_gets_401(
    http: httpx.Client, db_module: psycopg.Connection, tokens: dict[str, str]
) -> None:
    user_id = db_module.execute("SELECT id FROM users WHERE username = 't-city'").fetchone()[0]
    for token, expires, revoked in (("ioc_expired-1", "-1 hour", None), ("ioc_revoked-1", "1 hour", "now")):
        db_module.execute(
            "INSERT INTO api_tokens (user_id, digest, kind, expires_at, revoked_at)"
            " VALUES (%s, %s, 'service', now() + %s::interval, %s::timestamptz)",
            (user_id, digest(token), expires, revoked),
        )
        assert http.get("/alerts", headers=as_(token)).status_code == 401


def test_login_gives_a_token_that_carries_role_and_units(http: httpx.Client, tokens: dict[str, str]) -> None:
    assert http.post("/auth/login", json={"username": "t-hai_chau", "password": "wrong"}).status_code == 401
    assert http.post("/auth/login", json={"username": "nobody", "password": "x"}).status_code == 401
    login = http.post("/auth/login", json={"username": "t-hai_chau", "password": "pw-hai_chau"})
    assert login.status_code == 200
    assert login.json()["units"] == ["hai-chau"]
    me = http.get("/auth/me", headers=as_(login.json()["access_token"])).json()
    assert me == {"username": "t-hai_chau", "role": "ward_operator", "units": ["hai-chau"]}


def test_a_ward_operator_sees_and_acts_on_its_own_unit_only(
    http: httpx.Client, tokens: dict[str, str], two_units: dict[str, int], db_module: psycopg.Connection
) -> None:
    ward = as_(tokens["hai_chau"])
    alerts = http.get("/alerts", headers=ward).json()
    assert {a["unit_id"] for a in alerts} == {"hai-chau"}
    other = two_units["hoa-cuong"]
    assert http.get(f"/alerts/{other}", headers=ward).status_code == 404
    assert http.post(f"/alerts/{other}/acknowledge", headers=ward).status_code == 404
    assert http.post(f"/alerts/{other}/comments", headers=ward, json={"body": "x"}).status_code == 404
    assert db_module.execute("SELECT state FROM alerts WHERE id = %s", (other,)).fetchone() == ("open",)
    assert http.get("/alerts", headers=ward, params={"unit": "hoa-cuong"}).status_code == 403
    events = http.get("/events", headers=ward).json()["events"]
    assert events and {e["unit_id"] for e in events} == {"hai-chau"}
    assert http.get("/events", headers=ward, params={"unit": "hoa-cuong"}).status_code == 403
    assert http.get("/sensors/rest-hoa-cuong/readings", headers=ward, params={"metric": "level"}).status_code == 404
    assert http.get("/units/hoa-cuong/readings", headers=ward, params={"metric": "level"}).status_code == 403
    assert http.get("/sensors/rest-hoa-cuong", headers=ward).status_code == 404
    latest = http.get("/latest", headers=ward).json()
    assert {f["properties"]["unit_id"] for f in latest["features"]} == {"hai-chau"}
    # The city sees both.
    city = http.get("/alerts", headers=as_(tokens["city"])).json()
    assert {"hai-chau", "hoa-cuong"} <= {a["unit_id"] for a in city}


def test_acknowledge_then_resolve_records_who_and_when_and_stores_events(
    http: httpx.Client, tokens: dict[str, str], two_units: dict[str, int], db_module: psycopg.Connection
) -> None:
    alert_id = two_units["hai-chau"]
    ward = as_(tokens["hai_chau"])
    ack = http.post(f"/alerts/{alert_id}/acknowledge", headers=ward, json={"comment": "team on the way"})
    assert ack.status_code == 200
    assert ack.json()["state"] == "acknowledged" and ack.json()["acknowledged_by"] == "t-hai_chau"
    assert [c["body"] for c in ack.json()["comments"]] == ["team on the way"]
    assert http.post(f"/alerts/{alert_id}/acknowledge", headers=ward).status_code == 409
    resolved = http.post(f"/alerts/{alert_id}/resolve", headers=ward)
    assert resolved.json()["state"] == "resolved" and resolved.json()["resolved_at"] is not None
    kinds = db_module.execute(
        "SELECT kind, data->>'by' FROM events WHERE data->>'alert_id' = %s ORDER BY id", (str(alert_id),)
    ).fetchall()
    assert kinds == [("alert.acknowledged", "t-hai_chau"), ("alert.resolved", "t-hai_chau")]
    assert db_module.execute(
        "SELECT count(*) FROM audit_log WHERE target = %s AND actor = 't-hai_chau'", (str(alert_id),)
    ).fetchone() == (2,)


def test_engineers_register_sensors_and_others_cannot(
    http: httpx.Client, tokens: dict[str, str], db_module: psycopg.Connection
) -> None:
    body = {
        "id": "reg-aq-1",
        "kind": "air_quality",
        "lat": 16.0637,
        "lon": 108.2224,
        "metrics": {"pm25": {"unit": "µg/m³", "min": 0, "max": 1000}},
    }
    assert http.post("/sensors", json=body, headers=as_(tokens["hai_chau"])).status_code == 403
    created = http.post("/sensors", json=body, headers=as_(tokens["engineer"]))
    assert created.status_code == 201
    assert created.json()["unit_id"] == "hai-chau" and created.json()["registered"] is True
    assert http.post("/sensors", json=body, headers=as_(tokens["engineer"])).status_code == 409
    hoi_an = db_module.execute("SELECT committee[1], committee[0] FROM units WHERE id = 'hoi-an'").fetchone()
    moved = http.patch("/sensors/reg-aq-1", json={"lat": hoi_an[0], "lon": hoi_an[1]}, headers=as_(tokens["engineer"]))
    assert moved.json()["unit_id"] == "hoi-an"
    listed = http.get("/sensors", params={"unit": "hoi-an", "kind": "air_quality"}, headers=as_(tokens["city"]))
    assert [s["id"] for s in listed.json()] == ["reg-aq-1"]
    bad = http.post("/sensors", json={**body, "id": "bad id!"}, headers=as_(tokens["engineer"]))
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert http.delete("/sensors/reg-aq-1", headers=as_(tokens["engineer"])).status_code == 204
    assert http.get("/sensors/reg-aq-1", headers=as_(tokens["engineer"])).status_code == 404


def test_history_reads_raw_or_rollups_by_bucket(
    http: httpx.Client, tokens: dict[str, str], db_module: psycopg.Connection
) -> None:
    db_module.execute("INSERT INTO sensors (id, kind, unit_id) VALUES ('hist-1', 'water', 'hai-chau')")
    start = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    with db_module.cursor() as cur:
        cur.executemany(
            "INSERT INTO readings VALUES (%s, 'hist-1', 'level', %s)",
            [(start + timedelta(seconds=20 * i), float(i)) for i in range(360)],  # two hours, every 20 s
        )
        cur.executemany(
            "INSERT INTO rollup_dirty (minute) VALUES (%s)", [(start + timedelta(minutes=m),) for m in range(120)]
        )
    roll_up(db_module)
    window = {"metric": "level", "start": start.isoformat(), "end": (start + timedelta(hours=2)).isoformat()}
    headers = as_(tokens["hai_chau"])
    raw = http.get("/sensors/hist-1/readings", params={**window, "bucket": "30s"}, headers=headers).json()
    minute = http.get("/sensors/hist-1/readings", params={**window, "bucket": "10m"}, headers=headers).json()
    hour = http.get("/sensors/hist-1/readings", params={**window, "bucket": "1h"}, headers=headers).json()
    assert (raw["source"], minute["source"], hour["source"]) == ("readings", "readings_1m", "readings_1h")
    assert len(raw["buckets"]) == 240 and len(minute["buckets"]) == 12 and len(hour["buckets"]) == 2
    first_hour = hour["buckets"][0]
    assert (first_hour["min"], first_hour["max"], first_hour["count"], first_hour["last"]) == (0, 179, 180, 179)
    assert first_hour["avg"] == pytest.approx(89.5)
    assert minute["buckets"][1] == {**minute["buckets"][1], "min": 30, "max": 59, "count": 30, "avg": 44.5}
    unit = http.get("/units/hai-chau/readings", params={**window, "bucket": "1h"}, headers=headers).json()
    assert unit["buckets"][0]["count"] == 180
    bad = http.get("/sensors/hist-1/readings", params={**window, "bucket": "fortnight"}, headers=headers)
    assert bad.status_code == 422


def test_events_page_with_a_cursor(http: httpx.Client, tokens: dict[str, str], db_module: psycopg.Connection) -> None:
    with db_module.cursor() as cur:
        cur.executemany(
            "INSERT INTO events (time, kind, severity, unit_id, source_type, source_id, title)"
            " VALUES (now(), 'camera.crowding', 'minor', 'thanh-khe', 'camera', 'page-cam', %s)",
            [(f"crowd {i}",) for i in range(25)],
        )
    params = {"unit": "thanh-khe", "kind": "camera.", "limit": 10}
    seen, after = [], 0
    while True:
        page = http.get("/events", params={**params, "after": after}, headers=as_(tokens["city"])).json()
        seen += [e["title"] for e in page["events"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert seen == [f"crowd {i}" for i in range(25)]


def test_dead_letters_are_for_engineers(
    http: httpx.Client, tokens: dict[str, str], db_module: psycopg.Connection
) -> None:
    db_module.execute(
        "INSERT INTO dead_letters (topic, payload, reason) VALUES ('ioc/v1/sensors/x/readings', %s, 'not_finite: x')",
        (b"\xff{bad",),
    )
    assert http.get("/dead-letters", headers=as_(tokens["city"])).status_code == 403
    letters = http.get("/dead-letters", params={"reason": "not_finite"}, headers=as_(tokens["engineer"])).json()
    assert letters[0]["payload_text"] == "\ufffd{bad" and letters[0]["payload_size"] == 5


def test_camera_snapshots_are_served_within_scope(
    http: httpx.Client, tokens: dict[str, str], db_module: psycopg.Connection, snapshot_dir
) -> None:
    db_module.execute("INSERT INTO cameras (id, unit_id) VALUES ('snap-cam', 'hai-chau')")
    (snapshot_dir / "snap-cam").mkdir()
    (snapshot_dir / "snap-cam" / "latest.jpg").write_bytes(b"\xff\xd8\xff\xe0jpeg")
    ok = http.get("/cameras/snap-cam/snapshots/latest.jpg", headers=as_(tokens["hai_chau"]))
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/jpeg" and ok.content.startswith(b"\xff\xd8")
    assert http.get("/cameras/snap-cam/snapshots/latest.jpg", headers=as_(tokens["hoa_cuong"])).status_code == 404
    assert http.get("/cameras/snap-cam/snapshots/latest.jpg", headers=as_(tokens["public"])).status_code == 403
    assert http.get("/cameras/snap-cam/snapshots/..%2f..%2fetc.jpg", headers=as_(tokens["city"])).status_code == 404
