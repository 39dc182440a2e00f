"""``python -m bench.ngsild``: latency of the NGSI-LD API against the REST API, on one dataset, in one run.

By default it loads a database of its own: 10,000 air-quality sensors over the 94 units, each with
latest values (PM2.5, PM10, NO2), 1,000 of them with 24 hours of the three metrics at one reading
a minute (4,320,000 readings) and their 1-minute and 1-hour rollups, made as ``bench.rest`` makes
them. ``--database-url`` runs against a database that is already loaded instead (``bench.rest
--keep``: 50 million readings, whose load takes half an hour): nothing is loaded or dropped, and
the figures say which dataset they come from. The API runs as ``python -m ioc_api`` (one process)
on loopback, and a city operator's token, with the IOC's ``@context`` in the ``Link`` header,
asks, request after request:

1. ``GET /ngsi-ld/v1/entities?type=AirQualityObserved&limit=1000``, a page at a time through all
   of them; the same with ``q=pm25>50&count=true``; and a geo-query (``near;maxDistance==2000``
   around Hải Châu). Goal: p95 < 100 ms each.
2. ``GET /ngsi-ld/v1/temporal/entities/{id}``, 24 hours of one entity: normalized, temporalValues,
   normalized PM2.5 alone, aggregatedValues per hour (the hourly rollup). Goal: p95 < 50 ms each.

The baseline is the REST API's answer to the same question, timed in the same rounds (each round
sends every request once, in a rotating order, so that both sides share the machine's noise):
``GET /api/v1/latest?kind=air_quality`` (every air-quality sensor's latest values as GeoJSON, in
one request) for the entity queries; ``GET /api/v1/sensors/{id}/readings`` per metric over the same
24 hours for the temporal ones, from the raw readings (30 s buckets hold one reading each) against
the instances and from the hourly rollup (1 h buckets) against the hourly aggregates.
"""

import argparse
import os
import platform
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from bench.rest import (
    _FROM_BATCH,
    KINDS,
    Kind,
    Result,
    Sensor,
    chunks,
    city_token,
    database_summary,
    loading_session,
    stage_generated,
)
from bench.scratch import create_database, drop_database
from ioc_core.ngsild.entities import iso
from ioc_core.ngsild.jsonld import IOC_CONTEXT_PATH
from ioc_core.settings import Settings
from tests.support import Broker, start_api

LINK = '<{}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
ENTITY_TYPE = "AirQualityObserved"
PAGE = 1000  # the largest page the API gives (MAX_LIMIT)
HAI_CHAU = (108.2208, 16.0678)
NEAR_M = 2000
WARMUP = 20
# The three metrics of an air-quality sensor: a daily cycle plus noise, as bench.rest shapes PM2.5.
AIR_METRICS = (KINDS[0], Kind("air_quality", "pm10", 55.0, 30.0, 15.0), Kind("air_quality", "no2", 25.0, 12.0, 8.0))
# Latest values of the sensors without history: spread wide, so that ``q=pm25>50`` keeps about half.
_LATEST_ONLY = """
INSERT INTO latest (sensor_id, metric, time, value)
SELECT s.id, m.metric, %(end)s::timestamptz - make_interval(secs => 60 * random()), m.low + m.spread * random()
FROM sensors s
CROSS JOIN (VALUES ('pm25', 5.0, 90.0), ('pm10', 10.0, 120.0), ('no2', 5.0, 50.0)) AS m(metric, low, spread)
WHERE NOT EXISTS (SELECT 1 FROM latest l WHERE l.sensor_id = s.id)
"""


# ---------------------------------------------------------------------------------------------- the machine


