"""Device faults at set rates, each checked against ingest's own parsers and then through the real
broker, ingest and database: what is valid is stored once, what is broken is a dead letter."""

import time
from datetime import UTC, datetime

import orjson
import psycopg
import pytest

from ingest.payloads import Limits, parse_gateway_message, parse_sensor_message
from ioc_core.topics import route
from simulators.city import City, Reading
from simulators.faults import FaultRates, Faults
from simulators.publish import Publisher
from simulators.registry import load_units, register
from simulators.runner import run_city
from tests.support import Broker, Service, wait_until


def readings(n: int = 200, t: float | None = None) -> list[Reading]:
    t = t or time.time() - 60
    return [Reading(f"s-{i % 20}", t + i, {"pm25": float(i), "pm10": float(2 * i)}) for i in range(n)]


def parsed(messages: list[tuple[str, bytes]]) -> tuple[list, list]:
    """What ingest's parsers make of the messages now: (readings, rejections)."""
    now = datetime.now(UTC)
    good, bad = [], []
    for topic, payload in messages:
        where = route(topic)
        if where.kind == "gateway":
            out = parse_gateway_message(payload, now, Limits())
        else:
            out = parse_sensor_message(where.device_id, payload, now, Limits())
        good += out.readings
        bad += out.rejections
    return good, bad


def test_no_faults_one_message_per_reading() -> None:
    msgs = Faults(FaultRates()).messages(readings(), time.time(), {})
    good, bad = parsed(msgs)
    assert len(msgs) == 200 and len(good) == 400 and bad == []


def test_dropouts_and_duplicates() -> None:
    faults = Faults(FaultRates(dropout=0.2, duplicate=0.1), seed=3)
    msgs = faults.messages(readings(1000), time.time(), {})
    assert 700 < 1000 - faults.counts["dropout"] < 900
    assert len(msgs) == 1000 - faults.counts["dropout"] + faults.counts["duplicate"]
    assert len(msgs) - len(set(msgs)) == faults.counts["duplicate"] > 0


def test_late_readings_arrive_in_a_later_burst_newest_first() -> None:
    faults = Faults(FaultRates(late=0.5, late_s=60), seed=1)
    now = time.time()
    first = faults.messages(readings(100, now - 120), now, {})
    assert 20 < len(first) < 80
    later = faults.messages([], now + 61, {})
    assert len(first) + len(later) == 100
    times = [orjson.loads(p)["ts"] for _, p in later]
    assert times == sorted(times, reverse=True)  # out of order


def test_malformed_messages_are_each_refused_by_ingest_with_a_reason() -> None:
    faults = Faults(FaultRates(malformed=1.0), seed=2)
    msgs = faults.messages(readings(40), time.time(), {})
    good, bad = parsed(msgs)
    assert good == [] and len(bad) >= 40
    assert {r.code for r in bad} >= {"malformed_json", "wrong_type", "missing_values"}


def test_stuck_sensors_repeat_and_skewed_clocks_are_off_by_a_steady_offset() -> None:
    stuck = Faults(FaultRates(stuck=1.0)).messages(readings(40), time.time(), {})
    assert {orjson.loads(p)["values"]["pm25"] for t, p in stuck if t.endswith("/s-3/readings")} == {3.0}
    rs = readings(40)
    skewed = Faults(FaultRates(skew=1.0, skew_s=600), seed=4).messages(rs, time.time(), {})
    offsets = {}
    for r, (_, p) in zip(rs, skewed, strict=True):
        offsets.setdefault(r.sensor_id, set()).add(round(orjson.loads(p)["ts"] / 1000 - r.time, 1))
    assert all(len(o) == 1 for o in offsets.values()) and any(abs(next(iter(o))) > 1 for o in offsets.values())


def test_gateways_carry_many_sensors_readings_in_one_message() -> None:
    rs = readings(100)
    gateway_of = {r.sensor_id: "gw-a" for r in rs}
    msgs = Faults(FaultRates(gateway=1.0)).messages(rs, time.time(), gateway_of)
    assert [t for t, _ in msgs] == ["ioc/v1/gateways/gw-a/readings"]
    good, bad = parsed(msgs)
    assert len(good) == 200 and bad == []


@pytest.mark.timeout(180)
def test_a_faulty_city_through_ingest_stores_each_valid_reading_once_and_dead_letters_the_rest(
    broker: Broker, ingest: Service, database_url: str
) -> None:
    units = load_units(database_url, ["hai-chau", "thanh-khe"])
    city = City(units, 60, seed=9, start=time.time() - 1800, hours=0.5, prefix="sim-faulty")
    register(database_url, city.devices())
    rates = FaultRates(dropout=0.05, duplicate=0.05, late=0.05, late_s=120, malformed=0.03, gateway=0.3, stuck=0.1)
    faults = Faults(rates, seed=9)
    sent: list[tuple[str, bytes]] = []
    publisher = Publisher(broker.url_for("simulator"), "test-faulty-city")

    def send(messages: list[tuple[str, bytes]]) -> None:
        sent.extend(messages)
        publisher.send(messages)

    run_city(city, send, faults, until=city.start + 1800 + 150, speed=None, step_s=10)  # late ones released
    publisher.close()
    good, _ = parsed(sent)
    expected_rows = {(r.sensor_id, r.metric, r.time) for r in good}
    assert faults.counts["duplicate"] and faults.counts["late"] and faults.counts["gateway_messages"]
    with psycopg.connect(database_url) as db:

        def stored() -> int:
            return db.execute("SELECT count(*) FROM readings WHERE sensor_id LIKE 'sim-faulty-%'").fetchone()[0]

        wait_until(lambda: stored() == len(expected_rows), timeout=30, what="each valid reading stored once")
        dead = db.execute(
            "SELECT count(*) FROM dead_letters WHERE topic LIKE 'ioc/v1/sensors/sim-faulty-%'"
        ).fetchone()[0]
        assert dead == faults.counts["malformed"] > 0
