"""The civic sprint: how fast each unit handles citizens' reports, published for all, as JSON and
CSV, by day, week or month, per unit and category; and the units ranked.

Counted on the tickets received in the period: received, resolved (or closed), resolved by their
deadline, the median and 90th percentile of working hours from received to resolved, and those
open past their deadline now. Rejected tickets count as received only; drills' not at all. Nothing
personal is in it.
Bodies are shared for ``IOC_SPRINT_MAX_AGE_S`` by every caller asking the same question.
"""

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ioc_api.deps import EVERY_UNIT, scoped_connection
from ioc_api.problems import PROBLEM_RESPONSES, Problem
from ioc_core.working_days import VIETNAM

router = APIRouter(prefix="/open/sprint", tags=["civic sprint (open data)"], responses=PROBLEM_RESPONSES)
Period = Literal["day", "week", "month"]
_MAX_DAYS = 400

_FIGURES = """
    count(*) AS received,
    count(*) FILTER (WHERE state IN ('resolved', 'closed')) AS resolved,
    count(*) FILTER (WHERE state IN ('resolved', 'closed') AND on_time) AS resolved_on_time,
    round((percentile_cont(0.5) WITHIN GROUP (ORDER BY working_s)
           FILTER (WHERE state IN ('resolved', 'closed')) / 3600)::numeric, 2)::float AS median_working_hours,
    round((percentile_cont(0.9) WITHIN GROUP (ORDER BY working_s)
           FILTER (WHERE state IN ('resolved', 'closed')) / 3600)::numeric, 2)::float AS p90_working_hours,
    count(*) FILTER (WHERE state IN ('received', 'accepted', 'in_progress') AND deadline_at < %(now)s) AS overdue_now
"""
COLUMNS = (
    "received",
    "resolved",
    "resolved_on_time",
    "median_working_hours",
    "p90_working_hours",
    "overdue_now",
)


def _window(start: date | None, end: date | None) -> tuple[datetime, datetime]:
    today = datetime.now(VIETNAM).date()
    end = end or today
    if not date(2000, 1, 1) <= end <= date(2100, 12, 31):
        raise Problem(422, "start comes before end, both within 2000 to 2100")
    start = start or end - timedelta(days=29)
    if not date(2000, 1, 1) <= start <= end <= date(2100, 12, 31):
        raise Problem(422, "start comes before end, both within 2000 to 2100")
    if (end - start).days > _MAX_DAYS:
        raise Problem(422, f"start and end are {_MAX_DAYS} days apart at most")
    as_time = lambda d: datetime.combine(d, datetime.min.time(), VIETNAM)  # noqa: E731
    return as_time(start), as_time(end + timedelta(days=1))


MEDIA = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def _render(rows: list[dict], fmt: str) -> str:
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["unit_id", *COLUMNS])
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()
    return orjson.dumps(rows).decode()


async def _query(request: Request, sql: str, params: dict) -> list[dict]:
    async with scoped_connection(request.app.state.pool, EVERY_UNIT) as conn:
        cur = await conn.execute(sql, {**params, "now": datetime.now(UTC)})
        names = [c.name for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]


@router.get("", summary="Reports handled per unit and category, by day, week or month (JSON or CSV)")
async def sprint(
    request: Request,
    period: Period = "month",
    start: date | None = None,
    end: date | None = None,
    unit: Annotated[str | None, Query(max_length=64)] = None,
    category: Annotated[str | None, Query(max_length=40)] = None,
    format: Literal["json", "csv"] = "json",
) -> Response:
    since, until = _window(start, end)
    sql = (
        "SELECT to_char(date_trunc(%(period)s, received_at AT TIME ZONE 'Asia/Ho_Chi_Minh'), 'YYYY-MM-DD') AS period,"
        f" unit_id, category, {_FIGURES} FROM tickets WHERE received_at >= %(since)s AND received_at < %(until)s"
        " AND NOT exercise"
        " AND (%(unit)s::text IS NULL OR unit_id = %(unit)s)"
        " AND (%(category)s::text IS NULL OR category = %(category)s)"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    params = {"period": period, "since": since, "until": until, "unit": unit, "category": category}

    async def render() -> str:
        return _render(await _query(request, sql, params), format)

    body = await request.app.state.sprint_bodies.get(("sprint", tuple(params.items()), format), render)
    return Response(body, media_type=MEDIA[format])


@router.get("/ranking", summary="The units ranked: the share resolved on time, then the median working hours")
async def ranking(
    request: Request,
    start: date | None = None,
    end: date | None = None,
    format: Literal["json", "csv"] = "json",
) -> Response:
    since, until = _window(start, end)
    sql = (
        f"SELECT u.id AS unit_id, u.name AS unit_name, {_FIGURES},"
        " round(count(*) FILTER (WHERE t.state IN ('resolved', 'closed') AND on_time)::numeric"
        "       / nullif(count(*), 0), 3)::float AS on_time_share"
        " FROM units u LEFT JOIN tickets t ON t.unit_id = u.id AND NOT t.exercise AND t.received_at >= %(since)s"
        " AND t.received_at < %(until)s WHERE u.kind <> 'city' GROUP BY u.id, u.name"
        " ORDER BY on_time_share DESC NULLS LAST, median_working_hours NULLS LAST, u.id"
    )
    sql = sql.replace("count(*)", "count(t.id)")
    params = {"since": since, "until": until}

    async def render() -> str:
        rows = await _query(request, sql, params)
        for rank, row in enumerate(rows, 1):
            row["rank"] = rank
        return _render(rows, format)

    body = await request.app.state.sprint_bodies.get(("ranking", since, until, format), render)
    return Response(body, media_type=MEDIA[format])
