"""The write pipeline in process, against the real TimescaleDB: the rules change nothing until a
batch is committed, so a write retried after a real database blip (the worker's own connection
terminated before its commit) judges the same readings the same way; and a batch the database
refuses is narrowed down to the messages that cause it."""

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import paho.mqtt.client as paho
import psycopg
import pytest

from ingest.batching import Batch, Intake
from ingest.pipeline import WritePipeline
from ingest.registry import RegistryCache
from ingest.rules import RuleEngine
from ingest.source import Received
from ingest.store import ReadingStore
from ioc_core.settings import Settings


def message(topic: str, payload: dict, qos: int = 1) -> Received:
    m = paho.MQTTMessage(mid=1, topic=topic.encode())
    m.payload, m.qos = orjson.dumps(payload), qos
    return Received(1, m, datetime.now(UTC))


class BlipOnce(RuleEngine):
    """The real engine; while judging the first batch after ``blip()``, the worker's connection is
    terminated from outside (as a database restart would), so that batch's commit fails."""

    def __init__(self, url: str, store: ReadingStore):
        super().__init__(url, refresh_s=3600)
        self._store, self._blip, self.judged = store, False, 0

    def blip(self) -> None:
        self._blip = True

    def judge(self, cur, readings, events, kinds, units):
        hits = super().judge(cur, readings, events, kinds, units)
        self.judged += 1
        if self._blip:
            self._blip = False
            with psycopg.connect(self._url, autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(%s)", (self._store._conn.info.backend_pid,))
        return hits


class Chain:
    """Intake, pipeline and real store and engine, over the test database."""

    def __init__(self, url: str, engine_class=BlipOnce):
        self.settings = Settings(database_url=url, ingest_max_future_s=300)
        self.registry = RegistryCache(url)
        self.registry.load()
        self.store = ReadingStore(url)
        self.rules = engine_class(url, self.store)
        self.rules.load()
        self.intake = Intake(self.settings, self.registry)
        self.pipeline = WritePipeline(self.store, self.rules, self.registry, threading.Event())

    def write(self, *items: Received):
        self.intake.new_batch()
        return self.pipeline.commit(Batch([self.intake.part(i) for i in items]))

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def tag(database_url: str) -> Iterator[str]:
    """Sensors and a camera of their own, with a one-off threshold and a camera rule on them."""
    tag = f"pl{uuid.uuid4().hex[:6]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        for i in range(3):
            conn.execute("INSERT INTO sensors (id, kind, unit_id) VALUES (%s, %s, 'hai-chau')", (f"{tag}-{i}", tag))
        conn.execute("INSERT INTO cameras (id, unit_id) VALUES (%s, 'hai-chau')", (f"{tag}-cam",))
        conn.execute(
            "INSERT INTO rules (name, type, sensor_kind, metric, severity, params) VALUES"
            " (%s, 'threshold', %s, 'pm25', 'major', '{\"op\": \"above\", \"value\": 100, \"for_s\": 0}')",
            (tag, tag),
        )
        conn.execute(
            "INSERT INTO rules (name, type, unit_id, severity, params) VALUES (%s, 'camera', 'hai-chau', 'major', %s)",
            (tag + "-cam", orjson.dumps({"event": tag, "min_duration_s": 0}).decode()),
        )
    yield tag


def alerts(database_url: str, tag: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT source_id, state, (SELECT count(*) FROM events e WHERE e.data->>'alert_id' = a.id::text)"
            " FROM alerts a WHERE source_id LIKE %s ORDER BY source_id, id",
            (tag + "-%",),
        ).fetchall()


def reading(tag: str, i: int, value: float, seconds_ago: float = 0) -> Received:
    ts = (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()
    return message(f"ioc/v1/sensors/{tag}-{i}/readings", {"ts": ts, "values": {"pm25": value}})


def test_a_one_off_breach_a_camera_event_and_a_resolution_during_a_blip_each_change_one_alert(
    database_url: str, tag: str
) -> None:
    chain = Chain(database_url)
    try:
        chain.write(reading(tag, 1, 150, seconds_ago=30))  # an alert that a later blip will resolve
        assert alerts(database_url, tag) == [(f"{tag}-1", "open", 1)]

        chain.rules.blip()
        camera = message(f"ioc/v1/cameras/{tag}-cam/events", {"event": tag, "data": {"state": "started"}})
        outcome = chain.write(reading(tag, 0, 150), reading(tag, 1, 20), camera)
        assert chain.rules.judged == 3  # the first batch, the one that failed, and its retry
        assert alerts(database_url, tag) == [
            (f"{tag}-0", "open", 1),
            (f"{tag}-1", "resolved", 2),
            (f"{tag}-cam", "open", 1),
        ]
        assert sorted(e.kind for e in outcome.events) == [
            "alert.opened",
            "alert.opened",
            "alert.resolved",
            f"camera.{tag}",
        ]

        # What was committed is the state: the same conditions repeated change nothing more.
        chain.write(reading(tag, 0, 160, seconds_ago=-1), reading(tag, 1, 10, seconds_ago=-1))
        assert [a[1] for a in alerts(database_url, tag)] == ["open", "resolved", "open"]
    finally:
        chain.close()


def test_the_rules_keep_nothing_from_a_batch_that_was_not_committed(database_url: str, tag: str) -> None:
    chain = Chain(database_url)
    try:
        chain.rules.blip()
        chain.write(reading(tag, 2, 150))
        assert not chain.rules.state.pending()
        assert any(source == f"{tag}-2" for _, source in chain.rules.state.of)  # open: committed with its batch
        assert alerts(database_url, tag) == [(f"{tag}-2", "open", 1)]
    finally:
        chain.close()


class RuleBug(RuleEngine):
    """A rule that fails on one value, as a bug would."""

    def __init__(self, url: str, store: ReadingStore):
        super().__init__(url, refresh_s=3600)

    def judge(self, cur, readings, events, kinds, units):
        if any(r.value == 666 for r in readings):
            raise ZeroDivisionError("a rule's bug")
        return super().judge(cur, readings, events, kinds, units)


@pytest.fixture
def refusing(database_url: str, tag: str) -> Iterator[str]:
    """Triggers that refuse what a database can refuse: a constraint (a new sensor whose id ends in
    -constraint) and a data error (a camera event of a camera whose id ends in -data)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"""
            CREATE FUNCTION {tag}_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_ARGV[0] = 'sensors' AND to_jsonb(NEW)->>'id' LIKE '%-constraint' THEN
                    RAISE check_violation USING MESSAGE = 'sensor id refused by a constraint';
                ELSIF TG_ARGV[0] = 'events' AND to_jsonb(NEW)->>'source_id' LIKE '%-data' THEN
                    RAISE numeric_value_out_of_range USING MESSAGE = 'event data out of range';
                END IF;
                RETURN NEW;
            END $$""")
        conn.execute(
            f"CREATE TRIGGER {tag}_s BEFORE INSERT ON sensors FOR EACH ROW EXECUTE FUNCTION {tag}_refuse('sensors')"
        )
        conn.execute(
            f"CREATE TRIGGER {tag}_e BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION {tag}_refuse('events')"
        )
        conn.execute("INSERT INTO cameras (id, unit_id) VALUES (%s, 'hai-chau')", (f"{tag}-data",))
    yield tag
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP TRIGGER {tag}_s ON sensors")
        conn.execute(f"DROP TRIGGER {tag}_e ON events")
        conn.execute(f"DROP FUNCTION {tag}_refuse()")


def test_a_batch_the_database_refuses_is_narrowed_to_the_messages_that_cause_it(
    database_url: str, refusing: str
) -> None:
    tag = refusing
    chain = Chain(database_url, RuleBug)
    try:
        good = [reading(tag, i % 3, 5 + i, seconds_ago=60 - i) for i in range(40)]
        poison = [
            message(f"ioc/v1/sensors/{tag}-constraint/readings", {"values": {"pm25": 1}}),
            message(f"ioc/v1/cameras/{tag}-data/events", {"event": "crowding"}),
            reading(tag, 0, 666, seconds_ago=70),
        ]
        outcome = chain.write(*good[:13], poison[0], *good[13:27], poison[1], *good[27:], poison[2])
        with psycopg.connect(database_url) as conn:
            stored = conn.execute("SELECT count(*) FROM readings WHERE sensor_id LIKE %s", (tag + "-%",)).fetchone()
            letters = dict(
                conn.execute("SELECT topic, reason FROM dead_letters WHERE topic LIKE %s", (f"%/{tag}-%",)).fetchall()
            )
        assert stored == (40,), letters
        assert outcome.poisoned == 3, letters
        assert letters[f"ioc/v1/sensors/{tag}-constraint/readings"].startswith("refused_by_database: CheckViolation")
        assert letters[f"ioc/v1/cameras/{tag}-data/events"].startswith("refused_by_database: NumericValueOutOfRange")
        assert letters[f"ioc/v1/sensors/{tag}-0/readings"] == "refused_by_database: ZeroDivisionError: a rule's bug"
        assert not chain.rules.state.pending()
    finally:
        chain.close()


def test_workers_judging_one_sensor_out_of_order_neither_resolve_nor_reopen_its_alert_late(
    database_url: str, db: psycopg.Connection
) -> None:
    """Competing consumers (cluster mode's queues, a redelivery after a fault) may hand a sensor's
    older reading to a worker after another stored a newer one: it changes no alert."""
    kind = f"ooo-{uuid.uuid4().hex[:6]}"
    sensor, topic = f"{kind}-1", f"ioc/v1/sensors/{kind}-1/readings"
    db.execute("INSERT INTO sensors (id, kind, unit_id) VALUES (%s, %s, 'hai-chau')", (sensor, kind))
    rule_id = db.execute(
        "INSERT INTO rules (name, type, sensor_kind, metric, severity, params)"
        " VALUES (%s, 'threshold', %s, 'level_m', 'major', '{\"op\": \"above\", \"value\": 10}') RETURNING id",
        (kind, kind),
    ).fetchone()[0]
    db.commit()
    t0 = datetime.now(UTC) - timedelta(minutes=1)

    def reading(seconds: float, value: float) -> Received:
        return message(topic, {"ts": (t0 + timedelta(seconds=seconds)).isoformat(), "values": {"level_m": value}})

    def alerts() -> list[tuple[str, int]]:
        db.rollback()
        return db.execute("SELECT state, count FROM alerts WHERE rule_id = %s ORDER BY id", (rule_id,)).fetchall()

    first, second = Chain(database_url), Chain(database_url)
    try:
        first.write(reading(2, 15))  # opens
        second.rules.load()  # knows the alert is open, not the reading that keeps it so
        second.write(reading(1, 5))  # older, below: late
        assert [state for state, _ in alerts()] == ["open"]
        second.write(reading(3, 5))  # newer, below: resolves
        assert [state for state, _ in alerts()] == ["resolved"]
        third = Chain(database_url)  # knows no open alert
        try:
            third.write(reading(2.5, 15))  # older than the resolution, above: late
        finally:
            third.close()
        assert [state for state, _ in alerts()] == ["resolved"]
        first.write(reading(4, 15))  # newer, above: a new alert
        assert [state for state, _ in alerts()] == ["resolved", "open"]
    finally:
        first.close()
        second.close()
