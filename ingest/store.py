"""Writes one batch in one transaction: readings, dead letters and newly seen sensors.

Readings go through binary COPY into a temporary staging table, then one
``INSERT ... ON CONFLICT DO NOTHING`` into the hypertable, so a redelivered message is stored
once and a batch costs a few round trips whatever its size.
"""

from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from ingest.payloads import Reading


@dataclass(slots=True)
class DeadLetter:
    received_at: datetime
    topic: str
    payload: bytes
    reason: str


@dataclass(slots=True)
class Batch:
    readings: list[Reading] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    new_sensors: set[str] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.readings) + len(self.dead_letters)


class ReadingStore:
    def __init__(self, url: str):
        self._url = url
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self._url, connect_timeout=5)
            conn.execute(
                "CREATE TEMP TABLE readings_stage"
                " (time timestamptz, sensor_id text, metric text, value double precision)"
                " ON COMMIT DELETE ROWS"
            )
            conn.commit()
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def write(self, batch: Batch) -> int:
        """Store the batch; returns the number of new rows. Raises psycopg errors untouched."""
        try:
            return self._write(self._connection(), batch)
        except psycopg.Error:
            self.close()  # a fresh connection next time; the transaction was rolled back
            raise

    @staticmethod
    def _write(conn: psycopg.Connection, batch: Batch) -> int:
        inserted = 0
        with conn.transaction(), conn.cursor() as cur:
            if batch.new_sensors:
                cur.executemany(
                    "INSERT INTO sensors (id, registered, last_seen) VALUES (%s, false, now())"
                    " ON CONFLICT (id) DO NOTHING",
                    [(s,) for s in sorted(batch.new_sensors)],
                )
            if batch.readings:
                with cur.copy("COPY readings_stage (time, sensor_id, metric, value) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(["timestamptz", "text", "text", "float8"])
                    for r in batch.readings:
                        cp.write_row((r.time, r.sensor_id, r.metric, r.value))
                cur.execute("INSERT INTO readings SELECT * FROM readings_stage ON CONFLICT DO NOTHING")
                inserted = cur.rowcount
            if batch.dead_letters:
                cur.executemany(
                    "INSERT INTO dead_letters (received_at, topic, payload, reason) VALUES (%s, %s, %s, %s)",
                    [(d.received_at, d.topic, d.payload, d.reason) for d in batch.dead_letters],
                )
        return inserted
