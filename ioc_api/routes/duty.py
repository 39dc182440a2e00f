"""Who is on duty, and who is told: duty shifts per unit and role, and the notification rules that
reach people off the screen (by email or a signed webhook), with their escalation chains. Admins
set them; the staff read them; every change is in the audit log."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from ioc_api import audit
from ioc_api.deps import Db, Staff, require
from ioc_api.incident_models import NotificationRule, Shift
from ioc_api.problems import PROBLEM_RESPONSES, Problem
from ioc_api.security import Principal

router = APIRouter(tags=["duty and notifications"], responses=PROBLEM_RESPONSES)
Admin = Annotated[Principal, Depends(require("admin"))]
_RULE_COLUMNS = (
    "id, name, unit_id, incident_types, min_severity, channel, chain, remind_minutes, secret, exercises, enabled"
)


@router.get("/duty-shifts", summary="Shifts of a unit (or every unit), those running at a moment (default: now)")
async def shifts(
    db: Db, principal: Staff, unit: str | None = None, at: datetime | None = None, role: str | None = None
) -> list[Shift]:
    async with db.cursor(row_factory=class_row(Shift)) as cur:
        await cur.execute(
            "SELECT id, unit_id, role, username, starts_at, ends_at FROM duty_shifts"
            " WHERE (%(unit)s::text IS NULL OR unit_id = %(unit)s) AND (%(role)s::text IS NULL OR role = %(role)s)"
            " AND starts_at <= %(at)s AND ends_at > %(at)s ORDER BY unit_id, role, starts_at",
            {"unit": unit, "role": role, "at": at or datetime.now(UTC)},
        )
        return await cur.fetchall()


@router.post("/duty-shifts", status_code=201, summary="Put someone on duty for a unit and role")
async def add_shift(body: Shift, db: Db, principal: Admin) -> Shift:
    if body.ends_at <= body.starts_at:
        raise Problem(422, "a shift ends after it starts")
    for table, column, value in (("units", "id", body.unit_id), ("users", "username", body.username)):
        cur = await db.execute(f"SELECT 1 FROM {table} WHERE {column} = %s", (value,))
        if await cur.fetchone() is None:
            raise Problem(422, f"no {table[:-1]} {value!r}")
    cur = await db.execute(
        "INSERT INTO duty_shifts (unit_id, role, username, starts_at, ends_at) VALUES (%s, %s, %s, %s, %s)"
        " RETURNING id",
        (body.unit_id, body.role, body.username, body.starts_at, body.ends_at),
    )
    shift = body.model_copy(update={"id": (await cur.fetchone())[0]})
    await audit.record(db, principal.username, "duty.add", str(shift.id), shift.model_dump(mode="json"))
    return shift


@router.delete("/duty-shifts/{shift_id}", status_code=204, summary="Remove a shift")
async def remove_shift(shift_id: int, db: Db, principal: Admin) -> None:
    cur = await db.execute("DELETE FROM duty_shifts WHERE id = %s RETURNING id", (shift_id,))
    if await cur.fetchone() is None:
        raise Problem(404, f"no shift {shift_id}")
    await audit.record(db, principal.username, "duty.remove", str(shift_id), {})


@router.get("/notification-rules", summary="Who is told of which incidents")
async def rules(db: Db, principal: Admin) -> list[NotificationRule]:
    async with db.cursor(row_factory=class_row(NotificationRule)) as cur:
        await cur.execute(f"SELECT {_RULE_COLUMNS} FROM notification_rules ORDER BY id")
        return await cur.fetchall()


@router.post("/notification-rules", status_code=201, summary="Add a notification rule")
async def add_rule(body: NotificationRule, db: Db, principal: Admin) -> NotificationRule:
    if body.channel == "webhook" and (not body.secret or any(not c.to.startswith("url:") for c in body.chain)):
        raise Problem(422, "a webhook rule signs with a secret and reaches URLs (url:...)")
    if body.channel == "email" and any(c.to.startswith("url:") for c in body.chain):
        raise Problem(422, "an email rule reaches people and addresses, not URLs")
    if (
        body.unit_id is not None
        and not await (await db.execute("SELECT 1 FROM units WHERE id = %s", (body.unit_id,))).fetchone()
    ):
        raise Problem(422, f"no unit {body.unit_id!r}")
    cur = await db.execute(
        "INSERT INTO notification_rules (name, unit_id, incident_types, min_severity, channel, chain, remind_minutes,"
        " secret, exercises, enabled) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            body.name,
            body.unit_id,
            body.incident_types,
            body.min_severity,
            body.channel,
            Jsonb([c.model_dump() for c in body.chain]),
            body.remind_minutes,
            body.secret,
            body.exercises,
            body.enabled,
        ),
    )
    rule = body.model_copy(update={"id": (await cur.fetchone())[0]})
    await audit.record(db, principal.username, "notification_rule.add", str(rule.id), {"name": rule.name})
    return rule


@router.delete("/notification-rules/{rule_id}", status_code=204, summary="Remove a notification rule")
async def remove_rule(rule_id: int, db: Db, principal: Admin) -> None:
    cur = await db.execute("DELETE FROM notification_rules WHERE id = %s RETURNING id", (rule_id,))
    if await cur.fetchone() is None:
        raise Problem(404, f"no notification rule {rule_id}")
    await audit.record(db, principal.username, "notification_rule.remove", str(rule_id), {})
