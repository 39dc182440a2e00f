"""Open data: a sensor kind's hourly readings for one day, as CSV or JSON, for anyone (no token).

Read from the hourly rollup (``readings_1h``) of the sensors the public sees, as NGSI-LD shows them
to anyone: registered, the city's own (not a partner's) and not a drill's. The database renders
the body in one pass (``COPY`` for CSV, ``json_agg`` for JSON): a day of a kind of 10,000 sensors
is several hundred thousand rows, which row objects in Python would take seconds to write.
Times are the hours' starts in the city's time zone, with its offset.
"""

import re
from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from ioc_api.deps import OpenDb
from ioc_api.problems import PROBLEM_RESPONSES, Problem
from ioc_core.working_days import VIETNAM

router = APIRouter(prefix="/open-data", tags=["open data"], responses=PROBLEM_RESPONSES)

# The sensors anyone may see (ioc_core/ngsild/entities.py: the public sees no drill's and no partner's).
PUBLIC_SENSORS = "s.registered AND NOT s.exercise AND s.tenant IS NULL"
COLUMNS = ("time", "sensor_id", "unit_id", "metric", "mean", "min", "max", "samples")
_FIRST_DAY, _LAST_DAY = date(2000, 1, 1), date(2100, 12, 31)
_ROWS = f"""
SELECT to_char(h.bucket, 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM') AS time, h.sensor_id, s.unit_id, h.metric,
       h.avg AS mean, h.min, h.max, h.count AS samples
FROM readings_1h h JOIN sensors s ON s.id = h.sensor_id
WHERE s.kind = %(kind)s AND {PUBLIC_SENSORS} AND h.bucket >= %(since)s AND h.bucket < %(until)s
ORDER BY h.bucket, h.sensor_id, h.metric
"""
MEDIA = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


async def public_kinds(db: OpenDb) -> list[str]:
    """The sensor kinds anyone may read: those of the sensors the public sees."""
    cur = await db.execute(f"SELECT DISTINCT s.kind FROM sensors s WHERE {PUBLIC_SENSORS} ORDER BY 1")
    return [row[0] for row in await cur.fetchall()]


def _day(day: date | None) -> tuple[date, datetime, datetime]:
    day = day or datetime.now(VIETNAM).date() - timedelta(days=1)
    if not _FIRST_DAY <= day <= _LAST_DAY:
        raise Problem(422, f"date must be within {_FIRST_DAY} to {_LAST_DAY}")
    since = datetime.combine(day, time(), VIETNAM)
    return day, since, datetime.combine(day + timedelta(days=1), time(), VIETNAM)


@router.get(
    "/readings",
    summary="Open data: one day of a sensor kind's hourly mean, min and max per sensor and metric (CSV or JSON)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, "application/json": {}}}},
)
async def open_readings(
    db: OpenDb,
    kind: Annotated[str, Query(max_length=64, description="A sensor kind.", examples=["air_quality"])],
    date: Annotated[date | None, Query(description="A day in the city's time zone. Default: yesterday.")] = None,
    format: Literal["json", "csv"] = "json",
) -> Response:
    day, since, until = _day(date)
    found = await db.execute(f"SELECT EXISTS (SELECT 1 FROM sensors s WHERE s.kind = %s AND {PUBLIC_SENSORS})", (kind,))
    if not (await found.fetchone())[0]:
        kinds = await public_kinds(db)
        raise Problem(422, f"no sensor kind {kind!r}: one of {', '.join(kinds) or 'none yet'}")
    # The hours' starts are written in the city's time, for this transaction only.
    await db.execute("SELECT set_config('TimeZone', %s, true)", (VIETNAM.key,))
    params = {"kind": kind, "since": since, "until": until}
    if format == "json":
        fields = ", ".join(f"'{c}', r.{c}" for c in COLUMNS)
        cur = await db.execute(
            f"SELECT coalesce(json_agg(json_build_object({fields}) ORDER BY r.time, r.sensor_id, r.metric), '[]')::text"
            f" FROM ({_ROWS}) r",
            params,
        )
        body = (await cur.fetchone())[0].encode()
    else:
        async with db.cursor() as cur, cur.copy(f"COPY ({_ROWS}) TO STDOUT WITH (FORMAT csv, HEADER)", params) as copy:
            body = b"".join([bytes(chunk) async for chunk in copy])
    name = re.sub(r"[^A-Za-z0-9_-]", "_", kind)
    disposition = f'inline; filename="readings-{name}-{day.isoformat()}.{format}"'
    return Response(body, media_type=MEDIA[format], headers={"Content-Disposition": disposition})
