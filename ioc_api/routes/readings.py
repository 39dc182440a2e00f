"""Readings: bucketed history of a sensor or a unit, and the latest values of every sensor.

History reads the coarsest table that answers: hourly rollups for buckets that are whole hours,
1-minute rollups for whole minutes, raw readings otherwise. Rollups are current to within
``IOC_ROLLUP_INTERVAL_S``.
"""

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from psycopg import AsyncConnection
from psycopg.rows import class_row

from ioc_api.deps import Anyone, Db, HistoryDb, check_unit, open_data_only, scope_of, scoped_connection
from ioc_api.models import METRIC_PATTERN, Bucket, Series
from ioc_api.problems import PROBLEM_RESPONSES, Problem

router = APIRouter(tags=["readings"], responses=PROBLEM_RESPONSES)

_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_BUCKETS = 10_000

# What each table aggregates into a bucket of %(bucket)s.
_SOURCES = {
    "readings": (
        "time",
        "avg(value) AS avg, min(value) AS min, max(value) AS max, last(value, time) AS last, count(*) AS count",
    ),
    "readings_1m": (
        "bucket",
        "sum(avg * count) / sum(count) AS avg, min(min) AS min, max(max) AS max,"
        " last(last, last_time) AS last, sum(count)::bigint AS count",
    ),
}
_SOURCES["readings_1h"] = _SOURCES["readings_1m"]


def parse_bucket(text: str) -> int:
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise Problem(422, f"bucket {text!r} is not a duration such as 30s, 1m, 15m, 1h or 1d")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def choose_source(bucket_s: int) -> str:
    if bucket_s % 3600 == 0:
        return "readings_1h"
    if bucket_s % 60 == 0:
        return "readings_1m"
    return "readings"


def _window(start: datetime | None, end: datetime | None, bucket_s: int) -> tuple[datetime, datetime]:
    end = end or datetime.now(UTC)
    start = start or end - timedelta(hours=24)
    if start >= end:
        raise Problem(422, "start must be before end")
    if (end - start).total_seconds() / bucket_s > MAX_BUCKETS:
        raise Problem(422, f"more than {MAX_BUCKETS} buckets: choose a larger bucket or a shorter window")
    return start, end


Start = Annotated[datetime | None, Query(description="Default: 24 hours before end.")]
End = Annotated[datetime | None, Query(description="Default: now.")]
BucketText = Annotated[str, Query(description="Bucket width: 30s, 1m, 15m, 1h, 1d ...", examples=["1m"])]
Metric = Annotated[str, Query(pattern=METRIC_PATTERN, examples=["pm25"])]


async def _series(
    db: AsyncConnection, sensors: str, params: dict, metric: str, start, end, bucket: str
) -> tuple[int, str, list]:
    """Buckets of ``metric`` over the sensors that ``sensors`` (a condition on the sensors table,
    ``%(...)s`` from params) picks, from the coarsest table that answers the bucket width.

    Readings carry no unit: they are read through ``sensors``, whose rows the caller's scope
    holds, so a sensor outside it has no readings here whatever the condition says."""
    bucket_s = parse_bucket(bucket)
    start, end = _window(start, end, bucket_s)
    source = choose_source(bucket_s)
    time_col, aggregates = _SOURCES[source]
    async with db.cursor(row_factory=class_row(Bucket)) as cur:
        await cur.execute(
            f"SELECT time_bucket(%(bucket)s, {time_col}) AS time, {aggregates} FROM {source}"
            f" WHERE sensor_id IN (SELECT id FROM sensors WHERE {sensors}) AND metric = %(metric)s"
            f" AND {time_col} >= %(start)s AND {time_col} < %(end)s GROUP BY 1 ORDER BY 1",
            {**params, "bucket": timedelta(seconds=bucket_s), "metric": metric, "start": start, "end": end},
        )
        return bucket_s, source, await cur.fetchall()


