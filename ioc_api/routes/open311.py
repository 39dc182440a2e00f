"""Open311 GeoReport v2 at ``/open311/v2``: the city's categories as services, and citizens'
reports as service requests, in JSON and XML, with Open311's own errors.

Apps (the city's app, a Zalo bridge, partners) post with the ``api_key`` the CLI gave them
(``python -m ioc_api.cli apikey create``); reading is open. As the standard has it, a request is
posted form-encoded, with its place as ``lat`` and ``long`` or an ``address_string``, and a photo
as a ``media_url`` (kept for staff, never fetched); photos may also come as files (``media``,
up to three, multipart), as several Open311 servers accept. A ``service_request_id`` is the
reporter's own tracking code; a report that joined an open ticket answers with its own code and
the ticket's state. Nothing personal is ever in an answer: no contact, no photo not yet public.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from psycopg.rows import dict_row
from starlette.datastructures import UploadFile

from ioc_api.deps import OpenDb
from ioc_api.open311_format import answer, errors
from ioc_api.photos import PhotoRefused, clean
from ioc_api.rate_limits import RateLimited
from ioc_api.security import digest
from ioc_api.tickets import NewReport, Refused
from ioc_core.tickets import CLOSED_STATES

router = APIRouter(prefix="/open311/v2", tags=["open311"])
Fmt = Annotated[str, Path(pattern="^(json|xml)$", description="json or xml")]
SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
_MAX_SPAN = timedelta(days=90)
_MAX_RESULTS = 1000
# Every text field a request may carry, and its longest.
_FIELD_LIMITS = {
    "service_code": 40,
    "description": 4000,
    "address_string": 300,
    "address_id": 300,
    "first_name": 100,
    "last_name": 100,
    "phone": 40,
    "email": 200,
    "device_id": 100,
    "account_id": 100,
    "requested_datetime": 40,
}


class Open311Error(Exception):
    def __init__(self, status: int, description: str):
        super().__init__(description)
        self.status, self.description = status, description


def _lang(request: Request) -> str:
    return "en" if request.query_params.get("lang") == "en" else "vi"


@router.get("/discovery.{fmt}", summary="Where this endpoint is and what it speaks")
async def discovery(fmt: Fmt, request: Request) -> Response:
    base = str(request.base_url).rstrip("/") + "/open311/v2"
    return answer(
        fmt,
        "discovery",
        {
            "changeset": "2026-12-06",
            "contact": "Đà Nẵng IOC, 1022",
            "key_service": "API keys are issued by the city's IOC to apps and partners",
            "endpoints": [
                {
                    "specification": SPECIFICATION,
                    "url": base,
                    "changeset": "2026-12-06",
                    "type": "production",
                    "formats": ["text/xml", "application/json"],
                }
            ],
        },
    )


@router.get("/services.{fmt}", summary="The city's categories of report")
async def services(fmt: Fmt, db: OpenDb, request: Request) -> Response:
    lang = _lang(request)
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT code, name_vi, name_en, description_vi, description_en, keywords, emergency, deadline_days"
            " FROM report_categories WHERE active ORDER BY sort_order, code"
        )
        rows = await cur.fetchall()
    return answer(
        fmt,
        "services",
        [
            {
                "service_code": r["code"],
                "service_name": r[f"name_{lang}"],
                "description": r[f"description_{lang}"],
                "metadata": False,
                "type": "realtime",
                "keywords": ", ".join(r["keywords"]),
                "group": "emergency" if r["emergency"] else "general",
            }
            for r in rows
        ],
    )


@router.get("/services/{service_code}.{fmt}", summary="A category's definition (it asks nothing more)")
async def service_definition(service_code: str, fmt: Fmt, db: OpenDb) -> Response:
    cur = await db.execute("SELECT 1 FROM report_categories WHERE code = %s AND active", (service_code,))
    if await cur.fetchone() is None:
        return errors(fmt, 404, f"service_code {service_code!r} not found")
    return answer(fmt, "service_definition", {"service_code": service_code, "attributes": []})


@router.get("/tokens/{token}.{fmt}", summary="Requests are answered with their id at once: no token is ever issued")
async def token(token: str, fmt: Fmt) -> Response:
    return errors(fmt, 404, f"token {token!r} not found: this endpoint answers each request with its id")


def _request_item(row: dict, lang: str, base: str) -> dict:
    closed = row["state"] in CLOSED_STATES
    photo = row["photo"]
    return {
        "service_request_id": row["code"],
        "status": "closed" if closed else "open",
        "status_notes": row["note"],
        "service_name": row[f"name_{lang}"],
        "service_code": row["category"],
        "description": row["description"],
        "agency_responsible": row["department"] or row["unit_name"],
        "service_notice": f"ticket state: {row['state']}",
        "requested_datetime": row["received_at"],
        "updated_datetime": row["updated_at"],
        "expected_datetime": row["deadline_at"],
        "address": row["address"],
        "address_id": None,
        "zipcode": None,
        "lat": row["lat"],
        "long": row["lon"],
        "media_url": f"{base}/api/v1/public/photos/{photo}.jpg" if photo else None,
    }


# A request as the public may see it: the reporter's code and words, the ticket's state, handler,
# deadline and last public note, the first public photo. Never a contact.
_REQUESTS = """
SELECT r.code, r.description, r.address, r.lat, r.lon, r.received_at, t.category, c.name_vi, c.name_en, t.state,
       t.updated_at, t.deadline_at, t.department, u.name AS unit_name,
       (SELECT note FROM ticket_steps s WHERE s.ticket_id = t.id AND s.public AND s.note IS NOT NULL
        ORDER BY s.id DESC LIMIT 1) AS note,
       (SELECT name FROM ticket_photos p WHERE p.ticket_id = t.id AND p.public ORDER BY p.id LIMIT 1) AS photo
