"""Citizens' reports as tickets: filed, joined, routed, handled, timed.

A report, whatever brought it (Open311 from an app, the public page, the 1022 console), is filed
here: its place gives the unit that handles it (a place outside the city is refused); a report of
the same category near an open ticket, within ``IOC_REPORT_DUPLICATE_M`` and
``IOC_REPORT_DUPLICATE_HOURS``, joins that ticket rather than opening another; each reporter gets
a code of their own to follow it. A ticket's deadline is its category's working days from when it
was received (``ioc_core.working_days``). Each step (received, joined, accepted, in progress,
resolved, closed, rejected, transferred) is a row of ``ticket_steps``, an event
``citizen.report.<step>`` stored in the same transaction and pushed once committed, and a line of
the audit log.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from ioc_api import audit
from ioc_api.deps import EVERY_UNIT, scoped_connection
from ioc_api.photos import Photo, PhotoStore
from ioc_core.addresses import Gazetteer
from ioc_core.events import Event, insert_event_async
from ioc_core.tickets import OPEN_STATES, TICKET, ticket_event
from ioc_core.units import CITY_ID
from ioc_core.working_days import WorkingCalendar

_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"  # no 0/O, 1/I/L, U: read out over the phone
# Which step may follow which state, and the state it leads to.
STEPS: dict[str, tuple[tuple[str, ...], str]] = {
    "accept": (("received",), "accepted"),
    "start": (("received", "accepted"), "in_progress"),
    "resolve": (OPEN_STATES, "resolved"),
    "reject": (OPEN_STATES, "rejected"),
    "transfer": (OPEN_STATES, "received"),
    "close": (("resolved",), "closed"),
    "reopen": (("resolved",), "in_progress"),
}
_STEP_EVENT = {
    "accept": "accepted",
    "start": "in_progress",
    "resolve": "resolved",
    "reject": "rejected",
    "transfer": "transferred",
    "close": "closed",
    "reopen": "reopened",
}


class Refused(ValueError):
    """A report or a step that cannot be taken, and why: said to whoever asked."""

    def __init__(self, detail: str, status: int = 422):
        super().__init__(detail)
        self.status = status


@dataclass(slots=True)
class NewReport:
    category: str
    description: str
    channel: str
    lat: float | None = None
    lon: float | None = None
    address: str | None = None
    contact_name: str | None = None
    contact_phone: str | None = None
    contact_email: str | None = None
    client_id: int | None = None
    entered_by: str | None = None
    device_id: str | None = None
    account_id: str | None = None
    media_urls: list[str] = field(default_factory=list)  # Open311's media_url: kept for staff, never fetched
    exercise: bool = False  # a drill's: shown as such, joins no real ticket, left out of the sprint
    received_at: datetime | None = None  # only for simulated and replayed reports


@dataclass(slots=True)
class Filed:
    ticket_id: int
    code: str  # the reporter's own
    joined: bool  # an open ticket's, not a new one
    deadline_at: datetime
    unit_id: str
    events: list[Event] = field(default_factory=list)


def new_code() -> str:
    return "DN" + "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))


async def ticket_row(db: AsyncConnection, ticket_id: int, lock: bool = False) -> dict | None:
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(TICKET + (" FOR UPDATE OF t" if lock else ""), (ticket_id,))
        return await cur.fetchone()


async def _step(
    db: AsyncConnection, ticket: dict, step: str, at: datetime, by: str | None, note: str | None, public: bool
) -> None:
    await db.execute(
        "INSERT INTO ticket_steps (ticket_id, at, step, state, unit_id, by_whom, note, public)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (ticket["id"], at, step, ticket["state"], ticket["unit_id"], by, note, public),
    )


class Tickets:
    """Filing and handling, with the city's calendar, its places and the photo store."""

    def __init__(
        self,
        calendar: WorkingCalendar,
        gazetteer: Gazetteer,
        photos: PhotoStore,
        duplicate_m: float,
        duplicate_hours: float,
        photo_quota_bytes: int,
    ) -> None:
        self.calendar, self.gazetteer, self.photos = calendar, gazetteer, photos
        self.duplicate_m, self.duplicate_hours, self.photo_quota_bytes = duplicate_m, duplicate_hours, photo_quota_bytes

    async def reload(self, pool) -> None:
        """The units' names (today's and former) and the city's own days, as the database holds them
        now: at start, then every minute, so a change made on another API node arrives here too."""
        async with scoped_connection(pool, EVERY_UNIT) as conn:
            cur = await conn.execute(
                "SELECT id, name, former_units, (coalesce(committee, centroid))[1], (coalesce(committee, centroid))[0]"
                " FROM units WHERE kind <> 'city'"
            )
            units = await cur.fetchall()
            cur = await conn.execute("SELECT day, working FROM calendar_days")
            days = dict(await cur.fetchall())
        self.gazetteer = Gazetteer(units)
        self.calendar.city_days = days

    async def place(self, db: AsyncConnection, report: NewReport, photos: list[Photo]) -> tuple[float, float, str]:
        """(lat, lon, unit): the pin, else the place the first photo was taken, else the address's
        unit (its people's committee); a place no unit holds is outside the city."""
        lat, lon = report.lat, report.lon
        if lat is None or lon is None:
            taken = next(((p.lat, p.lon) for p in photos if p.lat is not None), None)
            if taken:
                lat, lon = taken
            elif report.address:
                places = self.gazetteer.find(report.address, limit=1)
                if not places:
                    raise Refused(
                        "the address names no ward or commune of Đà Nẵng (today's or a former one):"
                        " name it, or pin the place on the map"
                    )
                return places[0].lat, places[0].lon, places[0].unit_id
            else:
                raise Refused("a report needs its place: a pin (lat and long), an address, or a photo with GPS")
        cur = await db.execute("SELECT unit_id FROM unit_parts WHERE part @> point(%s, %s) LIMIT 1", (lon, lat))
        row = await cur.fetchone()
        if row is None:
            raise Refused(f"({lat:.5f}, {lon:.5f}) lies outside Đà Nẵng: the city handles reports within it")
        return lat, lon, row[0]

    async def file(self, db: AsyncConnection, report: NewReport, photos: list[Photo], actor: str) -> Filed:
        """Store the report (a new ticket or a join), its photos and its event, in the caller's
        transaction; the caller commits and then publishes ``events``. Photo files written here
        are removed again if anything after them fails."""
        async with db.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT code, name_vi, deadline_days, emergency FROM report_categories WHERE code = %s AND active",
                (report.category,),
            )
            category = await cur.fetchone()
        if category is None:
            raise Refused(f"no category {report.category!r}", 404)
        lat, lon, unit_id = await self.place(db, report, photos)
        received_at = report.received_at or datetime.now(UTC)
        # One report at a time per category: two people reporting the same thing at once make
        # one ticket, not two.
        await db.execute("SELECT pg_advisory_xact_lock(hashtext('ticket:' || %s))", (report.category,))
        ticket_id = await self._duplicate_of(db, report.category, lat, lon, received_at, report.exercise)
        joined = ticket_id is not None
        if joined:
            await db.execute(
                "UPDATE tickets SET reporters = reporters + 1, updated_at = %s WHERE id = %s", (received_at, ticket_id)
            )
        else:
            deadline = self.calendar.add(received_at, float(category["deadline_days"]))
            cur = await db.execute(
                "INSERT INTO tickets (category, unit_id, emergency, lat, lon, address, description, received_at,"
                " deadline_at, updated_at, exercise) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    report.category,
                    unit_id,
                    category["emergency"],
                    lat,
                    lon,
                    report.address,
                    report.description,
                    received_at,
                    deadline,
                    received_at,
                    report.exercise,
                ),
            )
            ticket_id = (await cur.fetchone())[0]
        code = await self._add_report(db, ticket_id, report, lat, lon, received_at)
        ticket = await ticket_row(db, ticket_id)
        names = await self._store_photos(db, ticket, photos, code, public=False)
        try:
            step = "joined" if joined else "received"
            await _step(db, ticket, step, received_at, report.entered_by or report.channel, None, True)
            event = await insert_event_async(
                db, ticket_event(ticket, step, received_at, report.entered_by, None, channel=report.channel)
            )
            await audit.record(db, actor, f"report.{step}", code, {"ticket_id": ticket_id, "channel": report.channel})
        except BaseException:
            self.photos.remove(names)
            raise
        return Filed(ticket_id, code, joined, ticket["deadline_at"], ticket["unit_id"], [event])

    async def _duplicate_of(
        self, db: AsyncConnection, category: str, lat: float, lon: float, at: datetime, exercise: bool
    ) -> int | None:
        """The nearest open ticket of the category within the distance and time that make a duplicate."""
        dlat = self.duplicate_m / 111_320
        cur = await db.execute(
            "SELECT id FROM tickets WHERE category = %(category)s AND state IN ('received', 'accepted', 'in_progress')"
            " AND exercise = %(exercise)s"
            " AND received_at > %(since)s AND lat BETWEEN %(lat)s - %(dlat)s AND %(lat)s + %(dlat)s"
            " AND 111320 * sqrt((lat - %(lat)s) ^ 2 + (cos(radians(%(lat)s)) * (lon - %(lon)s)) ^ 2) <= %(m)s"
            " ORDER BY (lat - %(lat)s) ^ 2 + (cos(radians(%(lat)s)) * (lon - %(lon)s)) ^ 2 LIMIT 1 FOR UPDATE",
            {
                "category": category,
                "since": at - timedelta(hours=self.duplicate_hours),
                "lat": lat,
                "lon": lon,
                "dlat": dlat,
                "m": self.duplicate_m,
                "exercise": exercise,
            },
        )
        row = await cur.fetchone()
        return row[0] if row else None

    async def _add_report(
        self, db: AsyncConnection, ticket_id: int, r: NewReport, lat: float, lon: float, at: datetime
    ) -> str:
        for _ in range(5):
            code = new_code()
            cur = await db.execute(
                "INSERT INTO ticket_reports (ticket_id, code, channel, client_id, entered_by, received_at, description,"
                " lat, lon, address, contact_name, contact_phone, contact_email, device_id, account_id, media_urls)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (code) DO NOTHING RETURNING code",
                (
                    ticket_id,
                    code,
                    r.channel,
                    r.client_id,
                    r.entered_by,
                    at,
                    r.description,
                    lat,
                    lon,
                    r.address,
                    r.contact_name,
                    r.contact_phone,
                    r.contact_email,
                    r.device_id,
                    r.account_id,
                    r.media_urls,
                ),
            )
            if await cur.fetchone():
                return code
        raise RuntimeError("five tracking codes in a row were taken")

    async def _store_photos(
        self, db: AsyncConnection, ticket: dict, photos: list[Photo], code: str | None, public: bool
    ) -> list[str]:
        """Write the files, then their rows; the files go again if a row fails (or the quota is full)."""
        if not photos:
            return []
        cur = await db.execute(
            "SELECT coalesce(sum(bytes), 0) FROM ticket_photos WHERE unit_id = %s", (ticket["unit_id"],)
        )
        used = (await cur.fetchone())[0]
        adding = sum(len(p.jpeg) + len(p.thumbnail) for p in photos)
        if used + adding > self.photo_quota_bytes:
            raise Refused(
                f"the photo storage of unit {ticket['unit_id']!r} is full: send the report without photos", 507
            )
        names = [self.photos.save(p) for p in photos]
        try:
            report_id = None
            if code is not None:
                cur = await db.execute("SELECT id FROM ticket_reports WHERE code = %s", (code,))
                report_id = (await cur.fetchone())[0]
            for name, photo in zip(names, photos, strict=True):
                await db.execute(
                    "INSERT INTO ticket_photos (ticket_id, report_id, stage, unit_id, name, bytes, width, height,"
                    " public) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        ticket["id"],
                        report_id,
                        "report" if code else "resolution",
                        ticket["unit_id"],
                        name,
                        len(photo.jpeg) + len(photo.thumbnail),
                        photo.width,
                        photo.height,
                        public,
                    ),
                )
        except BaseException:
            self.photos.remove(names)
            raise
        return names

    async def take_step(
        self,
        db: AsyncConnection,
        ticket_id: int,
        step: str,
        by: str,
        note: str | None = None,
        photos: list[Photo] | None = None,
        to_unit: str | None = None,
        department: str | None = None,
        at: datetime | None = None,
    ) -> tuple[dict, Event]:
        """One step of the ticket's life, by ``by`` (a username, or ``citizen:CODE``); the caller
        commits and then publishes the event. The row is locked: two operators acting at once
        are served one after the other, and the second is told the ticket has moved on."""
        ticket = await ticket_row(db, ticket_id, lock=True)
        if ticket is None:
            raise Refused(f"no ticket {ticket_id}", 404)
        allowed, to_state = STEPS[step]
        if ticket["state"] not in allowed:
            raise Refused(f"ticket {ticket_id} is {ticket['state']}: it cannot be {_STEP_EVENT[step]}", 409)
        if step in ("resolve", "reject", "transfer") and not (note and note.strip()):
            raise Refused(f"to {step} a ticket, say why (note)", 422)
        at = at or datetime.now(UTC)
        updates: dict[str, object] = {"state": to_state, "updated_at": at}
        if step == "accept":
            updates["accepted_at"] = at
        elif step in ("resolve", "reject"):
            updates |= {
                "resolved_at": at,
                "working_s": self.calendar.between(ticket["received_at"], at).total_seconds(),
                "on_time": at <= ticket["deadline_at"],
                "resolution_note" if step == "resolve" else "reject_reason": note,
            }
        elif step == "close":
            updates["closed_at"] = at
        elif step == "reopen":
            updates |= {"resolved_at": None, "working_s": None, "on_time": None}
        elif step == "transfer":
            if (to_unit is None) == (department is None):
                raise Refused("a transfer names either the unit (to_unit) or the city department (department)", 422)
            if to_unit is not None:
                cur = await db.execute("SELECT 1 FROM units WHERE id = %s AND kind <> 'city'", (to_unit,))
                if await cur.fetchone() is None:
                    raise Refused(f"no unit {to_unit!r}", 422)
                if to_unit == ticket["unit_id"]:
                    raise Refused(f"ticket {ticket_id} is already handled by {to_unit!r}", 409)
            updates |= {"unit_id": to_unit or CITY_ID, "department": department}
        columns = ", ".join(f"{k} = %({k})s" for k in updates)
        await db.execute(f"UPDATE tickets SET {columns} WHERE id = %(id)s", {**updates, "id": ticket_id})
        before_unit = ticket["unit_id"]
        ticket = await ticket_row(db, ticket_id)
        if photos:
            await self._store_photos(db, ticket, photos, None, public=True)
        await _step(db, ticket, step, at, by, note, True)
        data = {"from_unit": before_unit, "department": department} if step == "transfer" else {}
        event = await insert_event_async(db, ticket_event(ticket, _STEP_EVENT[step], at, by, note, **data))
        await audit.record(db, by, f"ticket.{step}", str(ticket_id), {"note": note, **data})
        return ticket, event
