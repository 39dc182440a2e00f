"""Writes one batch in one transaction: readings, latest values, dead letters, device status and
events.

Readings go through one binary COPY straight into the hypertable. Its unique index refuses a
batch that holds a redelivered message; that batch goes again through a temporary staging table
and ``INSERT ... ON CONFLICT DO NOTHING``, which stores the rest once. The map's latest values are
upserted from the batch's newest reading of each series, and the rollups' minutes are marked from
the batch's times, so a batch costs a few round trips whatever its size and the database sorts
nothing. Events are stored before they are published, so every event a screen sees has an id.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from ingest.batching import Batch
from ingest.payloads import StatusChange
from ioc_core.events import Event, Location, Source, insert_event
from ioc_core.topics import VALUES_STORED
from ioc_core.units import CITY_ID


@dataclass(slots=True)
class Written:
    inserted: int  # new reading rows; the rest of the batch's readings were already stored
    events: list[Event]  # stored, with ids, to publish


_STAGE = (
    "CREATE TEMP TABLE readings_stage"
    " (time timestamptz, sensor_id text, metric text, value double precision) ON COMMIT DELETE ROWS"
)
_COPY = "COPY {} (time, sensor_id, metric, value) FROM STDIN (FORMAT BINARY)"
_INSERT_NEW_READINGS = "INSERT INTO readings SELECT * FROM readings_stage ON CONFLICT DO NOTHING"
_UPSERT_LATEST = (
    "INSERT INTO latest (sensor_id, metric, time, value)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::float8[])"
    " ON CONFLICT (sensor_id, metric) DO UPDATE SET time = EXCLUDED.time, value = EXCLUDED.value"
    " WHERE latest.time < EXCLUDED.time"
)
_MARK_DIRTY = "INSERT INTO rollup_dirty (minute) SELECT unnest(%s::timestamptz[])"
_SPAN_MARKED_WHOLE = 60  # minutes: a batch spanning more (a backfill) marks only its readings' own

# Said at commit to the subscriptions' notifier: which sensors have new values. Only while a
# subscription is active: a notifying commit takes PostgreSQL's notification lock, which
# serialises the commits of parallel workers, a cost not worth paying for no one.
_SIGNAL_STORED = f"SELECT pg_notify('{VALUES_STORED}', %s) WHERE EXISTS (SELECT 1 FROM ngsi_subscriptions WHERE active)"
_SIGNAL_BYTES = 7900  # a notification's payload is under 8,000 bytes


def stored_signals(batch: Batch) -> list[str]:
    """The batch's sensor ids, comma-separated, in as few payloads as fit."""
    chunks, current, size = [], [], 0
    for sensor_id in sorted({r.sensor_id for r in batch.readings}):
        if current and size + len(sensor_id.encode()) + 1 > _SIGNAL_BYTES:
            chunks.append(",".join(current))
            current, size = [], 0
        current.append(sensor_id)
        size += len(sensor_id.encode()) + 1
    if current:
        chunks.append(",".join(current))
    return chunks


def _copy(cur: psycopg.Cursor, table: str, batch: Batch) -> None:
    with cur.copy(_COPY.format(table)) as cp:
        cp.set_types(["timestamptz", "text", "text", "float8"])
        for r in batch.readings:
            cp.write_row((r.time, r.sensor_id, r.metric, r.value))


def dirty_minutes(batch: Batch) -> list[datetime]:
    """The minutes the rollups must look at again: every minute from the batch's first reading to
    its last (marking a minute with no reading costs the rollup job an empty query), or, for a
    batch spread over more than an hour, each reading's own."""
    times = [r.time for r in batch.readings]
    first, last = _minute(min(times)), _minute(max(times))
    if last - first <= _SPAN_MARKED_WHOLE * 60:
        return [datetime.fromtimestamp(m, UTC) for m in range(first, last + 60, 60)]
    return [datetime.fromtimestamp(m, UTC) for m in sorted({_minute(t) for t in times})]


