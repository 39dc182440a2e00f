"""Tickets for the staff who handle them, and the 1022 console that enters phone reports.

A ward sees the tickets it handles (row-level scope, as everything with a unit); the contacts of
the people who reported one are shown only to the staff of the unit handling it (a ward's
operators, or the city's for a ticket sent up to a city department), never to a hotline operator
once the call is entered. Each step is taken under the ticket's lock and pushed live.
"""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse
from psycopg.rows import class_row, dict_row

from ioc_api.deps import EVERY_UNIT, Db, Operator, check_unit, require, set_scope
from ioc_api.photos import PhotoRefused, clean
from ioc_api.problems import PROBLEM_RESPONSES, Problem
from ioc_api.report_models import Filed, PhoneReport, PhotoRef, Reporter, Step, StepIn, Ticket, TicketState
from ioc_api.security import Principal
from ioc_api.tickets import STEPS, NewReport, Refused
from ioc_core.tickets import OPEN_STATES
from ioc_core.units import CITY_ID

router = APIRouter(tags=["citizen reports"], responses=PROBLEM_RESPONSES)
Intake = Annotated[Principal, Depends(require("admin", "city_operator", "hotline_operator"))]
Handler = Annotated[Principal, Depends(require("admin", "city_operator", "ward_operator", "hotline_operator"))]

_COLUMNS = (
    "id, category, unit_id, department, state, emergency, lat, lon, address, description, received_at,"
    " deadline_at, resolved_at, reporters, escalation_level, exercise"
)


def refused(exc: Refused | PhotoRefused) -> Problem:
    return Problem(getattr(exc, "status", 422) if isinstance(exc, Refused) else 422, str(exc))


def hours_left(request: Request, deadline: datetime, state: str) -> float:
    calendar = request.app.state.calendar
    if state not in OPEN_STATES:
        return 0.0
    now = datetime.now(UTC)
    if now <= deadline:
        return round(calendar.between(now, deadline).total_seconds() / 3600, 2)
    return -round(calendar.between(deadline, now).total_seconds() / 3600, 2)


def sees_contacts(principal: Principal, unit_id: str) -> bool:
    """The handling unit's staff: its ward operators, or the city's operators for the city's own."""
    if principal.role == "ward_operator":
        return principal.sees(unit_id)
    return principal.role == "city_operator" and unit_id == CITY_ID


@router.post("/tickets", status_code=201, summary="Enter a report taken on the 1022 hotline")
async def phone_report(body: PhoneReport, db: Db, principal: Intake, request: Request) -> Filed:
    report = NewReport(
        category=body.category,
        description=body.description,
        channel="hotline",
        lat=body.lat,
        lon=body.lon,
        address=body.address,
        contact_name=body.caller_name,
        contact_phone=body.caller_phone,
        entered_by=principal.username,
    )
    state = request.app.state
    try:
        filed = await state.tickets.file(db, report, [], principal.username)
    except Refused as exc:
        raise refused(exc) from None
    await db.commit()
    for event in filed.events:
        await state.bus.publish_event(event)
    return Filed.of(filed)


@router.get("/tickets/nearby", summary="Open tickets near a place: the duplicates a new report may be")
async def nearby(
    db: Db,
    principal: Handler,
    request: Request,
    lat: Annotated[float, Query(ge=-90, le=90)],
    lon: Annotated[float, Query(ge=-180, le=180)],
    category: str | None = None,
    within_m: Annotated[float, Query(gt=0, le=5000)] = 300,
) -> list[Ticket]:
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM tickets WHERE state = ANY(%(open)s)"
            " AND (%(category)s::text IS NULL OR category = %(category)s)"
            " AND 111320 * sqrt((lat - %(lat)s) ^ 2 + (cos(radians(%(lat)s)) * (lon - %(lon)s)) ^ 2) <= %(m)s"
            " ORDER BY (lat - %(lat)s) ^ 2 + (cos(radians(%(lat)s)) * (lon - %(lon)s)) ^ 2 LIMIT 10",
            {"open": list(OPEN_STATES), "category": category, "lat": lat, "lon": lon, "m": within_m},
        )
        rows = await cur.fetchall()
    return [Ticket(**r, working_hours_left=hours_left(request, r["deadline_at"], r["state"])) for r in rows]


@router.get("/tickets", summary="Tickets, filtered by state, unit and category; overdue first")
async def list_tickets(
    db: Db,
    principal: Operator,
    request: Request,
    state: Annotated[list[TicketState] | None, Query()] = None,
    unit: str | None = None,
    category: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[Ticket]:
    check_unit(principal, unit)
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM tickets WHERE state = ANY(%(states)s)"
            " AND (%(unit)s::text IS NULL OR unit_id = %(unit)s)"
            " AND (%(category)s::text IS NULL OR category = %(category)s)"
            " ORDER BY deadline_at, id LIMIT %(limit)s",
            {"states": state or list(OPEN_STATES), "unit": unit, "category": category, "limit": limit},
        )
        rows = await cur.fetchall()
    return [Ticket(**r, working_hours_left=hours_left(request, r["deadline_at"], r["state"])) for r in rows]


