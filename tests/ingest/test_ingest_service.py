"""The ingest worker against the real broker and database: what it stores, refuses and emits."""

from datetime import timedelta

import orjson
import psycopg
from psycopg.types.json import Jsonb

from ingest.maintenance import drop_expired
from tests.conftest import start_ingest
from tests.support import Broker, Collector, Service, free_port, publish_all, publisher, wait_until


def rows(db: psycopg.Connection, sql: str, *params) -> list[tuple]:
    return db.execute(sql, params).fetchall()


def test_bad_input_becomes_dead_letters_with_reasons_and_ingest_keeps_running(
    broker: Broker, ingest: Service, db: psycopg.Connection
) -> None:
    client = publisher(broker.port)
    messages = [
        ("ioc/v1/sensors/dl-json/readings", b"{not json"),
        ("ioc/v1/sensors/dl-nan/readings", b'{"values": {"pm25": NaN}}'),
        ("ioc/v1/sensors/dl-type/readings", b'{"values": {"pm25": "high"}}'),
        ("ioc/v1/sensors/dl-big/readings", b'{"values": {"pm25": 1}, "pad": "' + b"x" * 300_000 + b'"}'),
        ("ioc/v1/sensors/dl-topic/bogus", b'{"values": {"pm25": 1}}'),
        ("ioc/v1/sensors/dl-future/readings", b'{"ts": "2999-01-01T00:00:00Z", "values": {"pm25": 1}}'),
        (
            "ioc/v1/gateways/dl-gw/readings",
            b'[{"sensor_id": "dl-gw-ok", "values": {"pm25": 7}}, {"sensor_id": "dl-gw-bad", "values": {"pm25": []}}]',
        ),
        ("ioc/v1/devices/dl-status/status", b"sleeping"),
        ("ioc/v1/sensors/dl-after/readings", b'{"values": {"pm25": 3}}'),
    ]
    publish_all(client, messages)
    client.disconnect()
    wait_until(lambda: rows(db, "SELECT 1 FROM readings WHERE sensor_id = 'dl-after'"), what="the last good reading")

    reasons = dict(rows(db, "SELECT topic, reason FROM dead_letters WHERE topic LIKE '%%/dl-%%'"))
    assert reasons["ioc/v1/sensors/dl-json/readings"].startswith("malformed_json: ")
    assert reasons["ioc/v1/sensors/dl-nan/readings"].startswith("malformed_json: ")
    assert reasons["ioc/v1/sensors/dl-type/readings"] == "wrong_type: message: pm25 is str, not a number"
    assert reasons["ioc/v1/sensors/dl-big/readings"].startswith("oversized: 300")
    assert reasons["ioc/v1/sensors/dl-topic/bogus"].startswith("unknown_topic: ")
    assert reasons["ioc/v1/sensors/dl-future/readings"].startswith("future_timestamp: ")
    assert reasons["ioc/v1/gateways/dl-gw/readings"] == "wrong_type: [1]: pm25 is list, not a number"
    assert reasons["ioc/v1/devices/dl-status/status"].startswith("bad_status: ")
    # The raw bytes are kept, and the valid half of the gateway batch is stored.
    assert rows(db, "SELECT payload FROM dead_letters WHERE topic = 'ioc/v1/sensors/dl-json/readings'") == [
        (b"{not json",)
    ]
    assert rows(db, "SELECT value FROM readings WHERE sensor_id = 'dl-gw-ok'") == [(7.0,)]
    assert ingest.process.poll() is None


def test_registry_range_refuses_out_of_range_values(broker: Broker, ingest: Service, db: psycopg.Connection) -> None:
    db.execute(
        "INSERT INTO sensors (id, kind, metrics) VALUES ('rng-1', 'air', %s)",
        (orjson.dumps({"pm25": {"unit": "µg/m³", "min": 0, "max": 1000}}).decode(),),
    )
    client = publisher(broker.port)
    publish_all(client, [("ioc/v1/sensors/rng-1/readings", b'[{"values": {"pm25": 5000}}, {"values": {"pm25": 50}}]')])
    client.disconnect()
    wait_until(lambda: rows(db, "SELECT 1 FROM readings WHERE sensor_id = 'rng-1'"), what="the valid reading")
    assert rows(db, "SELECT value FROM readings WHERE sensor_id = 'rng-1'") == [(50.0,)]
    [(reason,)] = rows(db, "SELECT reason FROM dead_letters WHERE topic = 'ioc/v1/sensors/rng-1/readings'")
    assert reason == "out_of_range: [0]: pm25=5000 outside [0, 1000]"


