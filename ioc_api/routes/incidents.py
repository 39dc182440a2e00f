"""Incidents as the rooms work them: their checklist ticked step by step (who, when, a note, a
photo), approved where the city must, moved through open, responding, stabilised and closed,
acknowledged (which stops their notifications), merged and split, and their timeline exported for
the after-action report. A ward works its own incidents (row-level scope); every action is an event
pushed to the screens, and a line of the audit log.
"""

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response
from psycopg.rows import class_row, dict_row

from ioc_api import audit
from ioc_api.deps import Db, Operator, Staff, check_unit
from ioc_api.incident_models import (
    ChecklistStep,
    Incident,
    IncidentState,
    Member,
    MergeIn,
    NoteIn,
    Notification,
    OwnerIn,
    SplitIn,
    StateIn,
    TimelineEntry,
)
from ioc_api.photos import PhotoRefused, clean
from ioc_api.problems import PROBLEM_RESPONSES, Problem
from ioc_api.security import Principal
from ioc_core.events import Event, Location, Source, insert_event_async

router = APIRouter(tags=["incidents"], responses=PROBLEM_RESPONSES)
CITY_ROLES = ("admin", "city_operator")
_COLUMNS = (
    "i.id, i.unit_id, i.department, i.type, i.title, i.severity, i.state, i.exercise, i.lat, i.lon, i.opened_at,"
    " i.last_member_at, i.members, i.acknowledged_at, i.acknowledged_by, i.closed_at, s.name_vi AS sop_name_vi,"
    " s.name_en AS sop_name_en, s.version AS sop_version, s.source AS sop_source, s.steps AS sop_steps"
)
_FROM = " FROM incidents i LEFT JOIN sops s ON s.id = i.sop_id"


def checklist(row: dict, done: dict[str, dict], now: datetime) -> list[ChecklistStep]:
    """The SOP's steps as this incident works them: due from its start, done or not, overdue."""
    out = []
    for step in row["sop_steps"] or []:
        due = row["opened_at"] + timedelta(minutes=step["due_minutes"])
        worked = done.get(step["key"], {})
        photo = worked.get("photo")
        out.append(
            ChecklistStep(
                **{k: step[k] for k in ("key", "action_vi", "action_en", "role", "tier")},
                approval=step.get("approval", False),
                due_at=due,
                done_at=worked.get("done_at"),
                done_by=worked.get("done_by"),
                note=worked.get("note"),
                photo_url=f"/api/v1/incidents/{row['id']}/photos/{photo}.jpg" if photo else None,
                approved_at=worked.get("approved_at"),
                approved_by=worked.get("approved_by"),
                overdue=not worked and due < now,
            )
        )
    return out


def _incident(row: dict, done: dict[str, dict], now: datetime) -> Incident:
    steps = checklist(row, done, now)
    fields = {k: v for k, v in row.items() if k != "sop_steps"}
    return Incident(
        **fields,
        steps_total=len(steps),
        steps_done=sum(s.done_at is not None for s in steps),
        steps_overdue=sum(s.overdue for s in steps),
        checklist=steps,
    )


async def _worked(db: Db, ids: list[int]) -> dict[int, dict[str, dict]]:
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM incident_steps WHERE incident_id = ANY(%s)", (ids,))
        out: dict[int, dict[str, dict]] = {}
        for r in await cur.fetchall():
            out.setdefault(r["incident_id"], {})[r["step_key"]] = r
        return out


