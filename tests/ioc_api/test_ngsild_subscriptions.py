"""NGSI-LD subscriptions end to end: readings published to the broker, stored by ingest, and
notified by the notifier (``python -m notify.subscriptions``) to a real HTTP receiver; watched
attributes, q, formats, throttling, retries, a dead endpoint's status, the owner's view, and the
subscriptions' own API."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import orjson
import psycopg
import pytest

from ioc_core.ngsild.jsonld import IOC_CONTEXT_PATH
from notify.subscriptions import ADVISORY_LOCK as NOTIFIER_LOCK
from notify.subscriptions import APPLICATION_NAME
from tests.support import Broker, Service, as_, free_port, publish_all, publisher, wait_until

LINK = '<{}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
SENSORS = [("ns-air-1", "hai-chau"), ("ns-air-2", "hoa-cuong")]


class Receiver(BaseHTTPRequestHandler):
    """Keeps every notification by path; ``/fail`` answers 500 always, ``/flaky`` twice first."""

    got: ClassVar[dict[str, list[tuple[float, dict, dict]]]] = {}
    tries: ClassVar[dict[str, int]] = {}
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            self.tries[self.path] = self.tries.get(self.path, 0) + 1
            failing = self.path == "/fail" or (self.path == "/flaky" and self.tries[self.path] <= 2)
            if not failing:
                self.got.setdefault(self.path, []).append((time.time(), dict(self.headers), body))
        self.send_response(500 if failing else 204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="module")
def notifier(service_env: dict[str, str], database_url: str, ingest: Service) -> Iterator[Service]:
    with psycopg.connect(database_url, autocommit=True) as db:
        for sensor_id, unit in SENSORS:
            db.execute(
                "INSERT INTO sensors (id, kind, name, unit_id, lat, lon, interval_s)"
                " VALUES (%s, 'air_quality', %s, %s, 16.06, 108.22, 60)",
                (sensor_id, sensor_id, unit),
            )
    service = Service("notify.subscriptions", service_env).start()
    wait_until(lambda: "NGSI-LD notifier listening" in service.log(), what="the notifier listening")
    yield service
    service.stop()


@pytest.fixture(scope="module")
def ld(api: Service, notifier: Service) -> Iterator[httpx.Client]:
    link = {"Link": LINK.format(f"http://127.0.0.1:{api.port}{IOC_CONTEXT_PATH}")}
    with httpx.Client(base_url=f"http://127.0.0.1:{api.port}/ngsi-ld/v1", headers=link, timeout=30) as client:
        yield client


def subscribe(ld: httpx.Client, token: str, path: str, receiver: str, **fields) -> str:
    body = {
        "type": "Subscription",
        "entities": [{"type": "AirQualityObserved", "idPattern": "ns-air-"}],
        "notification": {"endpoint": {"uri": receiver + path}, "format": "keyValues", "attributes": ["pm25"]},
        **fields,
    }
    r = ld.post(
        "/subscriptions", content=orjson.dumps(body), headers={**as_(token), "Content-Type": "application/json"}
    )
    assert r.status_code == 201, r.text
    return r.headers["location"].rsplit("/", 1)[-1]


def publish(broker: Broker, sensor_id: str, values: dict[str, float]) -> None:
    client = publisher(broker.port)
    try:
        publish_all(client, [(f"ioc/v1/sensors/{sensor_id}/readings", orjson.dumps({"values": values}))])
    finally:
        client.loop_stop()
        client.disconnect()


def received(path: str, entity_id: str | None = None, key: str = "pm25") -> list:
    with Receiver.lock:
        found = list(Receiver.got.get(path, []))
    return [
        (t, h, e) for t, h, b in found for e in b["data"] if (entity_id is None or e["id"] == entity_id) and key in e
    ]


def test_a_stored_reading_is_notified_to_each_subscription_that_may_see_it(
    ld: httpx.Client, receiver: str, broker: Broker, tokens
) -> None:
    city = subscribe(ld, tokens["city"], "/city", receiver, watchedAttributes=["pm25"])
    subscribe(ld, tokens["hoa_cuong"], "/hoa-cuong", receiver)  # another ward's: never sees Hải Châu's
    subscribe(ld, tokens["city"], "/high", receiver, q="pm25>100")
    both = {"endpoint": {"uri": receiver + "/pm10-only"}, "format": "keyValues", "attributes": ["pm10", "pm25"]}
    subscribe(ld, tokens["city"], "/pm10-only", receiver, watchedAttributes=["pm10"], notification=both)

    def told() -> list:
        publish(broker, "ns-air-1", {"pm25": 42.0})  # again until the notifier has the subscriptions
        return received("/city", "urn:ngsi-ld:AirQualityObserved:ns-air-1")

    first = wait_until(told, what="the notification", timeout=30)
    _, headers, entity = first[-1]
    assert entity["pm25"] == 42.0 and entity["type"] == "AirQualityObserved" and "pm10" not in entity
    assert headers["Content-Type"] == "application/json" and IOC_CONTEXT_PATH in headers["Link"]
    publish(broker, "ns-air-1", {"pm25": 150.0})
    wait_until(lambda: [e for _, _, e in received("/high") if e["pm25"] == 150.0], what="q=pm25>100 told")
    assert all(e["pm25"] > 100 for _, _, e in received("/high"))
    publish(broker, "ns-air-2", {"pm25": 7.0})
    wait_until(lambda: received("/hoa-cuong", "urn:ngsi-ld:AirQualityObserved:ns-air-2"), what="the ward's own")
    assert received("/hoa-cuong", "urn:ngsi-ld:AirQualityObserved:ns-air-1") == []
    publish(broker, "ns-air-1", {"pm10": 80.0})
    wait_until(lambda: received("/pm10-only", key="pm10"), what="pm10 watched")
    publish(broker, "ns-air-1", {"pm25": 43.0})  # pm25 alone: not watched by /pm10-only
    wait_until(lambda: [e for _, _, e in received("/city") if e["pm25"] == 43.0], what="pm25 told to /city")
    publish(broker, "ns-air-1", {"pm10": 81.0})  # told after anything the pm25 change could have caused
    wait_until(lambda: [e for _, _, e in received("/pm10-only", key="pm10") if e["pm10"] == 81.0], what="pm10 again")
    states = [(e["pm10"], e.get("pm25")) for _, _, e in received("/pm10-only", key="pm10")]
    assert (80.0, 43.0) not in states, states  # the pm25 change alone told /pm10-only nothing

    def written() -> dict | None:
        body = ld.get(f"/subscriptions/{city}", headers=as_(tokens["city"])).json()
        return body if body["notification"]["timesSent"] >= 2 else None

    shown = wait_until(written, what="timesSent written")
    assert shown["notification"]["status"] == "ok" and "lastSuccess" in shown["notification"]
    assert shown["status"] == "active" and shown["isActive"] is True


def test_a_failing_endpoint_is_retried_and_its_failure_is_the_subscriptions_status(
    ld: httpx.Client, receiver: str, broker: Broker, tokens
) -> None:
    flaky = subscribe(ld, tokens["city"], "/flaky", receiver)
    dead = subscribe(ld, tokens["city"], "/fail", receiver)

    def told() -> list:
        publish(broker, "ns-air-1", {"pm25": 55.0})
        return received("/flaky")

    wait_until(told, what="the flaky endpoint told on its third try", timeout=30)

    def failed() -> dict | None:
        body = ld.get(f"/subscriptions/{dead}", headers=as_(tokens["city"])).json()
        return body if body["notification"].get("status") == "failed" else None

    shown = wait_until(failed, what="the dead endpoint's failure recorded", timeout=30)["notification"]
    assert shown["timesFailed"] >= 1 and "500" in shown["lastFailureReason"] and "lastFailure" in shown
    with Receiver.lock:
        assert Receiver.tries["/fail"] >= 3  # IOC_NGSILD_NOTIFY_ATTEMPTS

    def recorded() -> dict | None:
        body = ld.get(f"/subscriptions/{flaky}", headers=as_(tokens["city"])).json()["notification"]
        return body if body["timesSent"] >= 1 else None

    ok = wait_until(recorded, what="the flaky endpoint's notification recorded")
    assert ok["timesFailed"] == 0 and ok["status"] == "ok"  # the retries are one notification


def test_a_change_stored_while_the_notifier_had_lost_the_database_is_still_told(
    ld: httpx.Client, receiver: str, broker: Broker, tokens, database_url: str, notifier: Service
) -> None:
    subscribe(ld, tokens["city"], "/gap", receiver, watchedAttributes=["pm25"])
    wait_until(
        lambda: (publish(broker, "ns-air-1", {"pm25": 60.0}), received("/gap"))[1], what="told before", timeout=30
    )
    with psycopg.connect(database_url, autocommit=True) as db:
        ended = db.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            (APPLICATION_NAME,),
        ).fetchone()[0]
        assert ended == 2  # its listener and its reader
        # Holding the notifier's lock keeps it from listening again until the change is stored.
        wait_until(lambda: db.execute("SELECT pg_try_advisory_lock(%s)", (NOTIFIER_LOCK,)).fetchone()[0], what="lock")
        publish(broker, "ns-air-1", {"pm25": 61.0})
        wait_until(
            lambda: db.execute(
                "SELECT 1 FROM latest WHERE sensor_id = 'ns-air-1' AND metric = 'pm25' AND value = 61"
            ).fetchone(),
            what="stored",
        )
        assert not [e for _, _, e in received("/gap") if e["pm25"] == 61.0]
        db.execute("SELECT pg_advisory_unlock(%s)", (NOTIFIER_LOCK,))
    told = wait_until(lambda: [e for _, _, e in received("/gap") if e["pm25"] == 61.0], what="told after", timeout=30)
    assert told


def test_throttling_sends_the_newest_state_once_per_period(
    ld: httpx.Client, receiver: str, broker: Broker, tokens
) -> None:
    subscribe(ld, tokens["city"], "/throttled", receiver, throttling=3)
    wait_until(
        lambda: (publish(broker, "ns-air-2", {"pm25": 1.0}), received("/throttled"))[1], what="first", timeout=30
    )
    for value in (2.0, 3.0, 4.0):
        publish(broker, "ns-air-2", {"pm25": value})
    wait_until(lambda: [e for _, _, e in received("/throttled") if e["pm25"] == 4.0], what="the newest", timeout=30)
    times = [t for t, _, _ in received("/throttled")]
    assert all(b - a >= 2.5 for a, b in itertools.pairwise(times)), times  # no more than one per period


def test_the_subscriptions_api_keeps_each_owners_own(ld: httpx.Client, receiver: str, tokens) -> None:
    mine = subscribe(ld, tokens["hai_chau"], "/mine", receiver, description="Hải Châu's air")
    headers = as_(tokens["hai_chau"])
    listed = ld.get("/subscriptions", headers=headers).json()
    assert [s["id"] for s in listed] == [mine]  # a ward's own, not the city's
    assert ld.get(f"/subscriptions/{mine}", headers=as_(tokens["hoa_cuong"])).status_code == 404
    patch = ld.patch(
        f"/subscriptions/{mine}",
        content=orjson.dumps({"isActive": False, "throttling": 10}),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert patch.status_code == 204, patch.text
    shown = ld.get(f"/subscriptions/{mine}", headers=headers).json()
    assert shown["status"] == "paused" and shown["throttling"] == 10 and shown["description"] == "Hải Châu's air"
    assert ld.delete(f"/subscriptions/{mine}", headers=headers).status_code == 204
    assert ld.get(f"/subscriptions/{mine}", headers=headers).status_code == 404
    assert ld.get("/subscriptions").status_code == 401


@pytest.mark.parametrize(
    "change",
    [
        {"type": "Registration"},
        {"entities": [{"type": "Alert"}]},
        {"entities": [{"idPattern": "x"}]},
        {"notification": {"endpoint": {"uri": "mqtt://broker/topic"}}},
        {"notification": {"endpoint": {"uri": "http://127.0.0.1:9/x", "accept": "text/plain"}}},
        {"notification": {"endpoint": {"uri": "http://127.0.0.1:9/x"}, "format": "xml"}},
        {"q": "pm25>>1"},
        {"geoQ": {"georel": "near;maxDistance==10", "geometry": "Point", "coordinates": "[1"}},
        {"throttling": -1},
        {"expiresAt": (datetime.now(UTC) - timedelta(days=1)).isoformat()},
        {"timeInterval": 60},
        {"watchedAttributes": []},
    ],
)
def test_a_subscription_that_cannot_be_kept_is_refused_with_its_reason(
    ld: httpx.Client, receiver: str, tokens, change: dict
) -> None:
    body = {
        "type": "Subscription",
        "entities": [{"type": "AirQualityObserved"}],
        "notification": {"endpoint": {"uri": receiver + "/never"}},
        **change,
    }
    r = ld.post(
        "/subscriptions",
        content=orjson.dumps(body),
        headers={**as_(tokens["city"]), "Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["type"] == ERRORS + "BadRequestData" and r.json()["detail"]
