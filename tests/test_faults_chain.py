"""The whole chain rides through its faults under a steady load: ingest killed outright, the
broker restarted, the database restarted and the API restarted, one after another while sensors
keep publishing and some of them cross an alert threshold.

Afterwards every reading is stored exactly once, every alert is opened exactly once, and a screen
that reconnects with ``since`` after each drop has received every one of those alerts' events.
"""

import asyncio
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import paho.mqtt.client as paho
import psycopg
import pytest
import websockets

from ioc_api.cli import create_token, create_user
from tests.ingest.test_faults import start_worker
from tests.support import Broker, login, pg_cluster, start_api, wait_until

SENSORS = 100
MESSAGES = 24_000  # at 600 messages/s: 40 s of load
RATE = 600
BREACHING = 40  # sensors whose level crosses the rule's threshold, one after another


class SteadyLoad(threading.Thread):
    """Publishes MESSAGES readings at RATE through whatever happens to the broker: a persistent
    session (MQTT 3.1.1, clean_session false) and an unbounded queue, so paho resends what was in
    flight and sends what waited once the broker is back."""

    def __init__(self, port: int, prefix: str) -> None:
        super().__init__(daemon=True)
        self.prefix, self.sent, self.acked = prefix, 0, 0
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=f"load-{prefix}", protocol=paho.MQTTv311, clean_session=False
        )
        login(self.client, "simulator")
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.start_time = datetime.now(UTC) - timedelta(minutes=5)
        self.breach_every = MESSAGES // BREACHING

    def _on_publish(self, *_) -> None:
        self.acked += 1

    def message(self, i: int) -> tuple[str, bytes]:
        sensor = i % SENSORS
        # Message i * breach_every raises sensor i (i < BREACHING) above the threshold for good.
        breached = sensor < BREACHING and i >= sensor * self.breach_every
        value = 5.0 + (i % 7) / 10 + (10.0 if breached else 0.0)
        ts = (self.start_time + timedelta(milliseconds=10 * i)).isoformat()
        return f"ioc/v1/sensors/{self.prefix}-{sensor}/readings", orjson.dumps({"ts": ts, "values": {"level_m": value}})

    def run(self) -> None:
        started = time.monotonic()
        for i in range(MESSAGES):
            while time.monotonic() < started + i / RATE:
                time.sleep(0.001)
            self.client.publish(*self.message(i), qos=1)
            self.sent += 1

    def progress(self) -> float:
        return self.sent / MESSAGES

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Screen(threading.Thread):
    """A city screen on the live WebSocket that resumes from its position whenever it is dropped."""

    def __init__(self, port: int, token: str) -> None:
        super().__init__(daemon=True)
        self.port, self.token = port, token
        self.events: dict[int, dict] = {}
        self.position: str | None = None
        self.reconnects = self.resets = 0
        self.resumed_at = 0.0  # monotonic time of the first position after the latest (re)connection
        self.stop = threading.Event()

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        while not self.stop.is_set():
            try:
                async with websockets.connect(f"ws://127.0.0.1:{self.port}/ws", max_queue=None) as ws:
                    await ws.send(orjson.dumps({"type": "auth", "token": self.token}).decode())
                    await ws.send(
                        orjson.dumps(
                            {"type": "subscribe", "kinds": ["alert."], "values": False, "since": self.position}
                        ).decode()
                    )
                    fresh = True
                    while not self.stop.is_set():
                        try:
                            frame = orjson.loads(await asyncio.wait_for(ws.recv(), 0.5))
                        except TimeoutError:
                            continue
                        for message in frame["messages"] if frame["type"] == "batch" else [frame]:
                            if message["type"] == "event":
                                self.events[message["event"]["id"]] = message["event"]
                            elif message["type"] in ("position", "reset"):
                                self.position = message["position"]
                                if fresh:
                                    self.resumed_at, fresh = time.monotonic(), False
                                self.resets += message["type"] == "reset"
            except (OSError, websockets.ConnectionClosed, websockets.InvalidHandshake):
                self.reconnects += 1
                await asyncio.sleep(0.3)