@router.get("/incidents", summary="Incidents, filtered by state and unit; the most severe and oldest first")
async def list_incidents(
    db: Db,
    principal: Staff,
    state: Annotated[list[IncidentState] | None, Query()] = None,
    unit: str | None = None,
    exercise: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[Incident]:
    check_unit(principal, unit)
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS}{_FROM} WHERE i.state = ANY(%(states)s) AND (%(unit)s::text IS NULL OR i.unit_id ="
            " %(unit)s) AND (%(exercise)s::boolean IS NULL OR i.exercise = %(exercise)s)"
            " ORDER BY array_position(ARRAY['critical','major','minor','info'], i.severity), i.opened_at"
            " LIMIT %(limit)s",
            {
                "states": state or ["open", "responding", "stabilised"],
                "unit": unit,
                "exercise": exercise,
                "limit": limit,
            },
        )
        rows = await cur.fetchall()
    worked = await _worked(db, [r["id"] for r in rows])
    now = datetime.now(UTC)
    return [_incident(r, worked.get(r["id"], {}), now) for r in rows]


async def _one(db: Db, incident_id: int, lock: bool = False) -> dict:
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS}{_FROM} WHERE i.id = %s{' FOR UPDATE OF i' if lock else ''}", (incident_id,)
        )
        row = await cur.fetchone()
    if row is None:
        raise Problem(404, f"no incident {incident_id}")
    return row


@router.get("/incidents/{incident_id}", summary="An incident with its checklist and latest members")
async def get_incident(incident_id: int, db: Db, principal: Staff) -> Incident:
    row = await _one(db, incident_id)
    incident = _incident(row, (await _worked(db, [incident_id])).get(incident_id, {}), datetime.now(UTC))
    async with db.cursor(row_factory=class_row(Member)) as cur:
        await cur.execute(
            "SELECT member_type, member_id, kind, severity, unit_id, at, title FROM incident_members"
            " WHERE incident_id = %s ORDER BY at DESC LIMIT 200",
            (incident_id,),
        )
        incident.member_list = await cur.fetchall()
    return incident


async def _record(request: Request, db: Db, row: dict, kind: str, by: str, note: str | None = None, **data) -> None:
    """The action as an event (stored, committed, pushed) and an audit line."""
    event = await insert_event_async(
        db,
        Event(
            time=datetime.now(UTC),
            kind=f"incident.{kind}",
            severity=row["severity"],
            unit_id=row["unit_id"],
            source=Source(type="incident", id=str(row["id"])),
            location=Location.of(row["lat"], row["lon"]),
            title=row["title"],
            data={
                "incident_id": row["id"],
                "type": row["type"],
                "exercise": row["exercise"],
                "by": by,
                "note": note,
                **data,
            },
        ),
    )
    await audit.record(db, by, f"incident.{kind}", str(row["id"]), {"note": note, **data})
    await db.commit()
    await request.app.state.bus.publish_event(event)


def _may_work(principal: Principal, step: dict) -> None:
    """The city may tick any step; others the steps of their role (a ward operator: the ward's)."""
    if principal.role in CITY_ROLES or principal.role == step["role"]:
        return
    if step["tier"] == "ward" and principal.role == "ward_operator":
        return
    raise Problem(403, f"step {step['key']!r} is for the {step['tier']}'s {step['role']}")


@router.post("/incidents/{incident_id}/acknowledge", summary="Acknowledge an incident: its notifications stop")
async def acknowledge(incident_id: int, db: Db, principal: Operator, request: Request) -> Incident:
    row = await _one(db, incident_id, lock=True)
    if row["acknowledged_at"] is None:
        await db.execute(
            "UPDATE incidents SET acknowledged_at = now(), acknowledged_by = %s, updated_at = now() WHERE id = %s",
            (principal.username, incident_id),
        )
        await db.execute(
            "UPDATE notifications SET state = 'cancelled' WHERE incident_id = %s AND state = 'pending'", (incident_id,)
        )
        await _record(request, db, row, "acknowledged", principal.username)
    return await get_incident(incident_id, db, principal)