def _minute(t: datetime) -> int:
    """The start of ``t``'s minute, in seconds since the epoch."""
    return int(t.timestamp()) // 60 * 60


class ReadingStore:
    def __init__(self, url: str):
        self._url = url
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self._url, connect_timeout=5)
            conn.execute(_STAGE)
            conn.commit()
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def write(self, batch: Batch, judge: Callable[[psycopg.Cursor], list[Event]] | None = None) -> Written:
        """Store the batch, all or nothing; ``judge`` runs last in the same transaction (the rules:
        their checks see the batch) and returns the events it stored. Raises psycopg errors untouched."""
        try:
            return self._write(self._connection(), batch, judge)
        except psycopg.Error:
            self.close()  # a fresh connection next time; the transaction was rolled back
            raise

    def _write(
        self, conn: psycopg.Connection, batch: Batch, judge: Callable[[psycopg.Cursor], list[Event]] | None
    ) -> Written:
        inserted = 0
        events: list[Event] = []
        with conn.transaction(), conn.cursor() as cur:
            if batch.new_sensors:
                cur.executemany(
                    "INSERT INTO sensors (id, gateway_id, registered, last_seen) VALUES (%s, %s, false, now())"
                    " ON CONFLICT (id) DO NOTHING",
                    sorted(batch.new_sensors.items()),
                )
            if batch.readings:
                inserted = self._insert_readings(conn, cur, batch)
                newest = batch.newest()
                cur.execute(
                    _UPSERT_LATEST,
                    (
                        [r.sensor_id for r in newest],
                        [r.metric for r in newest],
                        [r.time for r in newest],
                        [r.value for r in newest],
                    ),
                )
                cur.execute(_MARK_DIRTY, (dirty_minutes(batch),))
                cur.executemany(_SIGNAL_STORED, [(ids,) for ids in stored_signals(batch)])
            if batch.dead_letters:
                cur.executemany(
                    "INSERT INTO dead_letters (received_at, topic, payload, reason) VALUES (%s, %s, %s, %s)",
                    [(d.received_at, d.topic, d.payload, d.reason) for d in batch.dead_letters],
                )
            for change in batch.status_changes:
                event = self._apply_status(cur, change)
                if event is not None:
                    events.append(insert_event(cur, event))
            events.extend(insert_event(cur, e) for e in batch.events)
            if judge is not None:
                events.extend(judge(cur))
        return Written(inserted, events)

    @staticmethod
    def _insert_readings(conn: psycopg.Connection, cur: psycopg.Cursor, batch: Batch) -> int:
        """Straight into the hypertable, and through the staging table only when the batch holds a
        redelivery (rare): ``ON CONFLICT DO NOTHING`` is 1.6 times as slow as a plain insert."""
        try:
            with conn.transaction():  # a savepoint
                _copy(cur, "readings", batch)
            return len(batch.readings)
        except psycopg.errors.UniqueViolation:
            _copy(cur, "readings_stage", batch)
            cur.execute(_INSERT_NEW_READINGS)
            return cur.rowcount

    @staticmethod
    def _apply_status(cur: psycopg.Cursor, change: StatusChange) -> Event | None:
        """Record the device's status; an event only when it changed (retained messages repeat)."""
        for table, source_type in (("sensors", "sensor"), ("cameras", "camera")):
            row = cur.execute(
                f"UPDATE {table} SET status = %s, last_seen = greatest(last_seen, %s)"
                " WHERE id = %s AND status IS DISTINCT FROM %s RETURNING unit_id, lat, lon",
                (change.status, change.time, change.device_id, change.status),
            ).fetchone()
            if row is not None:
                unit_id, lat, lon = row
                return Event(
                    time=change.time,
                    kind=f"device.{change.status}",
                    severity="minor" if change.status == "offline" else "info",
                    unit_id=unit_id or CITY_ID,
                    source=Source(type=source_type, id=change.device_id),
                    location=Location.of(lat, lon),
                    title=f"{source_type.capitalize()} {change.device_id} is {change.status}",
                    data=change.health,
                )
        return None