@router.get("/sensors/{sensor_id}/readings", summary="Bucketed history of one sensor metric")
async def sensor_history(
    sensor_id: str,
    metric: Metric,
    db: Db,
    history: HistoryDb,
    principal: Anyone,
    start: Start = None,
    end: End = None,
    bucket: BucketText = "1m",
) -> Series:
    cur = await db.execute(
        "SELECT 1 FROM sensors WHERE id = %s AND (tenant IS NULL OR NOT %s)", (sensor_id, open_data_only(principal))
    )
    if await cur.fetchone() is None:  # unknown, or outside the caller's scope (a partner's, for the public)
        raise Problem(404, f"no sensor {sensor_id!r}")
    bucket_s, source, buckets = await _series(
        history, "id = %(sensor)s", {"sensor": sensor_id}, metric, start, end, bucket
    )
    return Series(sensor_id=sensor_id, metric=metric, bucket_seconds=bucket_s, source=source, buckets=buckets)


@router.get("/units/{unit_id}/readings", summary="Bucketed history of a metric over every sensor of a unit")
async def unit_history(
    unit_id: str,
    metric: Metric,
    history: HistoryDb,
    principal: Anyone,
    start: Start = None,
    end: End = None,
    bucket: BucketText = "1h",
) -> Series:
    check_unit(principal, unit_id)
    bucket_s, source, buckets = await _series(
        history,
        "unit_id = %(unit)s AND (tenant IS NULL OR NOT %(open_only)s)",
        {"unit": unit_id, "open_only": open_data_only(principal)},
        metric,
        start,
        end,
        bucket,
    )
    return Series(unit_id=unit_id, metric=metric, bucket_seconds=bucket_s, source=source, buckets=buckets)


_LATEST = """
SELECT json_build_object('type', 'FeatureCollection', 'features', coalesce(json_agg(f ORDER BY f.id), '[]'::json))::text
FROM (
  SELECT s.id, 'Feature' AS type,
         CASE WHEN s.lat IS NULL OR s.lon IS NULL THEN NULL
              ELSE json_build_object('type', 'Point', 'coordinates', json_build_array(s.lon, s.lat)) END AS geometry,
         json_build_object('kind', s.kind, 'name', s.name, 'unit_id', s.unit_id, 'status', s.status,
                           'registered', s.registered, 'interval_s', s.interval_s,
                           'values', coalesce(v.values, '{}'::json)) AS properties
  FROM sensors s
  LEFT JOIN LATERAL (
    SELECT json_object_agg(l.metric, json_build_object('value', l.value, 'time', l.time)) AS values
    FROM latest l WHERE l.sensor_id = s.id
  ) v ON true
  WHERE (%(unit)s::text IS NULL OR s.unit_id = %(unit)s) AND (%(kind)s::text IS NULL OR s.kind = %(kind)s)
    AND (s.tenant IS NULL OR NOT %(open_only)s)
) f
"""


@router.get(
    "/latest",
    summary="The latest value of every metric of every sensor, as a GeoJSON FeatureCollection",
    response_class=Response,
    responses={200: {"content": {"application/geo+json": {}}}},
)
async def latest(request: Request, principal: Anyone, unit: str | None = None, kind: str | None = None) -> Response:
    """Callers of the same scope share one body, renewed in the background: values are at most
    twice ``IOC_LATEST_MAX_AGE_S`` old (the live WebSocket has them as they change)."""
    check_unit(principal, unit)
    scope, open_only = scope_of(principal), open_data_only(principal)
    pool = request.app.state.pool

    async def render() -> str:
        async with scoped_connection(pool, scope) as conn:
            cur = await conn.execute(_LATEST, {"unit": unit, "kind": kind, "open_only": open_only})
            return (await cur.fetchone())[0]

    body = await request.app.state.latest_bodies.get((scope, open_only, unit, kind), render)
    return Response(body, media_type="application/geo+json")