@router.post("/incidents/{incident_id}/state", summary="Move an incident: open, responding, stabilised, closed")
async def set_state(incident_id: int, body: StateIn, db: Db, principal: Operator, request: Request) -> Incident:
    row = await _one(db, incident_id, lock=True)
    if row["state"] == body.state:
        raise Problem(409, f"incident {incident_id} is {body.state} already")
    await db.execute(
        "UPDATE incidents SET state = %s, closed_at = CASE WHEN %s = 'closed' THEN now() END, updated_at = now()"
        " WHERE id = %s",
        (body.state, body.state, incident_id),
    )
    if body.state == "closed":
        await db.execute(
            "UPDATE notifications SET state = 'cancelled' WHERE incident_id = %s AND state = 'pending'", (incident_id,)
        )
    await _record(
        request, db, {**row, "state": body.state}, body.state, principal.username, body.note, previous=row["state"]
    )
    return await get_incident(incident_id, db, principal)


@router.post("/incidents/{incident_id}/steps/{key}", summary="Tick a step of the checklist (a note, a photo)")
async def tick(
    incident_id: int,
    key: str,
    db: Db,
    principal: Staff,
    request: Request,
    note: Annotated[str | None, Form(max_length=2000)] = None,
    photo: Annotated[UploadFile | None, File()] = None,
) -> Incident:
    row = await _one(db, incident_id, lock=True)
    step = next((s for s in row["sop_steps"] or [] if s["key"] == key), None)
    if step is None:
        raise Problem(404, f"incident {incident_id}'s checklist has no step {key!r}")
    _may_work(principal, step)
    name = None
    if photo is not None:
        limit = request.app.state.settings.photo_max_bytes
        try:
            cleaned = clean(await photo.read(limit + 1), limit)
        except PhotoRefused as exc:
            raise Problem(422, str(exc)) from None
        name = request.app.state.tickets.photos.save(cleaned)
    cur = await db.execute(
        "INSERT INTO incident_steps (incident_id, step_key, done_at, done_by, note, photo)"
        " VALUES (%s, %s, now(), %s, %s, %s) ON CONFLICT DO NOTHING RETURNING step_key",
        (incident_id, key, principal.username, note, name),
    )
    if await cur.fetchone() is None:
        if name:
            request.app.state.tickets.photos.remove([name])
        raise Problem(409, f"step {key!r} of incident {incident_id} is done already")
    await _record(request, db, row, "step_done", principal.username, note, step=key)
    return await get_incident(incident_id, db, principal)


@router.post("/incidents/{incident_id}/steps/{key}/approve", summary="The city approves a step done")
async def approve(incident_id: int, key: str, db: Db, principal: Operator, request: Request) -> Incident:
    if principal.role not in CITY_ROLES:
        raise Problem(403, "the city approves steps")
    row = await _one(db, incident_id, lock=True)
    step = next((s for s in row["sop_steps"] or [] if s["key"] == key), None)
    if step is None or not step.get("approval"):
        raise Problem(404, f"incident {incident_id}'s checklist has no step {key!r} to approve")
    cur = await db.execute(
        "UPDATE incident_steps SET approved_at = now(), approved_by = %s"
        " WHERE incident_id = %s AND step_key = %s AND approved_at IS NULL RETURNING step_key",
        (principal.username, incident_id, key),
    )
    if await cur.fetchone() is None:
        raise Problem(409, f"step {key!r} is not done, or approved already")
    await _record(request, db, row, "step_approved", principal.username, step=key)
    return await get_incident(incident_id, db, principal)


@router.post("/incidents/{incident_id}/owner", summary="Hand the incident to another unit, or to a city department")
async def set_owner(incident_id: int, body: OwnerIn, db: Db, principal: Operator, request: Request) -> Incident:
    if principal.role not in CITY_ROLES:
        raise Problem(403, "the city hands incidents over")
    row = await _one(db, incident_id, lock=True)
    cur = await db.execute("SELECT 1 FROM units WHERE id = %s", (body.unit_id,))
    if await cur.fetchone() is None:
        raise Problem(422, f"no unit {body.unit_id!r}")
    await db.execute(
        "UPDATE incidents SET unit_id = %s, department = %s, updated_at = now() WHERE id = %s",
        (body.unit_id, body.department, incident_id),
    )
    await _record(
        request,
        db,
        {**row, "unit_id": body.unit_id},
        "owner",
        principal.username,
        body.note,
        previous=row["unit_id"],
        department=body.department,
    )
    return await get_incident(incident_id, db, principal)