def test_device_status_updates_the_registry_and_emits_one_event_per_change(
    broker: Broker, ingest: Service, db: psycopg.Connection
) -> None:
    db.execute("INSERT INTO sensors (id, kind, lat, lon) VALUES ('st-1', 'water', 16.0637, 108.2224)")
    live = Collector(broker.port, "ioc/v1/live/hai-chau/#")
    client = publisher(broker.port)
    # A retained last will repeats on every resubscription: only a change is an event.
    publish_all(client, [("ioc/v1/devices/st-1/status", b"offline")] * 2)
    publish_all(client, [("ioc/v1/devices/st-1/status", b'{"status": "online", "battery": 0.8}')])
    client.disconnect()
    wait_until(lambda: rows(db, "SELECT 1 FROM events WHERE source_id = 'st-1' AND kind = 'device.online'"))
    events = rows(db, "SELECT kind, severity, unit_id, data FROM events WHERE source_id = 'st-1' ORDER BY id")
    assert events == [
        ("device.offline", "minor", "hai-chau", {}),
        ("device.online", "info", "hai-chau", {"battery": 0.8}),
    ]
    assert rows(db, "SELECT status FROM sensors WHERE id = 'st-1'") == [("online",)]
    # Stored first, then published with its id on the unit's live topic.
    wait_until(lambda: len(live.messages) >= 2, what="live events")
    live.close()
    topics_seen = [t for t, _ in live.messages]
    assert topics_seen[:2] == ["ioc/v1/live/hai-chau/device.offline", "ioc/v1/live/hai-chau/device.online"]
    first = orjson.loads(live.messages[0][1])
    assert isinstance(first["id"], int) and first["source"] == {"type": "sensor", "id": "st-1"}


def test_camera_event_is_stored_with_its_unit_and_published(
    broker: Broker, ingest: Service, db: psycopg.Connection
) -> None:
    db.execute("INSERT INTO cameras (id, name, lat, lon) VALUES ('cam-ev-1', 'Rồng bridge', 16.0637, 108.2224)")
    client = publisher(broker.port)
    payload = {"event": "stopped_vehicle", "severity": "major", "data": {"state": "start", "snapshot": "s/1.jpg"}}
    publish_all(client, [("ioc/v1/cameras/cam-ev-1/events", orjson.dumps(payload))])
    client.disconnect()
    [row] = wait_until(
        lambda: rows(db, "SELECT kind, severity, unit_id, lat, data FROM events WHERE source_id = 'cam-ev-1'")
    )
    assert row == ("camera.stopped_vehicle", "major", "hai-chau", 16.0637, payload["data"])


def test_latest_values_and_rollups_follow_the_data(broker: Broker, ingest: Service, db: psycopg.Connection) -> None:
    client = publisher(broker.port)
    base = "2026-11-24T08:{:02d}:{:02d}Z"
    readings = [
        (base.format(0, 10), 10.0),
        (base.format(0, 40), 20.0),
        (base.format(1, 5), 30.0),
        (base.format(59, 59), 40.0),
    ]
    # Sent out of order, as devices with buffers do.
    payload = orjson.dumps([{"ts": ts, "values": {"level": v}} for ts, v in reversed(readings)])
    publish_all(client, [("ioc/v1/sensors/roll-1/readings", payload)])
    client.disconnect()
    wait_until(lambda: rows(db, "SELECT 1 FROM readings_1h WHERE sensor_id = 'roll-1'"), what="the hourly rollup")
    assert rows(db, "SELECT value FROM latest WHERE sensor_id = 'roll-1' AND metric = 'level'") == [(40.0,)]
    minutes = rows(
        db,
        "SELECT extract(minute FROM bucket)::int, avg, min, max, count, last FROM readings_1m"
        " WHERE sensor_id = 'roll-1' ORDER BY bucket",
    )
    assert minutes == [(0, 15.0, 10.0, 20.0, 2, 20.0), (1, 30.0, 30.0, 30.0, 1, 30.0), (59, 40.0, 40.0, 40.0, 1, 40.0)]
    assert rows(db, "SELECT avg, min, max, count, last FROM readings_1h WHERE sensor_id = 'roll-1'") == [
        (25.0, 10.0, 40.0, 4, 40.0)
    ]


def test_retention_drops_raw_chunks_past_the_setting(db: psycopg.Connection) -> None:
    db.execute("INSERT INTO readings VALUES (now() - interval '400 days', 'old-1', 'pm25', 1)")
    assert drop_expired(db, timedelta(days=90)) >= 1
    assert rows(db, "SELECT 1 FROM readings WHERE sensor_id = 'old-1'") == []


