"""Writes one batch in one transaction: readings, latest values, dead letters, device status and
events.

Readings go through binary COPY into a temporary staging table, then one insert into the
hypertable, whose unique index stores a redelivered message once (``ON CONFLICT DO NOTHING``
when the batch holds one), so a batch costs a few round trips whatever its size. Events are stored before they are
published, so every event a screen sees has an id.
"""

from collections.abc import Callable
from dataclasses import dataclass

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
_INSERT_READINGS = "INSERT INTO readings SELECT * FROM readings_stage"
_INSERT_NEW_READINGS = "INSERT INTO readings SELECT * FROM readings_stage ON CONFLICT DO NOTHING"
_UPSERT_LATEST = (
    "INSERT INTO latest (sensor_id, metric, time, value)"
    " SELECT DISTINCT ON (sensor_id, metric) sensor_id, metric, time, value FROM readings_stage"
    " ORDER BY sensor_id, metric, time DESC"
    " ON CONFLICT (sensor_id, metric) DO UPDATE SET time = EXCLUDED.time, value = EXCLUDED.value"
    " WHERE latest.time < EXCLUDED.time"
)
_MARK_DIRTY = "INSERT INTO rollup_dirty (minute) SELECT DISTINCT time_bucket('1 minute', time) FROM readings_stage"


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
                with cur.copy("COPY readings_stage (time, sensor_id, metric, value) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(["timestamptz", "text", "text", "float8"])
                    for r in batch.readings:
                        cp.write_row((r.time, r.sensor_id, r.metric, r.value))
                inserted = self._insert_readings(conn, cur)
                cur.execute(_UPSERT_LATEST)
                cur.execute(_MARK_DIRTY)
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
    def _insert_readings(conn: psycopg.Connection, cur: psycopg.Cursor) -> int:
        """A plain insert is 1.6 times as fast as ``ON CONFLICT DO NOTHING`` into a hypertable, and
        a batch rarely holds a redelivery, so try it first and fall back when one is there."""
        try:
            with conn.transaction():  # a savepoint
                cur.execute(_INSERT_READINGS)
        except psycopg.errors.UniqueViolation:
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