def photo_refs(rows: list[dict], base: str) -> list[PhotoRef]:
    return [
        PhotoRef(
            name=r["name"],
            stage=r["stage"],
            public=r["public"],
            url=f"{base}/{r['name']}.jpg",
            thumbnail_url=f"{base}/{r['name']}.thumb.jpg",
        )
        for r in rows
    ]


async def ticket_detail(db: Db, principal: Principal, request: Request, ticket_id: int) -> Ticket:
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM tickets WHERE id = %s", (ticket_id,))
        row = await cur.fetchone()
        if row is None:
            raise Problem(404, f"no ticket {ticket_id}")
        await cur.execute(
            "SELECT code, channel, received_at, description, contact_name, contact_phone, contact_email, media_urls"
            " FROM ticket_reports WHERE ticket_id = %s ORDER BY id",
            (ticket_id,),
        )
        reports = await cur.fetchall()
        await cur.execute(
            "SELECT name, stage, public FROM ticket_photos WHERE ticket_id = %s ORDER BY id", (ticket_id,)
        )
        photos = await cur.fetchall()
    async with db.cursor(row_factory=class_row(Step)) as cur:
        await cur.execute(
            "SELECT at, step, state, unit_id, by_whom AS by, note FROM ticket_steps WHERE ticket_id = %s ORDER BY id",
            (ticket_id,),
        )
        steps = await cur.fetchall()
    if not sees_contacts(principal, row["unit_id"]):
        reports = [{**r, "contact_name": None, "contact_phone": None, "contact_email": None} for r in reports]
    return Ticket(
        **row,
        working_hours_left=hours_left(request, row["deadline_at"], row["state"]),
        reports=[Reporter(**r) for r in reports],
        steps=steps,
        photos=photo_refs(photos, f"/api/v1/tickets/{ticket_id}/photos"),
    )


@router.get("/tickets/{ticket_id}", summary="A ticket with its reporters, steps and photos")
async def get_ticket(ticket_id: int, db: Db, principal: Operator, request: Request) -> Ticket:
    return await ticket_detail(db, principal, request, ticket_id)


@router.get("/tickets/{ticket_id}/photos/{name}", summary="A photo of a ticket, for the staff who may see it")
async def ticket_photo(
    ticket_id: int,
    name: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{16}(\.thumb)?\.jpg$")],
    db: Db,
    principal: Operator,
    request: Request,
) -> FileResponse:
    stem, thumbnail = name.removesuffix(".jpg").removesuffix(".thumb"), name.endswith(".thumb.jpg")
    cur = await db.execute("SELECT 1 FROM ticket_photos WHERE ticket_id = %s AND name = %s", (ticket_id, stem))
    if await cur.fetchone() is None:
        raise Problem(404, f"no photo {name} of ticket {ticket_id}")
    return FileResponse(request.app.state.tickets.photos.path(stem, thumbnail), media_type="image/jpeg")


@router.post("/tickets/{ticket_id}/resolve-with-photo", summary="Resolve with a note and up to three photos")
async def resolve_with_photo(
    ticket_id: int,
    db: Db,
    principal: Operator,
    request: Request,
    note: Annotated[str, Form(min_length=1, max_length=2000)],
    photo: Annotated[list[UploadFile] | None, File(description="Up to three photos of the work done")] = None,
) -> Ticket:
    limit = request.app.state.settings.photo_max_bytes
    if len(photo or []) > 3:
        raise Problem(422, "three photos at most")
    try:
        photos = [clean(await p.read(limit + 1), limit) for p in photo or []]
    except PhotoRefused as exc:
        raise refused(exc) from None
    return await _step(request, db, principal, ticket_id, "resolve", StepIn(note=note), photos)


@router.post(
    "/tickets/{ticket_id}/{step}",
    summary="A step of the ticket: accept, start, resolve (with a note and a photo), reject, transfer, close, reopen",
)
async def take_step(
    ticket_id: int,
    step: Annotated[str, Path(pattern="^(" + "|".join(STEPS) + ")$")],
    db: Db,
    principal: Operator,
    request: Request,
    body: StepIn | None = None,
) -> Ticket:
    return await _step(request, db, principal, ticket_id, step, body or StepIn(), [])


async def _step(
    request: Request, db: Db, principal: Principal, ticket_id: int, step: str, body: StepIn, photos
) -> Ticket:
    cur = await db.execute("SELECT 1 FROM tickets WHERE id = %s", (ticket_id,))  # in the caller's scope
    if await cur.fetchone() is None:
        raise Problem(404, f"no ticket {ticket_id}")
    if step == "transfer":
        await set_scope(db, EVERY_UNIT)  # the ticket leaves the ward's scope: seen, then moved
    try:
        _, event = await request.app.state.tickets.take_step(
            db, ticket_id, step, principal.username, body.note, photos, body.to_unit, body.department
        )
    except Refused as exc:
        raise refused(exc) from None
    await db.commit()
    await request.app.state.bus.publish_event(event)
    return await ticket_detail(db, principal, request, ticket_id)  # one last look, if transferred away