def test_a_gateway_speaks_only_for_its_own_sensors(broker: Broker, ingest: Service, db: psycopg.Connection) -> None:
    db.execute(
        "INSERT INTO sensors (id, kind, gateway_id) VALUES ('gwb-bound', 'air', 'gw-b1'), ('gwb-own', 'air', NULL)"
    )
    client = publisher(broker.port)
    items = [{"sensor_id": s, "values": {"pm25": 5}} for s in ("gwb-bound", "gwb-own", "gwb-new")]
    publish_all(client, [("ioc/v1/gateways/gw-b1/readings", orjson.dumps(items))])
    wait_until(lambda: rows(db, "SELECT 1 FROM readings WHERE sensor_id = 'gwb-new'"), what="the new sensor's reading")
    # Another gateway cannot speak for gw-b1's sensors, the one it just learned of included.
    later = [{"sensor_id": s, "values": {"pm25": 6}} for s in ("gwb-bound", "gwb-new")]
    publish_all(client, [("ioc/v1/gateways/gw-b2/readings", orjson.dumps(later))])
    client.disconnect()
    wait_until(
        lambda: rows(db, "SELECT 1 FROM dead_letters WHERE topic = 'ioc/v1/gateways/gw-b2/readings'"),
        what="the other gateway's dead letter",
    )

    stored = rows(db, "SELECT sensor_id, value FROM readings WHERE sensor_id LIKE 'gwb-%%' ORDER BY sensor_id")
    assert stored == [("gwb-bound", 5.0), ("gwb-new", 5.0)]
    assert rows(db, "SELECT gateway_id, registered FROM sensors WHERE id = 'gwb-new'") == [("gw-b1", False)]
    reasons = dict(rows(db, "SELECT topic, reason FROM dead_letters WHERE topic LIKE 'ioc/v1/gateways/gw-b%%'"))
    own = "wrong_gateway: sensor 'gwb-own' is not bound to gateway 'gw-b1'"  # it reports on its own topic
    assert reasons["ioc/v1/gateways/gw-b1/readings"] == own
    assert reasons["ioc/v1/gateways/gw-b2/readings"] == (
        "wrong_gateway: sensor 'gwb-bound' is not bound to gateway 'gw-b2'; "
        "wrong_gateway: sensor 'gwb-new' is not bound to gateway 'gw-b2'"
    )


def test_a_sensor_registered_after_the_last_refresh_is_itself_from_its_first_reading(
    own_broker: Broker, service_env: dict[str, str], db: psycopg.Connection
) -> None:
    """Its unit, kind and ranges apply at once (a rule of its unit and kind opens an alert), and it
    takes no place among the sensors ingest registers on its own, whose bound is reached here."""
    [(rule_id,)] = rows(
        db,
        "INSERT INTO rules (name, type, sensor_kind, metric, unit_id, severity, params)"
        " VALUES ('fresh: level above 1', 'threshold', 'fresh_water', 'level', 'hai-chau', 'major', %s) RETURNING id",
        Jsonb({"op": "above", "value": 1, "for_s": 0}),
    )
    env = {
        **service_env,
        "IOC_MQTT_URL": own_broker.url_for("ingest"),
        "IOC_INGEST_METRICS_PORT": str(free_port()),
        "IOC_INGEST_REGISTRY_REFRESH_S": "3600",
        "IOC_INGEST_MAX_UNREGISTERED": "1",
    }
    worker = start_ingest(env)
    try:
        client = publisher(own_broker.port)
        strangers = [(f"ioc/v1/sensors/fresh-stranger-{i}/readings", b'{"values": {"level": 0}}') for i in range(2)]
        publish_all(client, strangers)  # the bound of one is reached (if other tests have not already)
        wait_until(lambda: rows(db, "SELECT 1 FROM dead_letters WHERE topic LIKE '%%/fresh-stranger-%%'"))
        db.execute(
            "INSERT INTO sensors (id, kind, unit_id, metrics) VALUES"
            " ('fresh-1', 'fresh_water', 'hai-chau', %s), ('fresh-2', 'fresh_water', 'hai-chau', %s)",
            (Jsonb({}), Jsonb({"level": {"min": 0, "max": 10}})),
        )
        publish_all(
            client,
            [
                ("ioc/v1/sensors/fresh-1/readings", b'{"values": {"level": 5}}'),
                ("ioc/v1/sensors/fresh-2/readings", b'{"values": {"level": 50}}'),
            ],
        )
        client.disconnect()
        wait_until(lambda: rows(db, "SELECT 1 FROM alerts WHERE rule_id = %s", rule_id), what="the alert")
        assert rows(db, "SELECT source_id, unit_id, state FROM alerts WHERE rule_id = %s", rule_id) == [
            ("fresh-1", "hai-chau", "open")
        ]
        assert rows(db, "SELECT sensor_id, value FROM readings WHERE sensor_id LIKE 'fresh-_'") == [("fresh-1", 5.0)]
        reasons = rows(db, "SELECT reason FROM dead_letters WHERE topic LIKE '%%/fresh-_/%%'")
        assert reasons == [("out_of_range: message: level=50 outside [0, 10]",)]  # its own range applied
        assert rows(db, "SELECT registered FROM sensors WHERE id LIKE 'fresh-_'") == [(True,), (True,)]
    finally:
        worker.stop()
        db.execute("UPDATE rules SET enabled = false WHERE id = %s", (rule_id,))
        db.execute("DELETE FROM alerts WHERE rule_id = %s", (rule_id,))
