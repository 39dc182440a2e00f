"""Faults under load: a killed worker, a restarted database, two workers sharing the stream.

Each test publishes a known set of messages through the fault, on its own broker, and counts
the rows: nothing lost, nothing stored twice.
"""

import re
import signal
import threading
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import psycopg

from tests.conftest import ingest_subscribed
from tests.support import Broker, Service, free_port, pg_cluster, publish_all, publisher, wait_until

MESSAGES = 20_000


def load(prefix: str, n: int = MESSAGES) -> list[tuple[str, bytes]]:
    """n single-reading messages from 100 sensors, each (sensor, metric, time) distinct."""
    start = datetime.now(UTC) - timedelta(minutes=1)
    return [
        (
            f"ioc/v1/sensors/{prefix}-{i % 100}/readings",
            orjson.dumps({"ts": (start + timedelta(milliseconds=i)).isoformat(), "values": {"pm25": i}}),
        )
        for i in range(n)
    ]


def stored(database_url: str, prefix: str) -> tuple[int, int]:
    """(rows, distinct readings) of the sensors named prefix-*; (-1, -1) while unreachable."""
    try:
        with psycopg.connect(database_url, connect_timeout=2) as conn:
            return conn.execute(
                "SELECT count(*), count(DISTINCT (sensor_id, metric, time)) FROM readings WHERE sensor_id LIKE %s",
                (prefix + "-%",),
            ).fetchone()
    except psycopg.OperationalError:
        return (-1, -1)


def start_worker(env: dict[str, str], broker: Broker, worker: int = 1) -> tuple[Service, int]:
    port = free_port()
    service = Service(
        "ingest",
        {**env, "IOC_MQTT_URL": broker.url_for("ingest"), "IOC_INGEST_METRICS_PORT": str(port - worker + 1)},
        "--worker",
        str(worker),
    ).start()
    wait_until(lambda: ingest_subscribed(port), what=f"ingest worker {worker} subscribed")
    return service, port


def publish_in_background(broker: Broker, messages: list[tuple[str, bytes]]) -> threading.Thread:
    def run() -> None:
        client = publisher(broker.port)
        publish_all(client, messages, timeout=120)
        client.disconnect()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_sigkill_in_the_middle_of_a_load_loses_and_duplicates_nothing(
    own_broker: Broker, service_env: dict[str, str], database_url: str
) -> None:
    worker, _ = start_worker(service_env, own_broker)
    sender = publish_in_background(own_broker, load("kill"))
    wait_until(lambda: stored(database_url, "kill")[0] >= MESSAGES // 4, timeout=60, what="a quarter stored")
    worker.stop(signal.SIGKILL)
    killed_at = stored(database_url, "kill")[0]
    assert killed_at < MESSAGES, "the load finished before the kill: make it larger"
    worker, _ = start_worker(service_env, own_broker)
    sender.join(120)
    wait_until(lambda: stored(database_url, "kill")[0] >= MESSAGES, timeout=90, what="every message stored")
    worker.stop()
    assert stored(database_url, "kill") == (MESSAGES, MESSAGES)


def test_database_restart_in_the_middle_of_a_load_loses_and_duplicates_nothing(
    own_broker: Broker, service_env: dict[str, str], database_url: str
) -> None:
    worker, port = start_worker(service_env, own_broker)
    sender = publish_in_background(own_broker, load("pgrestart"))
    wait_until(lambda: stored(database_url, "pgrestart")[0] >= MESSAGES // 4, timeout=60, what="a quarter stored")
    pg_cluster("stop -m fast")
    try:
        # Readiness turns false while the database is away.
        ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=10)
        assert ready.status_code == 503 and ready.json()["database"] == "down"
    finally:
        pg_cluster("start")
    sender.join(120)
    wait_until(lambda: stored(database_url, "pgrestart")[0] >= MESSAGES, timeout=90, what="every message stored")
    assert httpx.get(f"http://127.0.0.1:{port}/ready", timeout=10).status_code == 200
    worker.stop()
    assert stored(database_url, "pgrestart") == (MESSAGES, MESSAGES)
    assert "batch not stored, retrying" in worker.log()


def _messages_taken(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    return sum(float(v) for v in re.findall(r'^ioc_ingest_messages_total\{route="readings"\} (\S+)$', text, re.M))


def test_two_workers_share_the_stream_and_store_each_message_once(
    own_broker: Broker, service_env: dict[str, str], database_url: str
) -> None:
    env = {**service_env, "IOC_INGEST_WORKERS": "2"}
    first, first_port = start_worker(env, own_broker, worker=1)
    second, second_port = start_worker(env, own_broker, worker=2)
    publish_in_background(own_broker, load("share", 10_000)).join(120)
    wait_until(lambda: stored(database_url, "share")[0] >= 10_000, timeout=60, what="every message stored")
    taken = (_messages_taken(first_port), _messages_taken(second_port))
    first.stop()
    second.stop()
    assert stored(database_url, "share") == (10_000, 10_000)
    assert sum(taken) == 10_000 and min(taken) > 1_000, taken


def test_a_retired_worker_leaves_no_share_behind(
    own_broker: Broker, service_env: dict[str, str], database_url: str
) -> None:
    env = {**service_env, "IOC_INGEST_WORKERS": "2"}
    first, _ = start_worker(env, own_broker, worker=1)
    second, second_port = start_worker(env, own_broker, worker=2)
    publish_in_background(own_broker, load("retire-a", 5_000)).join(120)
    second.stop()  # away, its session still holds a share of whatever comes next
    retiring = Service(
        "ingest",
        {**env, "IOC_MQTT_URL": own_broker.url_for("ingest"), "IOC_INGEST_METRICS_PORT": str(second_port - 1)},
        "--worker",
        "2",
        "--retire",
    ).start()
    publish_in_background(own_broker, load("retire-b", 5_000)).join(120)
    assert retiring.process.wait(60) == 0
    assert '"retired":true' in retiring.log()
    # After it left, everything goes to the worker that stays.
    publish_in_background(own_broker, load("retire-c", 5_000)).join(120)
    for prefix in ("retire-a", "retire-b", "retire-c"):
        wait_until(lambda p=prefix: stored(database_url, p)[0] >= 5_000, timeout=60, what=f"{prefix} stored")
        assert stored(database_url, prefix) == (5_000, 5_000)
    first.stop()


def test_unknown_sensors_are_dead_letters_when_the_setting_says_reject(
    own_broker: Broker, service_env: dict[str, str], database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO sensors (id, kind) VALUES ('known-1', 'air')")
    worker, _ = start_worker({**service_env, "IOC_INGEST_UNKNOWN_SENSORS": "reject"}, own_broker)
    client = publisher(own_broker.port)
    body = b'{"values": {"pm25": 12}}'
    publish_all(client, [("ioc/v1/sensors/stranger-1/readings", body), ("ioc/v1/sensors/known-1/readings", body)])
    client.disconnect()
    wait_until(lambda: stored(database_url, "known")[0] == 1, what="the known sensor's reading")
    worker.stop()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT 1 FROM sensors WHERE id = 'stranger-1'").fetchall() == []
        reasons = conn.execute("SELECT reason FROM dead_letters WHERE topic = 'ioc/v1/sensors/stranger-1/readings'")
        assert reasons.fetchall() == [("unknown_sensor: sensor 'stranger-1' is not registered",)]
    assert stored(database_url, "stranger") == (0, 0)