@router.post("/incidents/{incident_id}/notes", summary="A note on the incident's timeline")
async def add_note(incident_id: int, body: NoteIn, db: Db, principal: Operator, request: Request) -> Incident:
    row = await _one(db, incident_id)
    await _record(request, db, row, "note", principal.username, body.note)
    return await get_incident(incident_id, db, principal)


@router.post("/incidents/{incident_id}/merge", summary="Merge another incident into this one (it closes)")
async def merge(incident_id: int, body: MergeIn, db: Db, principal: Operator, request: Request) -> Incident:
    if body.other == incident_id:
        raise Problem(422, "an incident cannot merge with itself")
    row = await _one(db, incident_id, lock=True)
    other = await _one(db, body.other, lock=True)
    await db.execute("UPDATE incident_members SET incident_id = %s WHERE incident_id = %s", (incident_id, body.other))
    await _recount(db, incident_id)
    await db.execute(
        "UPDATE incidents SET state = 'closed', closed_at = now(), members = 0, updated_at = now() WHERE id = %s",
        (body.other,),
    )
    await db.execute(
        "UPDATE notifications SET state = 'cancelled' WHERE incident_id = %s AND state = 'pending'", (body.other,)
    )
    await _record(request, db, {**other, "state": "closed"}, "merged", principal.username, into=incident_id)
    await _record(request, db, row, "merged_in", principal.username, other=body.other)
    return await get_incident(incident_id, db, principal)


@router.post("/incidents/{incident_id}/split", status_code=201, summary="Move some members to a new incident")
async def split(incident_id: int, body: SplitIn, db: Db, principal: Operator, request: Request) -> Incident:
    row = await _one(db, incident_id, lock=True)
    wanted = [(m.member_type, m.member_id) for m in body.members]
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT member_type, member_id, at, severity, title, lat, lon FROM incident_members"
            " WHERE incident_id = %s AND (member_type, member_id) IN (SELECT * FROM unnest(%s::text[], %s::bigint[]))"
            " ORDER BY at",
            (incident_id, [t for t, _ in wanted], [i for _, i in wanted]),
        )
        moving = await cur.fetchall()
    if len(moving) != len(set(wanted)):
        raise Problem(422, "every member named must be one of this incident's")
    if len(moving) == row["members"]:
        raise Problem(422, "a split leaves at least one member behind")
    first = moving[0]
    cur = await db.execute(
        "INSERT INTO incidents (unit_id, department, type, sop_id, title, severity, exercise, lat, lon, opened_at,"
        " last_member_at) SELECT unit_id, department, type, sop_id, %s, %s, exercise, %s, %s, %s, %s"
        " FROM incidents WHERE id = %s RETURNING id",
        (first["title"], first["severity"], first["lat"], first["lon"], first["at"], moving[-1]["at"], incident_id),
    )
    new_id = (await cur.fetchone())[0]
    await db.execute(
        "UPDATE incident_members SET incident_id = %s WHERE incident_id = %s"
        " AND (member_type, member_id) IN (SELECT * FROM unnest(%s::text[], %s::bigint[]))",
        (new_id, incident_id, [t for t, _ in wanted], [i for _, i in wanted]),
    )
    for changed in (incident_id, new_id):
        await _recount(db, changed)
    new_row = await _one(db, new_id)
    await _record(request, db, new_row, "opened", principal.username, split_from=incident_id)
    await _record(request, db, row, "split", principal.username, into=new_id, members=len(moving))
    return await get_incident(new_id, db, principal)


