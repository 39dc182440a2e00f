"""``python -m bench.rest``: latency of the REST reads a control room makes, on a city-sized dataset.

It loads a fresh database (10,000 sensors over the 94 units and 50,000,000 readings over 7 days by
default, with the 1-minute and 1-hour rollups and the latest values filled as ingest and its
rollup job would leave them), starts the API against it and times, request after request:
1. ``GET /api/v1/latest``, the map's GeoJSON of every sensor (goal p95 < 100 ms);
2. ``GET /api/v1/sensors/{id}/readings``, 24 hours of one sensor in 1-minute buckets (goal p95 < 50 ms);
3. ``GET /api/v1/units/{id}/readings``, 7 days of a unit's pm25 in 1-hour buckets (goal p95 < 200 ms).

Each figure is printed beside a baseline measured in the same run: the same SQL that the route
runs, sent directly with psycopg, so the ratio shows what the API adds (HTTP, the token check, the
route's other lookups, serialisation) apart from the database's own work.

``--database-url`` reuses a database loaded by an earlier run (``--keep``) and skips the load.
"""

import argparse
import math
import random
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from bench.scratch import create_database, drop_database
from ioc_api.cli import create_token, create_user

# The route's own SQL, imported rather than copied, so the baseline stays the query the API runs.
from ioc_api.routes.readings import _LATEST, _SOURCES, choose_source
from tests.support import Broker, start_api, wait_until

BENCH_USER = "bench-city"
WARMUP = 5


@dataclass(frozen=True)
class Kind:
    """A kind of sensor and the shape of its one metric: a daily cycle plus noise, never negative."""

    name: str
    metric: str
    base: float
    amplitude: float
    noise: float


KINDS = (
    Kind("air_quality", "pm25", 35.0, 20.0, 10.0),
    Kind("water_level", "level", 1.2, 0.6, 0.1),
    Kind("noise", "noise_dba", 60.0, 12.0, 6.0),
)


@dataclass(frozen=True)
class Sensor:
    id: str
    kind: Kind
    unit_id: str
    offset_s: float  # each sensor reports a little before the common end, as real ones are not in step


# ---------------------------------------------------------------------------------------------- database


# ---------------------------------------------------------------------------------------------- loading

# Each chunk of sensors is staged in a temporary table first (no WAL, no index), and everything is
# made from there: the readings, both rollups and the latest values. That keeps every statement a
# plain scan of a small table, whatever plans the planner would pick on the growing hypertables.
_STAGE = (
    "CREATE TEMP TABLE batch (time timestamptz NOT NULL, sensor_id text NOT NULL, metric text NOT NULL,"
    " value double precision NOT NULL)"
)

# Rows of a chunk of sensors, made by the server itself: no row crosses the wire. Each sensor's
# times run newest first and the sensors come in id order: the order of the unique index
# (sensor_id, metric, time DESC), so that every index insert lands on the index's rightmost page.
_GENERATE = """
INSERT INTO batch (time, sensor_id, metric, value)
SELECT g.time, s.id, s.metric,
       greatest(0, s.base + s.amplitude * sin(extract(epoch FROM g.time) * (2 * pi() / 86400))
                    + s.noise * (random() - 0.5))
FROM unnest(%(ids)s::text[], %(metrics)s::text[], %(offsets)s::float8[],
            %(bases)s::float8[], %(amplitudes)s::float8[], %(noises)s::float8[])
     AS s(id, metric, offset_s, base, amplitude, noise)
CROSS JOIN LATERAL generate_series(
    %(end)s::timestamptz - make_interval(secs => s.offset_s),
    %(end)s::timestamptz - make_interval(secs => s.offset_s + (%(per_sensor)s - 1) * %(step)s),
    -make_interval(secs => %(step)s)) AS g(time)
"""