@pytest.fixture
def chain(service_env: dict[str, str], database_url: str) -> Iterator[dict]:
    """A broker, an ingest worker and an API of their own (the session's are not disturbed, but
    for the database restart), a rule on the test's sensors, and a city operator's token."""
    broker = Broker()
    broker.start()
    prefix = f"chain-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        for i in range(SENSORS):  # a kind of their own, which only the test's rule watches
            conn.execute(
                "INSERT INTO sensors (id, kind, unit_id, lat, lon) VALUES (%s, %s, 'hai-chau', 16.06, 108.22)",
                (f"{prefix}-{i}", prefix),
            )
        conn.execute(
            "INSERT INTO rules (name, type, sensor_kind, metric, severity, params)"
            " VALUES (%s, 'threshold', %s, 'level_m', 'major', '{\"op\": \"above\", \"value\": 10}')",
            (prefix, prefix),
        )
        create_user(conn, prefix, "city_operator", [], None)
        token = create_token(conn, prefix, "screen", 1)
    ingest, _ = start_worker(service_env, broker)
    api = start_api({**service_env, "IOC_MQTT_URL": broker.url_for("api")})
    api_port = api.port
    parts = {"broker": broker, "ingest": ingest, "api": api, "api_port": api_port, "prefix": prefix, "token": token}
    yield parts
    parts["api"].stop()
    parts["ingest"].stop()
    broker.remove()


def counts(database_url: str, prefix: str) -> dict[str, int]:
    try:
        with psycopg.connect(database_url, connect_timeout=2) as conn:
            rows, distinct = conn.execute(
                "SELECT count(*), count(DISTINCT (sensor_id, metric, time)) FROM readings WHERE sensor_id LIKE %s",
                (prefix + "-%",),
            ).fetchone()
            alerts, sources = conn.execute(
                "SELECT count(*), count(DISTINCT source_id) FROM alerts WHERE source_id LIKE %s", (prefix + "-%",)
            ).fetchone()
            return {"rows": rows, "distinct": distinct, "alerts": alerts, "alerting_sensors": sources}
    except psycopg.OperationalError:
        return {"rows": -1}


@pytest.mark.timeout(300)
def test_the_chain_loses_and_doubles_nothing_through_kill_and_restarts(
    chain: dict, service_env: dict[str, str], database_url: str
) -> None:
    prefix, broker = chain["prefix"], chain["broker"]
    screen = Screen(chain["api_port"], chain["token"])
    screen.start()
    # A screen sees what is committed after its first position (what came before, it reads over
    # REST): on a busy machine its first subscription may come late, so the load waits for it.
    wait_until(lambda: screen.position is not None, timeout=60, what="the screen subscribed")
    load = SteadyLoad(broker.port, prefix)
    load.start()

    def at(share: float) -> None:
        wait_until(lambda: load.progress() >= share, timeout=120, what=f"{share:.0%} of the load sent")

    at(0.15)
    chain["ingest"].stop(signal.SIGKILL)  # mid-batch, with messages unacknowledged
    chain["ingest"], _ = start_worker(service_env, broker)
    at(0.35)
    broker.stop()  # its sessions and queues are saved, and the load's client keeps its own queue
    time.sleep(1)
    broker.start()
    at(0.55)
    api = f"http://127.0.0.1:{chain['api_port']}"
    with ThreadPoolExecutor(20) as many:  # the API's pool grows to hold several connections
        list(many.map(lambda _: httpx.get(f"{api}/health", timeout=10), range(100)))
    pg_cluster("restart -m fast")
    # Every pooled connection died with the server: the first request after is served at once.
    assert httpx.get(f"{api}/health", timeout=10).json()["database"] == "up"
    at(0.75)
    chain["api"].stop()
    chain["api"] = start_api({**service_env, "IOC_MQTT_URL": broker.url_for("api")}, chain["api_port"])
    load.join(120)
    assert load.sent == MESSAGES

    wait_until(lambda: counts(database_url, prefix)["rows"] >= MESSAGES, timeout=120, what="every reading stored")
    wait_until(lambda: counts(database_url, prefix)["alerts"] >= BREACHING, timeout=30, what="every alert opened")
    time.sleep(2)  # anything doubled would have arrived by now
    load.close()
    assert counts(database_url, prefix) == {
        "rows": MESSAGES,
        "distinct": MESSAGES,
        "alerts": BREACHING,
        "alerting_sensors": BREACHING,
    }

    with psycopg.connect(database_url) as conn:
        opened = {
            r[0]
            for r in conn.execute(
                "SELECT id FROM events WHERE kind = 'alert.opened' AND source_id LIKE %s", (prefix + "-%",)
            )
        }
    assert len(opened) == BREACHING
    wait_until(lambda: opened <= screen.events.keys(), timeout=60, what="the screen to have every alert's event")
    screen.stop.set()
    screen.join(5)
    assert screen.reconnects >= 1  # the API restart dropped it, and it came back from its position
    assert screen.resets == 0
