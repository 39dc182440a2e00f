"""What admins set for citizens' reports: the categories and the city's own working days. Every
change is in the audit log; a change of the calendar applies to deadlines set from then on."""

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from psycopg.rows import class_row

from ioc_api import audit
from ioc_api.deps import Db, require
from ioc_api.problems import PROBLEM_RESPONSES, Problem
from ioc_api.report_models import CalendarDay, Category, CategoryPatch
from ioc_api.security import Principal

router = APIRouter(tags=["citizen reports (admin)"], responses=PROBLEM_RESPONSES)
Admin = Annotated[Principal, Depends(require("admin"))]
_COLUMNS = (
    "code, name_vi, name_en, description_vi, description_en, deadline_days::float, emergency, keywords, active,"
    " sort_order"
)


@router.post("/categories", status_code=201, summary="Add a category")
async def add_category(body: Category, db: Db, principal: Admin) -> Category:
    cur = await db.execute(
        "INSERT INTO report_categories (code, name_vi, name_en, description_vi, description_en, deadline_days,"
        " emergency, keywords, active, sort_order) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (code) DO NOTHING RETURNING code",
        (
            body.code,
            body.name_vi,
            body.name_en,
            body.description_vi,
            body.description_en,
            body.deadline_days,
            body.emergency,
            body.keywords,
            body.active,
            body.sort_order,
        ),
    )
    if await cur.fetchone() is None:
        raise Problem(409, f"category {body.code!r} exists: change it with PATCH")
    await audit.record(db, principal.username, "category.create", body.code, body.model_dump())
    return body


@router.patch("/categories/{code}", summary="Change a category (its deadline applies to new tickets)")
async def change_category(code: str, body: CategoryPatch, db: Db, principal: Admin) -> Category:
    changes = body.model_dump(exclude_unset=True)
    if changes:
        columns = ", ".join(f"{k} = %({k})s" for k in changes)
        cur = await db.execute(
            f"UPDATE report_categories SET {columns}, updated_at = now() WHERE code = %(code)s RETURNING code",
            {**changes, "code": code},
        )
        if await cur.fetchone() is None:
            raise Problem(404, f"no category {code!r}")
        await audit.record(db, principal.username, "category.update", code, changes)
    async with db.cursor(row_factory=class_row(Category)) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM report_categories WHERE code = %s", (code,))
        if (category := await cur.fetchone()) is None:
            raise Problem(404, f"no category {code!r}")
        return category


@router.put("/calendar/days/{day}", summary="A day of the city's own: worked (a make-up Saturday) or off")
async def set_day(day: date, body: CalendarDay, db: Db, principal: Admin, request: Request) -> CalendarDay:
    if body.day != day:
        raise Problem(422, "the day in the path and in the body differ")
    await db.execute(
        "INSERT INTO calendar_days (day, working, note) VALUES (%s, %s, %s)"
        " ON CONFLICT (day) DO UPDATE SET working = excluded.working, note = excluded.note",
        (day, body.working, body.note),
    )
    await audit.record(db, principal.username, "calendar.set", day.isoformat(), body.model_dump(mode="json"))
    request.app.state.calendar.city_days[day] = body.working
    return body


@router.delete("/calendar/days/{day}", status_code=204, summary="The day follows the law's calendar again")
async def unset_day(day: date, db: Db, principal: Admin, request: Request) -> None:
    await db.execute("DELETE FROM calendar_days WHERE day = %s", (day,))
    await audit.record(db, principal.username, "calendar.unset", day.isoformat(), {})
    request.app.state.calendar.city_days.pop(day, None)
