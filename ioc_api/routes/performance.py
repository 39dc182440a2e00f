"""How fast each unit responds to its alerts: for operators (their units) and as open data."""

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from ioc_api.deps import Db, OpenDb, Staff, check_unit
from ioc_api.problems import PROBLEM_RESPONSES, Problem
from ioc_api.response_times import Period, ResponseTimes, response_times

router = APIRouter(tags=["response times"], responses=PROBLEM_RESPONSES)

Start = Annotated[datetime | None, Query(description="Default: 30 days before end.")]
End = Annotated[datetime | None, Query(description="Default: now.")]
MAX_WINDOW = timedelta(days=366)


def _window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    start, end = (t if t is None or t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end))
    if any(t is not None and not 2000 <= t.year <= 2100 for t in (start, end)):
        raise Problem(422, "start and end lie within the years 2000 to 2100")
    end = end or datetime.now(UTC)
    start = start or end - timedelta(days=30)
    if start >= end:
        raise Problem(422, "start must be before end")
    if end - start > MAX_WINDOW:
        raise Problem(422, "the window may span a year at most")
    return start, end


@router.get("/response-times", summary="Alerts, and times to acknowledge and resolve, per unit, period and severity")
async def operator_response_times(
    db: Db, principal: Staff, period: Period = "day", start: Start = None, end: End = None, unit: str | None = None
) -> list[ResponseTimes]:
    check_unit(principal, unit)
    start, end = _window(start, end)
    return await response_times(db, period, start, end, unit)


@router.get(
    "/open-data/response-times",
    summary="Open data: every unit's response times (no token needed; counts and durations only)",
    responses={200: {"content": {"text/csv": {}}}},
)
async def public_response_times(
    db: OpenDb,
    period: Period = "week",
    start: Start = None,
    end: End = None,
    unit: str | None = None,
    format: Literal["json", "csv"] = "json",
) -> list[ResponseTimes]:
    start, end = _window(start, end)
    rows = await response_times(db, period, start, end, unit)
    if format == "json":
        return rows
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(ResponseTimes.model_fields))
    writer.writeheader()
    writer.writerows(r.model_dump(mode="json") for r in rows)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8")
