"""Rollups and retention, kept by the project on every TimescaleDB edition: the Apache edition
(which these machines build) has neither continuous aggregates nor policies, and one path for both
editions is one path tested.

Ingest marks every minute that received readings (``rollup_dirty``, append-only); this job
consumes the marks, recomputes those minutes' 1-minute buckets from the raw readings and the
hours around them from the 1-minute buckets, so late and replayed data are rolled up too. It also
drops raw chunks past the retention. Every ingest worker runs it; an advisory lock lets one at a
time do the work.
"""

import logging
from datetime import timedelta

import psycopg

log = logging.getLogger(__name__)

_LOCK = 0x10C_0002

_CLAIM = "DELETE FROM rollup_dirty RETURNING minute"
_ROLLUP_1M = """
INSERT INTO readings_1m (bucket, sensor_id, metric, avg, min, max, count, last, last_time)
SELECT time_bucket('1 minute', r.time) AS bucket, r.sensor_id, r.metric,
       avg(r.value), min(r.value), max(r.value), count(*), last(r.value, r.time), max(r.time)
FROM readings r JOIN unnest(%(minutes)s::timestamptz[]) AS m(minute)
  ON r.time >= m.minute AND r.time < m.minute + interval '1 minute'
GROUP BY 1, 2, 3
ON CONFLICT (sensor_id, metric, bucket) DO UPDATE SET
  avg = EXCLUDED.avg, min = EXCLUDED.min, max = EXCLUDED.max, count = EXCLUDED.count,
  last = EXCLUDED.last, last_time = EXCLUDED.last_time
"""
_ROLLUP_1H = """
INSERT INTO readings_1h (bucket, sensor_id, metric, avg, min, max, count, last, last_time)
SELECT time_bucket('1 hour', m.bucket) AS hour, m.sensor_id, m.metric,
       sum(m.avg * m.count) / sum(m.count), min(m.min), max(m.max), sum(m.count),
       last(m.last, m.last_time), max(m.last_time)
FROM readings_1m m JOIN unnest(%(hours)s::timestamptz[]) AS h(hour)
  ON m.bucket >= h.hour AND m.bucket < h.hour + interval '1 hour'
GROUP BY 1, 2, 3
ON CONFLICT (sensor_id, metric, bucket) DO UPDATE SET
  avg = EXCLUDED.avg, min = EXCLUDED.min, max = EXCLUDED.max, count = EXCLUDED.count,
  last = EXCLUDED.last, last_time = EXCLUDED.last_time
"""


def roll_up(conn: psycopg.Connection) -> int:
    """Recompute every dirty minute and its hour; returns how many minutes. One transaction."""
    with conn.transaction():
        minutes = sorted({row[0] for row in conn.execute(_CLAIM)})
        if minutes:
            hours = sorted({m.replace(minute=0, second=0, microsecond=0) for m in minutes})
            conn.execute(_ROLLUP_1M, {"minutes": minutes})
            conn.execute(_ROLLUP_1H, {"hours": hours})
    return len(minutes)


def drop_expired(conn: psycopg.Connection, retention: timedelta) -> int:
    """Drop raw chunks entirely older than the retention; returns how many."""
    return len(conn.execute("SELECT drop_chunks('readings', older_than => %s::interval)", (retention,)).fetchall())


class Maintenance:
    """The rollups at each step, the retention every hour; ``run_once`` is the step of a loop
    every ``IOC_ROLLUP_INTERVAL_S`` (``ioc_core.loops``)."""

    def __init__(self, url: str, retention: timedelta, interval_s: float):
        self._url, self._retention, self._interval_s = url, retention, interval_s
        self._runs = 0

    def run_once(self) -> None:
        with psycopg.connect(self._url, autocommit=True, connect_timeout=5) as conn:
            if not conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK,)).fetchone()[0]:
                return  # another worker is at it
            minutes = roll_up(conn)
            if self._runs % max(1, int(3600 / self._interval_s)) == 0:
                dropped = drop_expired(conn, self._retention)
                if dropped:
                    log.info("expired chunks dropped", extra={"chunks": dropped})
            self._runs += 1
            if minutes:
                log.debug("rolled up", extra={"minutes": minutes})