# The rollups hold what ingest's maintenance job computes (ingest/maintenance.py); the hour is taken
# from the raw rows here, which gives the same figures as from the minutes. ORDER BY the primary
# key (sensor_id, metric, bucket): inserted in bucket order, the key's pages are hit at random and
# the insert takes twice as long.
_FROM_BATCH = [
    "INSERT INTO readings (time, sensor_id, metric, value) SELECT time, sensor_id, metric, value FROM batch",
    """
    INSERT INTO readings_1m (bucket, sensor_id, metric, avg, min, max, count, last, last_time)
    SELECT time_bucket('1 minute', time) AS b, sensor_id, metric,
           avg(value), min(value), max(value), count(*), last(value, time), max(time)
    FROM batch GROUP BY sensor_id, metric, b ORDER BY sensor_id, metric, b
    """,
    """
    INSERT INTO readings_1h (bucket, sensor_id, metric, avg, min, max, count, last, last_time)
    SELECT time_bucket('1 hour', time) AS b, sensor_id, metric,
           avg(value), min(value), max(value), count(*), last(value, time), max(time)
    FROM batch GROUP BY sensor_id, metric, b ORDER BY sensor_id, metric, b
    """,
    """
    INSERT INTO latest (sensor_id, metric, time, value)
    SELECT DISTINCT ON (sensor_id, metric) sensor_id, metric, time, value
    FROM batch ORDER BY sensor_id, metric, time DESC
    """,
]


def make_sensors(conn: psycopg.Connection, count: int, step_s: float) -> list[Sensor]:
    """``count`` sensors spread evenly over the units and kinds (3 kinds and 94 units share no
    factor, so every unit gets each kind), placed near their unit's centroid."""
    units = conn.execute("SELECT id, centroid[0], centroid[1] FROM units WHERE kind <> 'city' ORDER BY id").fetchall()
    if not units:
        raise SystemExit("no units: is the shared reference data there (IOC_SHARED_DIR)?")
    rng = random.Random(42)
    sensors, rows = [], []
    for i in range(count):
        unit_id, lon, lat = units[i % len(units)]
        kind = KINDS[i % len(KINDS)]
        sensor = Sensor(f"bench-{i:06d}", kind, unit_id, rng.uniform(0, min(step_s, 60.0)))
        sensors.append(sensor)
        rows.append(
            (sensor.id, kind.name, unit_id, (lat or 16.05) + rng.gauss(0, 0.005), (lon or 108.2) + rng.gauss(0, 0.005))
        )
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO sensors (id, kind, unit_id, lat, lon, status) VALUES (%s, %s, %s, %s, %s, 'online')", rows
        )
    return sensors


def _columns(sensors: list[Sensor]) -> dict[str, list]:
    return {
        "ids": [s.id for s in sensors],
        "metrics": [s.kind.metric for s in sensors],
        "offsets": [s.offset_s for s in sensors],
        "bases": [s.kind.base for s in sensors],
        "amplitudes": [s.kind.amplitude for s in sensors],
        "noises": [s.kind.noise for s in sensors],
    }


def stage_generated(
    conn: psycopg.Connection, sensors: list[Sensor], end: datetime, per_sensor: int, step_s: float
) -> None:
    """Server-side: one INSERT ... SELECT over generate_series for the whole chunk of sensors."""
    conn.execute(_GENERATE, {**_columns(sensors), "end": end, "per_sensor": per_sensor, "step": step_s})