FROM ticket_reports r JOIN tickets t ON t.id = r.ticket_id JOIN report_categories c ON c.code = t.category
JOIN units u ON u.id = t.unit_id
"""


@router.get("/requests.{fmt}", summary="Service requests: by id, or by category, dates and status")
async def requests(fmt: Fmt, db: OpenDb, request: Request) -> Response:
    q = request.query_params
    base = str(request.base_url).rstrip("/")
    try:
        if q.get("service_request_id"):  # overrides every other parameter
            ids = [i.strip() for i in q["service_request_id"].split(",") if i.strip()][:_MAX_RESULTS]
            where, params = "r.code = ANY(%(ids)s)", {"ids": ids}
        else:
            end = _datetime(q.get("end_date")) or datetime.now(UTC)
            start = _datetime(q.get("start_date")) or end - _MAX_SPAN
            if end - start > _MAX_SPAN:
                raise Open311Error(400, "start_date and end_date may span 90 days at most")
            where = "r.received_at >= %(start)s AND r.received_at <= %(end)s"
            params = {"start": start, "end": end}
            if q.get("service_code"):
                where += " AND t.category = ANY(%(codes)s)"
                params["codes"] = [c.strip() for c in q["service_code"].split(",")]
            if q.get("status"):
                statuses = {s.strip() for s in q["status"].split(",")}
                if not statuses <= {"open", "closed"}:
                    raise Open311Error(400, "status is open, closed, or both (comma separated)")
                if statuses == {"open"}:
                    where += " AND t.state NOT IN ('resolved', 'closed', 'rejected')"
                elif statuses == {"closed"}:
                    where += " AND t.state IN ('resolved', 'closed', 'rejected')"
    except Open311Error as exc:
        return errors(fmt, exc.status, exc.description)
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"{_REQUESTS} WHERE {where} ORDER BY r.received_at DESC LIMIT {_MAX_RESULTS}", params)
        rows = await cur.fetchall()
    return answer(fmt, "service_requests", [_request_item(r, _lang(request), base) for r in rows])


@router.get("/requests/{service_request_id}.{fmt}", summary="One service request, by its id (tracking code)")
async def one_request(service_request_id: str, fmt: Fmt, db: OpenDb, request: Request) -> Response:
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"{_REQUESTS} WHERE r.code = %s", (service_request_id,))
        row = await cur.fetchone()
    if row is None:
        return errors(fmt, 404, f"service_request_id {service_request_id!r} not found")
    return answer(fmt, "service_requests", [_request_item(row, _lang(request), str(request.base_url).rstrip("/"))])


def _datetime(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Open311Error(400, f"{text!r} is not a W3C datetime (2026-12-06T09:00:00+07:00)") from None
    if value.tzinfo is None:
        raise Open311Error(400, f"{text!r} has no time zone")
    return value


def _float(form, name: str) -> float | None:
    text = form.get(name)
    if text in (None, ""):
        return None
    try:
        value = float(text)
    except ValueError:
        raise Open311Error(400, f"{name} is not a number: {text[:40]!r}") from None
    limit = 90 if name == "lat" else 180
    if not -limit <= value <= limit:
        raise Open311Error(400, f"{name} {value} is out of range")
    return value


@router.post("/requests.{fmt}", summary="Create a service request (form-encoded, with an api_key)")
async def create_request(fmt: Fmt, db: OpenDb, request: Request) -> Response:
    state = request.app.state
    try:
        try:
            form = await request.form(max_files=3, max_fields=100, max_part_size=state.settings.photo_max_bytes)
        except Exception as exc:  # a body that is not a form, or too large a part
            raise Open311Error(400, f"the request body is not a form Open311 can read: {exc}") from None
        key = form.get("api_key")
        if not isinstance(key, str) or not key:
            raise Open311Error(403, "api_key is required to create a request")
        cur = await db.execute(
            "SELECT id, name, channel, requests_per_minute FROM api_clients WHERE digest = %s AND revoked_at IS NULL",
            (digest(key),),
        )
        client = await cur.fetchone()
        if client is None:
            raise Open311Error(403, "invalid api_key")
        client_id, client_name, channel, per_minute = client
        state.rate_limits.check(f"open311:{client_id}", per_minute)
        report = _report_of(form, client_id, channel)
        files = [f for f in form.getlist("media") if isinstance(f, UploadFile)]
        photos = [clean(await f.read(), state.settings.photo_max_bytes) for f in files[:3]]
        filed = await state.tickets.file(db, report, photos, f"api_client:{client_name}")
        await db.commit()
    except (Open311Error, RateLimited, Refused, PhotoRefused) as exc:
        await db.rollback()  # the answer is an error document, not an exception: nothing half stored
        if isinstance(exc, Open311Error):
            return errors(fmt, exc.status, exc.description)
        if isinstance(exc, RateLimited):
            return errors(fmt, 429, str(exc))
        return errors(fmt, 404 if getattr(exc, "status", 400) == 404 else 400, str(exc))
    for event in filed.events:
        await state.bus.publish_event(event)
    notice = "joined an open report of the same problem" if filed.joined else "received"
    notice += f"; to be handled by {filed.deadline_at.astimezone(state.calendar.tz).isoformat()}"
    return answer(
        fmt,
        "service_requests",
        [{"service_request_id": filed.code, "service_notice": notice, "account_id": report.account_id}],
    )


def _report_of(form, client_id: int, channel: str) -> NewReport:
    texts = {}
    for name, limit in _FIELD_LIMITS.items():
        value = form.get(name)
        if value is not None and not isinstance(value, str):
            raise Open311Error(400, f"{name} must be text")
        if value and len(value) > limit:
            raise Open311Error(400, f"{name} may be {limit} characters at most")
        if value and "\x00" in value:
            raise Open311Error(400, f"{name} holds a NUL character")
        texts[name] = value or None
    code = texts["service_code"]
    if not code:
        raise Open311Error(400, "service_code is required")
    lat, lon = _float(form, "lat"), _float(form, "long")
    if (lat is None) != (lon is None):
        raise Open311Error(400, "lat and long go together")
    address = texts["address_string"] or texts["address_id"]
    if lat is None and not address:
        raise Open311Error(400, "a location is required: lat and long, or address_string")
    name = " ".join(n for n in (texts["first_name"], texts["last_name"]) if n) or None
    # The simulator's app dates its reports in the simulation's time; any other app's are received now.
    received_at = _datetime(texts["requested_datetime"]) if channel == "simulated" else None
    exercise = channel == "simulated" and form.get("exercise") == "true"  # a drill's report
    media = [m for m in form.getlist("media_url") if isinstance(m, str) and 0 < len(m) <= 2000 and "\x00" not in m][:3]
    return NewReport(
        category=code,
        description=texts["description"] or "",
        channel=channel,
        lat=lat,
        lon=lon,
        address=address,
        contact_name=name,
        contact_phone=texts["phone"],
        contact_email=texts["email"],
        client_id=client_id,
        device_id=texts["device_id"],
        account_id=texts["account_id"],
        media_urls=media,
        received_at=received_at,
        exercise=exercise,
    )