async def _recount(db: Db, incident_id: int) -> None:
    """Members, severity (the worst) and last member from the members themselves."""
    await db.execute(
        "UPDATE incidents i SET members = m.n, last_member_at = greatest(i.opened_at, m.last), severity = m.worst,"
        " updated_at = now() FROM (SELECT count(*) AS n, max(at) AS last, (ARRAY['info','minor','major','critical'])"
        "[max(array_position(ARRAY['info','minor','major','critical'], severity))] AS worst"
        " FROM incident_members WHERE incident_id = %(id)s) m WHERE i.id = %(id)s AND m.n > 0",
        {"id": incident_id},
    )


@router.get("/incidents/{incident_id}/notifications", summary="What the incident's notifications became")
async def notifications(incident_id: int, db: Db, principal: Staff) -> list[Notification]:
    await _one(db, incident_id)
    async with db.cursor(row_factory=class_row(Notification)) as cur:
        await cur.execute(
            "SELECT id, incident_id, rule_id, level, round, channel, recipient, state, attempts, last_error,"
            " created_at, sent_at, sent_with FROM notifications WHERE incident_id = %s ORDER BY id",
            (incident_id,),
        )
        return await cur.fetchall()


@router.get("/incidents/{incident_id}/timeline", summary="Members, steps, actions and notifications, in time order")
async def timeline(incident_id: int, db: Db, principal: Staff, format: Literal["json", "csv"] = "json") -> Response:
    await _one(db, incident_id)
    entries: list[TimelineEntry] = []
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT at, member_type, kind, title FROM incident_members WHERE incident_id = %s", (incident_id,)
        )
        entries += [
            TimelineEntry(at=r["at"], what="member", kind=r["kind"], text=r["title"]) for r in await cur.fetchall()
        ]
        await cur.execute("SELECT * FROM incident_steps WHERE incident_id = %s", (incident_id,))
        for r in await cur.fetchall():
            entries.append(
                TimelineEntry(at=r["done_at"], what="step", kind=r["step_key"], by=r["done_by"], text=r["note"] or "")
            )
            if r["approved_at"]:
                entries.append(
                    TimelineEntry(
                        at=r["approved_at"], what="approval", kind=r["step_key"], by=r["approved_by"], text=""
                    )
                )
        await cur.execute(
            "SELECT time, kind, data FROM events WHERE source_type = 'incident' AND source_id = %s"
            " AND kind NOT IN ('incident.step_done', 'incident.step_approved')",
            (str(incident_id),),
        )
        entries += [
            TimelineEntry(
                at=r["time"], what="event", kind=r["kind"], by=r["data"].get("by"), text=r["data"].get("note") or ""
            )
            for r in await cur.fetchall()
        ]
        await cur.execute(
            "SELECT coalesce(sent_at, created_at) AS at, channel, recipient, state, attempts FROM notifications"
            " WHERE incident_id = %s",
            (incident_id,),
        )
        entries += [
            TimelineEntry(
                at=r["at"],
                what="notification",
                kind=f"{r['channel']}.{r['state']}",
                text=f"{r['recipient']} ({r['attempts']} attempts)",
            )
            for r in await cur.fetchall()
        ]
    entries.sort(key=lambda e: e.at)
    if format == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(TimelineEntry.model_fields))
        writer.writeheader()
        writer.writerows(e.model_dump(mode="json") for e in entries)
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8")
    return Response("[" + ",".join(e.model_dump_json() for e in entries) + "]", media_type="application/json")


@router.get("/incidents/{incident_id}/photos/{name}", summary="A photo of a step done")
async def step_photo(
    incident_id: int,
    name: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{16}(\.thumb)?\.jpg$")],
    db: Db,
    principal: Staff,
    request: Request,
) -> FileResponse:
    stem, thumbnail = name.removesuffix(".jpg").removesuffix(".thumb"), name.endswith(".thumb.jpg")
    cur = await db.execute("SELECT 1 FROM incident_steps WHERE incident_id = %s AND photo = %s", (incident_id, stem))
    if await cur.fetchone() is None:
        raise Problem(404, f"no photo {name} of incident {incident_id}")
    return FileResponse(request.app.state.tickets.photos.path(stem, thumbnail), media_type="image/jpeg")
