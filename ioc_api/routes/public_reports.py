"""What the public page and the tracking page use, without an account: filing a report (with up to
three photos), following it by its code (and confirming or disputing its resolution), the
categories, where an address lies, the public photos, and the calendar deadlines are counted by.
Each client address files at most ``IOC_REPORTS_PER_MINUTE`` reports a minute on each API node.
"""

from datetime import date
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse
from psycopg.rows import class_row, dict_row

from ioc_api.deps import OpenDb
from ioc_api.photos import PhotoRefused, clean
from ioc_api.problems import PROBLEM_RESPONSES, Problem
from ioc_api.rate_limits import RateLimited
from ioc_api.report_models import CalendarDay, CalendarYear, Category, Filed, Step, Tracking
from ioc_api.routes.tickets import hours_left, photo_refs, refused
from ioc_api.tickets import NewReport, Refused
from ioc_core.working_days import public_holidays

router = APIRouter(tags=["citizen reports (public)"], responses=PROBLEM_RESPONSES)
CODE = r"^DN[2-9A-HJKMNP-TV-Z]{8}$"


@router.get("/categories", summary="The categories a report may take, in both languages")
async def categories(db: OpenDb, include_inactive: bool = False) -> list[Category]:
    async with db.cursor(row_factory=class_row(Category)) as cur:
        await cur.execute(
            "SELECT code, name_vi, name_en, description_vi, description_en, deadline_days::float, emergency, keywords,"
            " active, sort_order FROM report_categories WHERE active OR %s ORDER BY sort_order, code",
            (include_inactive,),
        )
        return await cur.fetchall()


@router.get("/places", summary="The wards and communes an address names, today's or a former one")
async def places(request: Request, q: Annotated[str, Query(min_length=2, max_length=300)]) -> list[dict]:
    return [
        {
            "unit_id": p.unit_id,
            "unit_name": p.unit_name,
            "written": p.written,
            "former": p.former,
            "lat": p.lat,
            "lon": p.lon,
        }
        for p in request.app.state.tickets.gazetteer.find(q)
    ]


@router.post("/public/reports", status_code=201, summary="File a report (the public page)")
async def file_report(
    db: OpenDb,
    request: Request,
    category: Annotated[str, Form(max_length=40)],
    description: Annotated[str, Form(min_length=1, max_length=4000)],
    lat: Annotated[float | None, Form(ge=-90, le=90)] = None,
    lon: Annotated[float | None, Form(ge=-180, le=180)] = None,
    address: Annotated[str | None, Form(max_length=300)] = None,
    contact_name: Annotated[str | None, Form(max_length=100)] = None,
    contact_phone: Annotated[str | None, Form(max_length=40)] = None,
    contact_email: Annotated[str | None, Form(max_length=200)] = None,
    photo: Annotated[list[UploadFile] | None, File(description="Up to three photos")] = None,
) -> Filed:
    state = request.app.state
    try:
        state.rate_limits.check(
            f"public:{request.client.host if request.client else '?'}", state.settings.reports_per_minute
        )
    except RateLimited as exc:
        raise Problem(429, str(exc), {"Retry-After": str(exc.retry_after)}) from None
    files = photo or []
    if len(files) > 3:
        raise Problem(422, "three photos at most")
    limit = state.settings.photo_max_bytes
    report = NewReport(
        category=category,
        description=description,
        channel="web",
        lat=lat,
        lon=lon,
        address=address or None,
        contact_name=contact_name or None,
        contact_phone=contact_phone or None,
        contact_email=contact_email or None,
    )
    if (lat is None) != (lon is None):
        raise Problem(422, "lat and lon go together")
    try:
        photos = [clean(await f.read(limit + 1), limit) for f in files]
        filed = await state.tickets.file(db, report, photos, "public")
    except (Refused, PhotoRefused) as exc:
        raise refused(exc) from None
    await db.commit()
    for event in filed.events:
        await state.bus.publish_event(event)
    return Filed.of(filed)


async def _tracking(db: OpenDb, request: Request, code: str) -> Tracking:
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT r.code, t.id, t.category, c.name_vi AS category_name_vi, c.name_en AS category_name_en, t.state,"
            " t.unit_id, u.name AS unit_name, r.received_at, t.deadline_at, t.reporters"
            " FROM ticket_reports r JOIN tickets t ON t.id = r.ticket_id"
            " JOIN report_categories c ON c.code = t.category JOIN units u ON u.id = t.unit_id WHERE r.code = %s",
            (code,),
        )
        row = await cur.fetchone()
        if row is None:
            raise Problem(404, f"no report {code}")
        await cur.execute(
            "SELECT name, stage, public FROM ticket_photos WHERE ticket_id = %s AND public ORDER BY id", (row["id"],)
        )
        photos = await cur.fetchall()
    async with db.cursor(row_factory=class_row(Step)) as cur:
        await cur.execute(
            "SELECT at, step, state, unit_id, NULL AS by, note FROM ticket_steps"
            " WHERE ticket_id = %s AND public ORDER BY id",
            (row.pop("id"),),
        )
        steps = await cur.fetchall()
    return Tracking(
        **row,
        working_hours_left=hours_left(request, row["deadline_at"], row["state"]),
        steps=steps,
        photos=photo_refs(photos, "/api/v1/public/photos"),
    )


@router.get("/public/reports/{code}", summary="Follow a report by its code")
async def track(code: Annotated[str, Path(pattern=CODE)], db: OpenDb, request: Request) -> Tracking:
    return await _tracking(db, request, code)


@router.post(
    "/public/reports/{code}/{answer}",
    summary="The reporter confirms the resolution (the ticket closes) or disputes it (it is worked again)",
)
async def answer_resolution(
    code: Annotated[str, Path(pattern=CODE)],
    answer: Annotated[str, Path(pattern="^(confirm|dispute)$")],
    db: OpenDb,
    request: Request,
) -> Tracking:
    cur = await db.execute("SELECT ticket_id FROM ticket_reports WHERE code = %s", (code,))
    if (row := await cur.fetchone()) is None:
        raise Problem(404, f"no report {code}")
    step = "close" if answer == "confirm" else "reopen"
    try:
        _, event = await request.app.state.tickets.take_step(db, row[0], step, f"citizen:{code}")
    except Refused as exc:
        raise refused(exc) from None
    await db.commit()
    await request.app.state.bus.publish_event(event)
    return await _tracking(db, request, code)


@router.get("/public/photos/{name}", summary="A photo made public (a resolution's)")
async def public_photo(
    name: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{16}(\.thumb)?\.jpg$")], db: OpenDb, request: Request
) -> FileResponse:
    stem, thumbnail = name.removesuffix(".jpg").removesuffix(".thumb"), name.endswith(".thumb.jpg")
    cur = await db.execute("SELECT 1 FROM ticket_photos WHERE name = %s AND public", (stem,))
    if await cur.fetchone() is None:
        raise Problem(404, f"no public photo {name}")
    return FileResponse(
        request.app.state.tickets.photos.path(stem, thumbnail),
        media_type="image/jpeg",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@router.get("/calendar/{year}", summary="The year's public holidays and the city's own days")
async def calendar(year: Annotated[int, Path(ge=2000, le=2100)], db: OpenDb) -> CalendarYear:
    async with db.cursor(row_factory=class_row(CalendarDay)) as cur:
        await cur.execute(
            "SELECT day, working, note FROM calendar_days WHERE day BETWEEN %s AND %s ORDER BY day",
            (date(year, 1, 1), date(year, 12, 31)),
        )
        days = await cur.fetchall()
    return CalendarYear(year=year, public_holidays=public_holidays(year), city_days=days)
