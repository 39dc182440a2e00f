"""Alerts and what operators do with them: acknowledge, resolve, comment.

Each transition is stored as an event in the same transaction as the change, then pushed live
to the alert's unit.
"""

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from psycopg.rows import class_row, dict_row

from ioc_api import audit
from ioc_api.deps import Db, Operator, Staff, check_unit
from ioc_api.models import Alert, AlertAction, Comment, CommentIn
from ioc_api.problems import PROBLEM_RESPONSES, Problem
from ioc_api.security import Principal
from ioc_core.events import SEVERITIES, Event, Location, Source, insert_event_async, severity_at_least

router = APIRouter(tags=["alerts"], responses=PROBLEM_RESPONSES)

_COLUMNS = (
    "id, rule_id, unit_id, source_type, source_id, metric, severity, state, title, lat, lon, opened_at,"
    " acknowledged_at, acknowledged_by, resolved_at, resolved_by, escalation_level, escalated_at, last_value,"
    " peak_value, count, data, exercise,"
    " (SELECT incident_id FROM incident_members m WHERE m.member_type = 'alert' AND m.member_id = alerts.id)"
    " AS incident_id"
)


@router.get("/alerts", summary="Alerts, filtered by state, unit and severity, most severe and oldest first")
async def list_alerts(
    db: Db,
    principal: Staff,
    state: Annotated[list[Literal["open", "acknowledged", "resolved"]] | None, Query()] = None,
    unit: str | None = None,
    min_severity: Literal[SEVERITIES] = "info",  # type: ignore[valid-type]
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[Alert]:
    check_unit(principal, unit)
    async with db.cursor(row_factory=class_row(Alert)) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM alerts WHERE (%(unit)s::text IS NULL OR unit_id = %(unit)s)"
            " AND state = ANY(%(states)s)"
            " AND severity = ANY(%(severities)s)"
            " ORDER BY array_position(ARRAY['critical','major','minor','info'], severity), opened_at LIMIT %(limit)s",
            {
                "unit": unit,
                "states": state or ["open", "acknowledged"],
                "severities": severity_at_least(min_severity),
                "limit": limit,
            },
        )
        return await cur.fetchall()


async def _alert(db: Db, alert_id: int, lock: bool = False) -> Alert:
    """The alert, if the caller's scope holds it (the database sees to that), with its comments."""
    async with db.cursor(row_factory=class_row(Alert)) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM alerts WHERE id = %s{' FOR UPDATE' if lock else ''}",
            (alert_id,),
        )
        alert = await cur.fetchone()
    if alert is None:
        raise Problem(404, f"no alert {alert_id}")
    async with db.cursor(row_factory=class_row(Comment)) as cur:
        await cur.execute(
            "SELECT id, author, body, created_at FROM alert_comments WHERE alert_id = %s ORDER BY id", (alert_id,)
        )
        alert.comments = await cur.fetchall()
    return alert


@router.get("/alerts/{alert_id}", summary="One alert with its comments")
async def get_alert(alert_id: int, db: Db, principal: Staff) -> Alert:
    return await _alert(db, alert_id)


async def _transition(
    request: Request, db: Db, principal: Principal, alert_id: int, to: str, body: AlertAction
) -> Alert:
    alert = await _alert(db, alert_id, lock=True)
    allowed_from = {"acknowledged": ("open",), "resolved": ("open", "acknowledged")}[to]
    if alert.state not in allowed_from:
        raise Problem(409, f"alert {alert_id} is {alert.state}; it cannot become {to}")
    now = datetime.now(UTC)
    column = "acknowledged" if to == "acknowledged" else "resolved"
    await db.execute(
        f"UPDATE alerts SET state = %s, {column}_at = %s, {column}_by = %s, updated_at = %s WHERE id = %s",
        (to, now, principal.username, now, alert_id),
    )
    if body.comment:
        await db.execute(
            "INSERT INTO alert_comments (alert_id, author, body) VALUES (%s, %s, %s)",
            (alert_id, principal.username, body.comment),
        )
    event = await insert_event_async(
        db,
        Event(
            time=now,
            kind=f"alert.{to}",
            severity=alert.severity,
            unit_id=alert.unit_id,
            source=Source(type=alert.source_type, id=alert.source_id),
            location=Location.of(alert.lat, alert.lon),
            title=alert.title,
            data={"alert_id": alert_id, "state": to, "by": principal.username, "comment": body.comment},
        ),
    )
    await audit.record(db, principal.username, f"alert.{to}", str(alert_id), {"comment": body.comment})
    await db.commit()  # stored before it is pushed
    await request.app.state.bus.publish_event(event)
    return await _alert(db, alert_id)


@router.post("/alerts/{alert_id}/acknowledge", summary="Acknowledge an open alert")
async def acknowledge(
    alert_id: int, db: Db, principal: Operator, request: Request, body: AlertAction | None = None
) -> Alert:
    return await _transition(request, db, principal, alert_id, "acknowledged", body or AlertAction())


@router.post("/alerts/{alert_id}/resolve", summary="Resolve an open or acknowledged alert")
async def resolve(
    alert_id: int, db: Db, principal: Operator, request: Request, body: AlertAction | None = None
) -> Alert:
    return await _transition(request, db, principal, alert_id, "resolved", body or AlertAction())


@router.post("/alerts/{alert_id}/comments", status_code=201, summary="Comment on an alert")
async def comment(alert_id: int, body: CommentIn, db: Db, principal: Operator) -> Comment:
    await _alert(db, alert_id)
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "INSERT INTO alert_comments (alert_id, author, body) VALUES (%s, %s, %s)"
            " RETURNING id, author, body, created_at",
            (alert_id, principal.username, body.body),
        )
        row = await cur.fetchone()
    await audit.record(db, principal.username, "alert.comment", str(alert_id), {"comment_id": row["id"]})
    return Comment(**row)