def stage_copied(
    conn: psycopg.Connection, sensors: list[Sensor], end: datetime, per_sensor: int, step_s: float
) -> None:
    """Client-side: the same rows (same order, same shape of values) sent with a binary COPY."""
    rng = random.Random()
    two_pi_day = 2 * math.pi / 86400
    with (
        conn.cursor() as cur,
        cur.copy("COPY batch (time, sensor_id, metric, value) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(["timestamptz", "text", "text", "float8"])
        for s in sensors:
            k = s.kind
            newest = end - timedelta(seconds=s.offset_s)
            for n in range(per_sensor):
                t = newest - timedelta(seconds=n * step_s)
                value = k.base + k.amplitude * math.sin(t.timestamp() * two_pi_day) + k.noise * (rng.random() - 0.5)
                copy.write_row((t, s.id, k.metric, max(0.0, value)))


LOADERS: dict[str, Callable[[psycopg.Connection, list[Sensor], datetime, int, float], None]] = {
    "generate": stage_generated,
    "copy": stage_copied,
}


@dataclass
class LoadStats:
    readings: int
    readings_s: float
    rollups_s: float
    analyze_s: float

    @property
    def total_s(self) -> float:
        return self.readings_s + self.rollups_s + self.analyze_s


def chunks(items: list[Sensor], size: int) -> Iterator[list[Sensor]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def loading_session(url: str) -> psycopg.Connection:
    """A connection with its stage table. Settings are local to this session and bounded: a
    chunk's stage and its aggregates stay in memory."""
    conn = psycopg.connect(url)
    conn.execute("SET temp_buffers = '256MB'")
    conn.execute("SET work_mem = '256MB'")
    conn.execute("SET synchronous_commit = off")
    conn.execute(_STAGE)
    conn.commit()
    return conn


def load(url: str, sensor_count: int, reading_count: int, days: float, chunk_rows: int, method: str) -> LoadStats:
    """Sensors, readings, rollups and latest values, one transaction per chunk of sensors, then a
    VACUUM ANALYZE so that the reads find hint bits, a visibility map and statistics in place, as
    they would on a database that autovacuum has looked after.

    The cluster is shared, and other work may restart it: a chunk whose connection is lost is
    rolled back by the server and loaded again on a new connection."""
    per_sensor = max(1, reading_count // sensor_count)
    step_s = days * 86400 / per_sensor
    end = datetime.now(UTC)
    total = per_sensor * sensor_count
    print(
        f"loading {sensor_count:,} sensors x {per_sensor:,} readings = {total:,} readings over {days:g} days"
        f" (one every {step_s:.0f} s per sensor), staged by {method}"
    )
    stage = LOADERS[method]
    readings_s = rollups_s = 0.0
    done = 0
    conn = loading_session(url)
    try:
        sensors = make_sensors(conn, sensor_count, step_s)
        conn.commit()
        size = max(1, chunk_rows // per_sensor)
        started = time.perf_counter()
        for part in chunks(sensors, size):
            for attempt in range(10):
                try:
                    t0 = time.perf_counter()
                    stage(conn, part, end, per_sensor, step_s)
                    conn.execute(_FROM_BATCH[0])
                    t1 = time.perf_counter()
                    for statement in _FROM_BATCH[1:]:
                        conn.execute(statement)
                    conn.execute("TRUNCATE batch")
                    conn.commit()
                    t2 = time.perf_counter()
                    break
                except psycopg.OperationalError as exc:
                    if attempt == 9:
                        raise
                    print(f"  connection lost ({str(exc).strip()[:80]}); loading the chunk again", flush=True)
                    conn.close()
                    wait_until(lambda: _connects(url), timeout=120, interval=1, what="the database back")
                    conn = loading_session(url)
            readings_s += t1 - t0
            rollups_s += t2 - t1
            done += len(part) * per_sensor
            elapsed = time.perf_counter() - started
            print(
                f"  {done:>12,} / {total:,} readings  {elapsed:7.1f} s"
                f"  readings {done / readings_s:>9,.0f}/s  with rollups {done / elapsed:>9,.0f}/s",
                flush=True,
            )
    finally:
        conn.close()
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("sensors", "latest", "readings", "readings_1m", "readings_1h"):
            conn.execute(f"VACUUM (ANALYZE) {table}")
    analyze_s = time.perf_counter() - t0
    print(f"  VACUUM ANALYZE {analyze_s:.1f} s")
    return LoadStats(total, readings_s, rollups_s, analyze_s)


def _connects(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=2).close()
        return True
    except psycopg.OperationalError:
        return False


def database_summary(url: str) -> str:
    """What the reads run against. Row counts of the hypertables are the planner's (exact after
    the load's ANALYZE): counting 50 million rows would take longer than the whole measurement."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM sensors), (SELECT count(*) FROM latest),"
            " approximate_row_count('readings_1m'), approximate_row_count('readings_1h'),"
            " pg_size_pretty(hypertable_size('readings')), pg_size_pretty(hypertable_size('readings_1m')),"
            " pg_size_pretty(hypertable_size('readings_1h'))"
        ).fetchone()
    return (
        f"sensors {row[0]:,}, latest {row[1]:,}, readings_1m ~{row[2]:,} rows, readings_1h ~{row[3]:,} rows;"
        f" on disk readings {row[4]}, readings_1m {row[5]}, readings_1h {row[6]}"
    )


# ---------------------------------------------------------------------------------------------- the API


def city_token(url: str) -> str:
    """A token of a city operator, who sees every unit: the widest scope short of an admin."""
    with psycopg.connect(url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM users WHERE username = %s", (BENCH_USER,)).fetchone():
            create_user(conn, BENCH_USER, "city_operator", [], "pw")
        return create_token(conn, BENCH_USER, "bench", 1)


# ---------------------------------------------------------------------------------------------- measuring


@dataclass
class Result:
    name: str
    goal_ms: float
    api_ms: list[float]
    bare_ms: list[float]

    @staticmethod
    def pct(values: list[float], p: int) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[p - 1]

    @property
    def passed(self) -> bool:
        return self.pct(self.api_ms, 95) < self.goal_ms


def timed(call: Callable[[int], Any], n: int) -> list[float]:
    """Milliseconds of each of ``n`` calls, one after another, after a few unmeasured ones that
    open connections and prepare statements. The call gets its index to pick its own target."""
    for i in range(WARMUP):
        call(i)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def history_sql(source: str, by: str) -> str:
    """The routes' history query (ioc_api/routes/readings.py), for one sensor or one unit."""
    time_col, aggregates = _SOURCES[source]
    where = (
        "sensor_id = %(sensor)s" if by == "sensor" else "sensor_id IN (SELECT id FROM sensors WHERE unit_id = %(unit)s)"
    )
    return (
        f"SELECT time_bucket(%(bucket)s, {time_col}) AS time, {aggregates} FROM {source}"
        f" WHERE {where} AND metric = %(metric)s"
        f" AND {time_col} >= %(start)s AND {time_col} < %(end)s GROUP BY 1 ORDER BY 1"
    )


def measure(url: str, port: int, token: str, n: int, seed: int) -> list[Result]:
    with psycopg.connect(url, autocommit=True) as conn:
        sensors = conn.execute("SELECT s.id, l.metric FROM sensors s JOIN latest l ON l.sensor_id = s.id").fetchall()
        units = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT s.unit_id FROM sensors s JOIN latest l ON l.sensor_id = s.id WHERE l.metric = 'pm25'"
            )
        ]
    rng = random.Random(seed)
    picked_sensors = [rng.choice(sensors) for _ in range(n + WARMUP)]
    picked_units = [rng.choice(units) for _ in range(n + WARMUP)]
    now = datetime.now(UTC)
    day, week = now - timedelta(hours=24), now - timedelta(days=7)
    sensor_sql, unit_sql = history_sql(choose_source(60), "sensor"), history_sql(choose_source(3600), "unit")

    results = []
    with (
        httpx.Client(
            base_url=f"http://127.0.0.1:{port}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=120
        ) as http,
        psycopg.connect(url, autocommit=True) as conn,
    ):

        def get(path: str, params: dict | None = None) -> httpx.Response:
            response = http.get(path, params=params)
            response.raise_for_status()
            return response

        body = get("/latest").json()
        print(f"  /latest: {len(body['features']):,} features, {len(get('/latest').content) / 1e6:.1f} MB")
        sample = get(
            f"/sensors/{picked_sensors[0][0]}/readings",
            {"metric": picked_sensors[0][1], "bucket": "1m", "start": day.isoformat(), "end": now.isoformat()},
        ).json()
        print(f"  /sensors/{{id}}/readings: {len(sample['buckets'])} buckets from {sample['source']}")
        sample = get(
            f"/units/{picked_units[0]}/readings",
            {"metric": "pm25", "bucket": "1h", "start": week.isoformat(), "end": now.isoformat()},
        ).json()
        print(f"  /units/{{id}}/readings: {len(sample['buckets'])} buckets from {sample['source']}")

        latest_params = {"scope": None, "unit": None, "kind": None}
        results.append(
            Result(
                "GET /latest (all sensors)",
                100,
                timed(lambda i: get("/latest"), n),
                timed(lambda i: conn.execute(_LATEST, latest_params).fetchone(), n),
            )
        )

        def sensor_api(i: int) -> None:
            sensor, metric = picked_sensors[i % len(picked_sensors)]
            get(
                f"/sensors/{sensor}/readings",
                {"metric": metric, "bucket": "1m", "start": day.isoformat(), "end": now.isoformat()},
            )

        def sensor_bare(i: int) -> None:
            sensor, metric = picked_sensors[i % len(picked_sensors)]
            params = {"bucket": timedelta(minutes=1), "sensor": sensor, "metric": metric, "start": day, "end": now}
            conn.execute(sensor_sql, params).fetchall()

        results.append(Result("GET /sensors/{id}/readings 24h@1m", 50, timed(sensor_api, n), timed(sensor_bare, n)))

        def unit_api(i: int) -> None:
            unit = picked_units[i % len(picked_units)]
            get(
                f"/units/{unit}/readings",
                {"metric": "pm25", "bucket": "1h", "start": week.isoformat(), "end": now.isoformat()},
            )

        def unit_bare(i: int) -> None:
            unit = picked_units[i % len(picked_units)]
            params = {"bucket": timedelta(hours=1), "unit": unit, "metric": "pm25", "start": week, "end": now}
            conn.execute(unit_sql, params).fetchall()

        results.append(Result("GET /units/{id}/readings 7d@1h", 200, timed(unit_api, n), timed(unit_bare, n)))
    return results


def print_summary(results: list[Result], n: int) -> None:
    print(f"\nREST latency, {n} sequential requests each (ms); bare = the route's SQL sent directly with psycopg")
    header = (
        f"  {'query':<36} {'p50':>7} {'p95':>7} {'goal p95':>9}  {'bare p50':>8} {'bare p95':>8}"
        f" {'ratio p50':>9} {'ratio p95':>9}  verdict"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for r in results:
        p50, p95 = r.pct(r.api_ms, 50), r.pct(r.api_ms, 95)
        b50, b95 = r.pct(r.bare_ms, 50), r.pct(r.bare_ms, 95)
        print(
            f"  {r.name:<36} {p50:7.1f} {p95:7.1f} {'< ' + format(r.goal_ms, 'g'):>9}  {b50:8.1f} {b95:8.1f}"
            f" {p50 / b50:9.2f} {p95 / b95:9.2f}  {'met' if r.passed else 'MISSED'}"
        )


# ---------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sensors", type=int, default=10_000, help="sensors, spread over the 94 units")
    parser.add_argument("--readings", type=int, default=50_000_000, help="readings in all, evenly spaced per sensor")
    parser.add_argument("--days", type=float, default=7, help="the readings span the last DAYS days")
    parser.add_argument("--requests", type=int, default=50, help="measured requests per query")
    parser.add_argument("--chunk-rows", type=int, default=1_000_000, help="readings per load transaction")
    parser.add_argument("--load-method", choices=sorted(LOADERS), default="generate", help="how readings are made")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random sensor and unit picks")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end (its URL is printed)")
    parser.add_argument("--database-url", help="reuse a database loaded by an earlier run: no load, no drop")
    args = parser.parse_args()

    name = None
    broker = Broker()
    service = None
    try:
        if args.database_url:
            url = args.database_url
            print(f"reusing {url}")
        else:
            name, url = create_database("ioc_bench_rest")
            print(f"database {name}")
            stats = load(url, args.sensors, args.readings, args.days, args.chunk_rows, args.load_method)
            print(
                f"loaded {stats.readings:,} readings in {stats.total_s:.1f} s: readings {stats.readings_s:.1f} s"
                f" ({stats.readings / stats.readings_s:,.0f}/s), rollups and latest {stats.rollups_s:.1f} s,"
                f" VACUUM ANALYZE {stats.analyze_s:.1f} s; overall {stats.readings / stats.total_s:,.0f} readings/s"
            )
        print(database_summary(url))
        broker.start()
        service = start_api(
            {"IOC_DATABASE_URL": url, "IOC_MQTT_URL": broker.url_for("api"), "IOC_LOG_LEVEL": "WARNING"}
        )
        port = service.port
        token = city_token(url)
        print(f"API on port {port}; measuring {args.requests} requests per query after {WARMUP} warm-up requests")
        results = measure(url, port, token, args.requests, args.seed)
        print_summary(results, args.requests)
    finally:
        if service:
            service.stop()
        broker.remove()
        if name and not args.keep:
            drop_database(name)
        elif name:
            print(f"kept: --database-url {url}")


if __name__ == "__main__":
    main()