def machine() -> str:
    """The CPU and how busy it already is: the machine is shared, so a figure needs its context."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{model}, {os.cpu_count()} cores; load average {load}"


# ---------------------------------------------------------------------------------------------- loading


def register(conn: psycopg.Connection, count: int) -> list[str]:
    """``count`` air-quality sensors spread evenly over the units, near each unit's centroid (as
    ``bench.rest`` places its sensors): the ids, in order."""
    units = conn.execute("SELECT id, centroid[0], centroid[1] FROM units WHERE kind <> 'city' ORDER BY id").fetchall()
    if not units:
        raise SystemExit("no units: is the shared reference data there (IOC_SHARED_DIR)?")
    rng = random.Random(42)
    rows = []
    for i in range(count):
        unit_id, lon, lat = units[i % len(units)]
        rows.append(
            (f"bench-{i:06d}", unit_id, (lat or 16.05) + rng.gauss(0, 0.005), (lon or 108.2) + rng.gauss(0, 0.005))
        )
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO sensors (id, kind, name, unit_id, lat, lon, interval_s, status)"
            " VALUES (%s, 'air_quality', %s, %s, %s, %s, 60, 'online')",
            [(i, i, u, lat, lon) for i, u, lat, lon in rows],
        )
    return [r[0] for r in rows]


def load(url: str, sensor_count: int, history_count: int, hours: int, step_s: float, chunk_rows: int) -> str:
    """The default dataset; returns its description. History ends at the current whole hour, so
    that a 24-hour window on whole hours is full and the hourly aggregates read ``readings_1h``.
    Readings, rollups and the history's latest values come from ``bench.rest``'s staging."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    per_series = int(hours * 3600 // step_s)
    rng = random.Random(7)
    t0 = time.perf_counter()
    conn = loading_session(url)
    try:
        ids = register(conn, sensor_count)
        series = [
            Sensor(sensor_id, kind, "", rng.uniform(0, min(step_s, 60.0)))
            for sensor_id in ids[:history_count]
            for kind in sorted(AIR_METRICS, key=lambda k: k.metric)  # (sensor_id, metric): the index's order
        ]
        total = len(series) * per_series
        print(f"loading {total:,} readings ({len(series):,} series x {per_series:,}), with their rollups", flush=True)
        for part in chunks(series, max(1, chunk_rows // per_series)):
            stage_generated(conn, part, end, per_series, step_s)
            for statement in _FROM_BATCH:  # readings, readings_1m, readings_1h, latest
                conn.execute(statement)
            conn.execute("TRUNCATE batch")
            conn.commit()
        conn.execute(_LATEST_ONLY, {"end": end})
        conn.commit()
    finally:
        conn.close()
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("sensors", "latest", "readings", "readings_1m", "readings_1h"):
            conn.execute(f"VACUUM (ANALYZE) {table}")
    print(f"loaded in {time.perf_counter() - t0:.1f} s", flush=True)
    return (
        f"this run's own: {sensor_count:,} air-quality sensors with latest values, {history_count:,} of them with"
        f" {hours} h of pm25/pm10/no2 every {step_s:g} s ({total:,} readings) and their rollups"
    )


def described(url: str) -> str:
    """What a reused database holds (the planner's row count: counting 50 million rows is long)."""
    with psycopg.connect(url) as conn:
        readings = conn.execute("SELECT approximate_row_count('readings')").fetchone()[0]
    return f"reused ({url.rsplit('/', 1)[-1]}): ~{readings:,} readings; {database_summary(url)}"


# ---------------------------------------------------------------------------------------------- measuring


@dataclass
class Line:
    """One figure of the summary: an NGSI-LD request and the REST request(s) that answer the same."""

    name: str
    goal_ms: float | None
    ngsi_ms: list[float]
    baseline: str
    rest_ms: list[float] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.goal_ms is None or Result.pct(self.ngsi_ms, 95) < self.goal_ms


def rounds(calls: dict[str, Callable[[int], object]], n: int) -> dict[str, list[float]]:
    """Milliseconds of each call in each of ``n`` rounds, after ``WARMUP`` unmeasured ones. Each
    round runs every call once, starting one further along each time, so that a stretch of noise
    falls on the NGSI-LD requests and their baselines alike."""
    names = list(calls)
    for i in range(WARMUP):
        for name in names:
            calls[name](i)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(n):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            calls[name](WARMUP + i)
            times[name].append((time.perf_counter() - t0) * 1000)
    return times


def fetch(http: httpx.Client, path: str, params: dict | None = None, headers: dict | None = None) -> httpx.Response:
    response = http.get(path, params=params, headers=headers)
    if response.status_code != 200:
        raise SystemExit(f"GET {path} {params}: {response.status_code} {response.text[:300]}")
    return response


def measure_entities(http: httpx.Client, link: dict[str, str], n: int) -> list[Line]:
    """Pages through every AirQualityObserved, the q and geo-queries, and /latest, in rounds."""
    base = {"type": ENTITY_TYPE, "limit": str(PAGE)}
    t0 = time.perf_counter()
    first = fetch(http, "/ngsi-ld/v1/entities", {**base, "count": "true"}, link)
    total = int(first.headers["NGSILD-Results-Count"])
    print(f"  first query (builds the snapshot): {(time.perf_counter() - t0) * 1000:.0f} ms; {total:,} {ENTITY_TYPE}")
    pages = max(1, -(-total // PAGE))
    seen = set()
    for p in range(pages):
        body = fetch(http, "/ngsi-ld/v1/entities", {**base, "offset": str(p * PAGE)}, link).json()
        seen.update(e["id"] for e in body)
    if len(seen) != total:
        raise SystemExit(f"{pages} pages gave {len(seen):,} distinct entities, not {total:,}")
    q = {**base, "q": "pm25>50", "count": "true"}
    geo = {
        **base,
        "georel": f"near;maxDistance=={NEAR_M}",
        "geometry": "Point",
        "coordinates": f"[{HAI_CHAU[0]},{HAI_CHAU[1]}]",
        "count": "true",
    }
    for label, params in (("q=pm25>50", q), (f"near {NEAR_M} m of Hải Châu", geo)):
        r = fetch(http, "/ngsi-ld/v1/entities", params, link)
        print(f"  {label}: {r.headers['NGSILD-Results-Count']} match, page of {len(r.json())} ({len(r.content):,} B)")
    page = fetch(http, "/ngsi-ld/v1/entities", base, link)
    latest = fetch(http, "/api/v1/latest", {"kind": "air_quality"})
    print(
        f"  a page: {len(page.json())} entities, {len(page.content):,} B; /latest?kind=air_quality:"
        f" {len(latest.json()['features']):,} features, {len(latest.content):,} B"
    )

    times = rounds(
        {
            "page": lambda i: fetch(http, "/ngsi-ld/v1/entities", {**base, "offset": str(i % pages * PAGE)}, link),
            "q": lambda i: fetch(http, "/ngsi-ld/v1/entities", q, link),
            "geo": lambda i: fetch(http, "/ngsi-ld/v1/entities", geo, link),
            "latest": lambda i: fetch(http, "/api/v1/latest", {"kind": "air_quality"}),
        },
        n,
    )
    # A sweep: the pages of one pass through every entity, requested one after another.
    sweeps = [sum(times["page"][k : k + pages]) for k in range(0, len(times["page"]) - pages + 1, pages)]
    rest = f"/latest?kind=air_quality ({total:,} in one)"
    return [
        Line(f"page of {PAGE} of {total:,}", 100, times["page"], rest, times["latest"]),
        Line(f"all {total:,}: {pages} pages in a row", None, sweeps, rest, times["latest"]),
        Line(f"q=pm25>50, count, limit {PAGE}", 100, times["q"], rest, times["latest"]),
        Line(f"geo near {NEAR_M} m, count, limit {PAGE}", 100, times["geo"], rest, times["latest"]),
    ]


def temporal_targets(url: str) -> tuple[list[str], list[str], datetime, datetime]:
    """Sensors with 24 hours of history, their metrics, and the window: the 24 whole hours that end
    at the hour after the newest value (the load's end for this run's dataset; for a reused one,
    the hour its load ended in, whenever that was)."""
    with psycopg.connect(url, autocommit=True) as conn:
        newest = conn.execute(
            "SELECT max(l.time) FROM latest l JOIN sensors s ON s.id = l.sensor_id"
            " WHERE s.kind = 'air_quality' AND l.metric = 'pm25'"
        ).fetchone()[0]
        if newest is None:
            raise SystemExit("no air-quality sensor with a pm25 value in this database")
        end = newest.replace(minute=0, second=0, microsecond=0)
        end = end if end == newest else end + timedelta(hours=1)
        start = end - timedelta(hours=24)
        sensors = [
            r[0]
            for r in conn.execute(
                "SELECT s.id FROM sensors s WHERE s.kind = 'air_quality' AND EXISTS (SELECT 1 FROM readings_1h h"
                " WHERE h.sensor_id = s.id AND h.metric = 'pm25' AND h.bucket = %s) ORDER BY s.id",
                (start,),
            )
        ]
        if not sensors:
            raise SystemExit(f"no air-quality sensor has an hourly pm25 rollup at {start}: is the history there?")
        metrics = [
            r[0] for r in conn.execute("SELECT metric FROM latest WHERE sensor_id = %s ORDER BY metric", (sensors[0],))
        ]
    return sensors, metrics, start, end


def measure_temporal(http: httpx.Client, link: dict[str, str], url: str, n: int, seed: int) -> list[Line]:
    sensors, metrics, start, end = temporal_targets(url)
    rng = random.Random(seed)
    picked = [rng.choice(sensors) for _ in range(WARMUP + n)]
    window = {"timerel": "between", "timeAt": iso(start), "endTimeAt": iso(end)}
    hourly = {"options": "aggregatedValues", "aggrMethods": "totalCount,sum,avg,min,max", "aggrPeriodDuration": "PT1H"}
    span = {"start": iso(start), "end": iso(end)}
    print(f"  {len(sensors):,} sensors with history; window {iso(start)} to {iso(end)}; metrics {', '.join(metrics)}")

    def ngsi(i: int, params: dict) -> httpx.Response:
        entity = f"urn:ngsi-ld:{ENTITY_TYPE}:{picked[i]}"
        return fetch(http, f"/ngsi-ld/v1/temporal/entities/{entity}", {**window, **params}, link)

    def rest(i: int, metric: str, bucket: str) -> httpx.Response:
        return fetch(http, f"/api/v1/sensors/{picked[i]}/readings", {"metric": metric, "bucket": bucket, **span})

    sample = ngsi(0, {}).json()
    counts = ", ".join(f"{m} {len(sample.get(m, []))}" for m in metrics)
    aggregates = ngsi(0, hourly).json()["pm25"]["totalCount"]
    raw, per_hour = rest(0, "pm25", "30s").json(), rest(0, "pm25", "1h").json()
    print(
        f"  {picked[0]}: instances {counts}; PT1H {len(aggregates)} periods of {aggregates[0][0]:g} readings;"
        f" REST 30s {len(raw['buckets'])} buckets from {raw['source']}, 1h {len(per_hour['buckets'])} from"
        f" {per_hour['source']}"
    )
    if len(aggregates) != 24 or per_hour["source"] != "readings_1h" or raw["source"] != "readings":
        raise SystemExit("the window does not read what it should: 24 hourly periods, raw readings for 30 s buckets")

    calls: dict[str, Callable[[int], object]] = {
        "normalized": lambda i: ngsi(i, {}),
        "temporalValues": lambda i: ngsi(i, {"options": "temporalValues"}),
        "pm25": lambda i: ngsi(i, {"attrs": "pm25"}),
        "hourly": lambda i: ngsi(i, hourly),
    }
    for metric in metrics:
        calls[f"raw {metric}"] = lambda i, m=metric: rest(i, m, "30s")
        calls[f"1h {metric}"] = lambda i, m=metric: rest(i, m, "1h")
    times = rounds(calls, n)
    raw_all = [sum(t) for t in zip(*(times[f"raw {m}"] for m in metrics), strict=True)]
    hourly_all = [sum(t) for t in zip(*(times[f"1h {m}"] for m in metrics), strict=True)]
    each = f"{len(metrics)} metric{'s' if len(metrics) > 1 else ''}, one request each"
    return [
        Line("24 h, normalized (all attributes)", 50, times["normalized"], f"raw (30s), {each}", raw_all),
        Line("24 h, temporalValues (all)", 50, times["temporalValues"], f"raw (30s), {each}", raw_all),
        Line("24 h, normalized, attrs=pm25", 50, times["pm25"], "raw (30s), pm25", times["raw pm25"]),
        Line("24 h, aggregatedValues PT1H (all)", 50, times["hourly"], f"1h buckets, {each}", hourly_all),
    ]


def print_summary(title: str, lines: list[Line]) -> None:
    pct = Result.pct
    print(f"\n{title}")
    header = (
        f"  {'NGSI-LD request':<38} {'n':>4} {'p50':>7} {'p95':>7} {'goal p95':>9}  {'REST baseline':<38}"
        f" {'p50':>7} {'p95':>7} {'ratio p50':>9} {'ratio p95':>9}  verdict"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for line in lines:
        p50, p95 = pct(line.ngsi_ms, 50), pct(line.ngsi_ms, 95)
        b50, b95 = pct(line.rest_ms, 50), pct(line.rest_ms, 95)
        goal = f"< {line.goal_ms:g}" if line.goal_ms is not None else ""
        verdict = "" if line.goal_ms is None else ("met" if line.passed else "MISSED")
        print(
            f"  {line.name:<38} {len(line.ngsi_ms):>4} {p50:7.1f} {p95:7.1f} {goal:>9}  {line.baseline:<38}"
            f" {b50:7.1f} {b95:7.1f} {p50 / b50:9.2f} {p95 / b95:9.2f}  {verdict}"
        )


# ---------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sensors", type=int, default=10_000, help="air-quality sensors, spread over the 94 units")
    parser.add_argument("--history-sensors", type=int, default=1_000, help="of which with a history")
    parser.add_argument("--hours", type=int, default=24, help="hours of history, ending at the current whole hour")
    parser.add_argument("--step-s", type=float, default=60, help="seconds between a metric's readings")
    parser.add_argument("--chunk-rows", type=int, default=1_000_000, help="readings per load transaction")
    parser.add_argument("--requests", type=int, default=300, help="measured rounds (one request of each kind)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random entity picks")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end (its URL is printed)")
    parser.add_argument("--database-url", help="run against a loaded database (bench.rest --keep): no load, no drop")
    parser.add_argument(
        "--ngsild-max-age-s",
        type=float,
        help="the API's IOC_NGSILD_MAX_AGE_S (default: the API's own): a long age leaves out the snapshot's rebuilds",
    )
    args = parser.parse_args()

    print(f"bench.ngsild on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}")
    name = None
    broker = Broker()
    service = None
    try:
        if args.database_url:
            url = args.database_url
            dataset = described(url)
        else:
            name, url = create_database("ioc_bench_ngsild")
            print(f"database {name}")
            made = load(url, args.sensors, args.history_sensors, args.hours, args.step_s, args.chunk_rows)
            dataset = f"{made}; {database_summary(url)}"
        print(f"dataset: {dataset}")
        broker.start()
        env = {"IOC_DATABASE_URL": url, "IOC_MQTT_URL": broker.url_for("api"), "IOC_LOG_LEVEL": "WARNING"}
        if args.ngsild_max_age_s is not None:
            env["IOC_NGSILD_MAX_AGE_S"] = str(args.ngsild_max_age_s)
        service = start_api(env)
        token = city_token(url)
        link = {"Link": LINK.format(f"http://127.0.0.1:{service.port}{IOC_CONTEXT_PATH}")}
        age = env.get("IOC_NGSILD_MAX_AGE_S", f"{Settings().ngsild_max_age_s:g} (default)")
        print(
            f"API on port {service.port} (one process), NGSI-LD snapshot rebuilt when older than {age} s;"
            f" {args.requests} rounds after {WARMUP} warm-up rounds"
        )
        with httpx.Client(
            base_url=f"http://127.0.0.1:{service.port}", headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as http:
            print("entity queries:")
            entities = measure_entities(http, link, args.requests)
            print("temporal queries:")
            temporal = measure_temporal(http, link, url, args.requests, args.seed)
        print(f"\ndataset: {dataset}")
        print(f"machine after: {machine()}")
        print_summary("NGSI-LD entity queries (ms), against REST in the same rounds", entities)
        print_summary("NGSI-LD temporal queries, one entity (ms), against REST in the same rounds", temporal)
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
