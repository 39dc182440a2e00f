"""Poison through the real broker and a worker process of its own: a message the database refuses,
one that breaks parsing through bad registry data, and a gateway inventing sensors past its bound
each become dead letters with their reason, the rest is stored, and the worker never restarts."""

import uuid
from collections.abc import Iterator

import httpx
import orjson
import psycopg
import pytest

from bench.scratch import create_database, drop_database
from tests.conftest import start_ingest
from tests.support import Broker, free_port, publish_all, publisher, wait_until


@pytest.fixture
def poison(database_url: str) -> Iterator[str]:
    tag = f"ps{uuid.uuid4().hex[:6]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"""
            CREATE FUNCTION {tag}_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.id LIKE '%-constraint' THEN
                    RAISE check_violation USING MESSAGE = 'sensor id refused by a constraint';
                END IF;
                RETURN NEW;
            END $$""")
        conn.execute(f"CREATE TRIGGER {tag} BEFORE INSERT ON sensors FOR EACH ROW EXECUTE FUNCTION {tag}_refuse()")
        # A range stored by hand around the API's validation: comparing a number with it raises.
        conn.execute(
            'INSERT INTO sensors (id, kind, metrics) VALUES (%s, \'air\', \'{"pm25": {"min": "zero"}}\')',
            (f"{tag}-broken",),
        )
    yield tag
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP TRIGGER {tag} ON sensors")
        conn.execute(f"DROP FUNCTION {tag}_refuse()")


def test_poison_messages_are_dead_letters_and_the_worker_goes_on(
    poison: str, own_broker: Broker, service_env: dict[str, str], database_url: str
) -> None:
    tag = poison
    metrics_port = free_port()
    env = {
        **service_env,
        "IOC_MQTT_URL": own_broker.url_for("ingest"),
        "IOC_INGEST_METRICS_PORT": str(metrics_port),
        "IOC_INGEST_MAX_SENSORS_PER_GATEWAY": "3",
    }
    worker = start_ingest(env)
    try:
        pid = worker.process.pid
        gateway = [{"sensor_id": f"{tag}-gw-{i}", "values": {"pm25": i}} for i in range(5)]
        messages = [
            *((f"ioc/v1/sensors/{tag}-ok-{i}/readings", orjson.dumps({"values": {"pm25": i}})) for i in range(20)),
            (f"ioc/v1/sensors/{tag}-constraint/readings", orjson.dumps({"values": {"pm25": 1}})),
            (f"ioc/v1/sensors/{tag}-broken/readings", orjson.dumps({"values": {"pm25": 1}})),
            (f"ioc/v1/gateways/{tag}-gw/readings", orjson.dumps(gateway)),
            *((f"ioc/v1/sensors/{tag}-after-{i}/readings", orjson.dumps({"values": {"pm25": i}})) for i in range(20)),
        ]
        client = publisher(own_broker.port)
        publish_all(client, messages)
        client.disconnect()

        def stored() -> int:
            with psycopg.connect(database_url) as conn:
                return conn.execute("SELECT count(*) FROM readings WHERE sensor_id LIKE %s", (tag + "-%",)).fetchone()[
                    0
                ]

        wait_until(lambda: stored() >= 43, timeout=60, what="every good reading stored")
        with psycopg.connect(database_url) as conn:
            letters = dict(
                conn.execute("SELECT topic, reason FROM dead_letters WHERE topic LIKE %s", (f"%/{tag}-%",)).fetchall()
            )
        assert stored() == 43  # 20 + 20 + the first three sensors of the gateway
        assert letters[f"ioc/v1/sensors/{tag}-constraint/readings"].startswith("refused_by_database: CheckViolation")
        assert letters[f"ioc/v1/sensors/{tag}-broken/readings"].startswith("internal_error: TypeError")
        gateway_reason = letters[f"ioc/v1/gateways/{tag}-gw/readings"]
        assert (
            gateway_reason.count("registration_limit") == 2 and "IOC_INGEST_MAX_SENSORS_PER_GATEWAY" in gateway_reason
        )
        assert worker.process.poll() is None and worker.process.pid == pid
        ready = httpx.get(f"http://127.0.0.1:{metrics_port}/ready", timeout=5)
        assert ready.status_code == 200, ready.text
    finally:
        worker.stop()


def test_a_background_loop_that_keeps_failing_turns_ready_503_until_it_recovers(service_env: dict[str, str]) -> None:
    """The rollups fail (a trigger refuses the minutes they consume) in a database of its own."""
    name, url = create_database("ioc_test_loops")
    broker = Broker()
    broker.start()
    metrics_port = free_port()
    env = {
        **service_env,
        "IOC_DATABASE_URL": url,
        "IOC_MQTT_URL": broker.url_for("ingest"),
        "IOC_INGEST_METRICS_PORT": str(metrics_port),
    }
    worker = start_ingest(env)

    def ready() -> tuple[int, dict]:
        response = httpx.get(f"http://127.0.0.1:{metrics_port}/ready", timeout=5)
        return response.status_code, response.json()

    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'rollups refused'; END $$"
            )
            conn.execute("CREATE TRIGGER refuse BEFORE DELETE ON rollup_dirty EXECUTE FUNCTION refuse()")
        _, body = wait_until(lambda: (r := ready())[0] == 503 and r, timeout=60, what="/ready 503")
        assert body["loops"]["maintenance"]["healthy"] is False
        assert "rollups refused" in body["loops"]["maintenance"]["last_error"]
        assert body["database"] == "up" and body["broker"] == "up"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TRIGGER refuse ON rollup_dirty")
        wait_until(lambda: ready()[0] == 200, timeout=60, what="/ready 200 again")
        assert worker.process.poll() is None
    finally:
        worker.stop()
        broker.remove()
        drop_database(name)
