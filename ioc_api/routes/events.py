"""Stored events, newest first or from a cursor onwards, within the caller's units."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from ioc_api.deps import Db, Staff, check_unit
from ioc_api.models import EventPage
from ioc_api.problems import PROBLEM_RESPONSES
from ioc_core.events import COLUMNS, SEVERITIES, from_row, severity_at_least

router = APIRouter(tags=["events"], responses=PROBLEM_RESPONSES)


@router.get("/events", summary="Events with cursor pagination")
async def list_events(
    db: Db,
    principal: Staff,
    after: Annotated[int | None, Query(description="Events with a larger id, oldest first.")] = None,
    before: Annotated[int | None, Query(description="Events with a smaller id, newest first.")] = None,
    unit: str | None = None,
    kind: Annotated[str | None, Query(description="A kind (alert.opened) or a prefix ending in a dot (alert.)")] = None,
    min_severity: Literal[SEVERITIES] = "info",  # type: ignore[valid-type]
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    check_unit(principal, unit)
    ascending = after is not None
    cur = await db.execute(
        f"SELECT {COLUMNS} FROM events WHERE (%(unit)s::text IS NULL OR unit_id = %(unit)s)"
        " AND (%(kind)s::text IS NULL OR kind = %(kind)s OR (right(%(kind)s, 1) = '.' AND starts_with(kind, %(kind)s)))"
        " AND severity = ANY(%(severities)s) AND (%(after)s::bigint IS NULL OR id > %(after)s)"
        " AND (%(before)s::bigint IS NULL OR id < %(before)s)"
        f" ORDER BY id {'ASC' if ascending else 'DESC'} LIMIT %(limit)s",
        {
            "unit": unit,
            "kind": kind,
            "severities": severity_at_least(min_severity),
            "after": after,
            "before": before,
            "limit": limit,
        },
    )
    events = [from_row(r) for r in await cur.fetchall()]
    return EventPage(events=events, next=events[-1].id if len(events) == limit else None)
