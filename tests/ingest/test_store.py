"""The store against the real TimescaleDB: a batch goes straight into the hypertable, a batch that
holds a redelivered reading stores the rest once, the map keeps each series' newest value, and
every minute a batch touched is marked for the rollups."""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as paho
import psycopg
import pytest

from ingest.batching import Batch, Part
from ingest.payloads import Reading
from ingest.source import Received
from ingest.store import ReadingStore, dirty_minutes

T0 = datetime(2026, 11, 30, 8, 0, 0, 500_000, tzinfo=UTC)


def batch(*readings: Reading) -> Batch:
    part = Part(Received(1, paho.MQTTMessage(topic=b"t"), datetime.now(UTC)), readings=list(readings))
    return Batch([part])


@pytest.fixture
def store(database_url: str) -> Iterator[ReadingStore]:
    store = ReadingStore(database_url)
    yield store
    store.close()


def test_a_redelivered_reading_in_a_batch_is_stored_once_with_the_rest_and_latest_keeps_the_newest(
    store: ReadingStore, db: psycopg.Connection
) -> None:
    sensor = f"st{uuid.uuid4().hex[:6]}"
    first = [Reading(T0 + timedelta(seconds=s), sensor, "pm25", float(s)) for s in range(3)]
    assert store.write(batch(*first)).inserted == 3

    # the last reading again (a redelivery), a newer one, and an older one after it in the batch
    newer, older = (Reading(T0 + timedelta(seconds=s), sensor, "pm25", float(s)) for s in (10, 5))
    assert store.write(batch(first[2], newer, older)).inserted == 2

    stored = db.execute("SELECT value FROM readings WHERE sensor_id = %s ORDER BY time", (sensor,)).fetchall()
    assert [v for (v,) in stored] == [0.0, 1.0, 2.0, 5.0, 10.0]
    assert db.execute("SELECT value FROM latest WHERE sensor_id = %s", (sensor,)).fetchone() == (10.0,)

    # a late batch (older than the latest value) is stored, and leaves the map as it is
    assert store.write(batch(Reading(T0 + timedelta(seconds=7), sensor, "pm25", 7.0))).inserted == 1
    assert db.execute("SELECT value FROM latest WHERE sensor_id = %s", (sensor,)).fetchone() == (10.0,)


def test_the_rollups_look_again_at_every_minute_a_batch_touched(store: ReadingStore) -> None:
    sensor = f"st{uuid.uuid4().hex[:6]}"
    close = batch(*(Reading(T0 + timedelta(seconds=s), sensor, "level", 1.0) for s in (0, 150, 30)))
    minute = T0.replace(second=0, microsecond=0)
    assert dirty_minutes(close) == [minute + timedelta(minutes=m) for m in range(3)]

    backfill = batch(
        Reading(T0 - timedelta(days=2), sensor, "level", 1.0),
        Reading(T0, sensor, "level", 1.0),
        Reading(T0 - timedelta(days=2, seconds=-5), sensor, "level", 1.0),
    )
    assert dirty_minutes(backfill) == [minute - timedelta(days=2), minute]

    marked: list[datetime] = []

    def marks(cur: psycopg.Cursor) -> list:
        """This transaction's own marks, read before it commits (a rollup job may take them after)."""
        rows = cur.execute("SELECT minute FROM rollup_dirty WHERE xmin = xid(pg_current_xact_id()) ORDER BY minute")
        marked.extend(m for (m,) in rows)
        return []

    store.write(backfill, marks)
    assert marked == [minute - timedelta(days=2), minute]
