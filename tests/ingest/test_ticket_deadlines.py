"""A ticket still open at its deadline is escalated to the city, and again when as much working time
again has passed; a resolved ticket that nobody disputes closes itself. Judged at the moments the
alert scheduler's clock gives (the data clock in a replay at speed), weeks ahead here, in a
transaction rolled back at the end, so that no other test's tickets are touched."""

from datetime import datetime, timedelta

import psycopg

from ingest.ticket_deadlines import watch_tickets
from ioc_core.settings import Settings
from ioc_core.working_days import VIETNAM, WorkingCalendar


def ticket(cur: psycopg.Cursor, received: datetime, deadline: datetime, state: str = "received", **more) -> int:
    columns = ["category", "unit_id", "emergency", "lat", "lon", "description", "received_at", "deadline_at", "state"]
    values = ["flooding", "hoa-xuan", True, 15.98, 108.22, "Ngập", received, deadline, state, *more.values()]
    placeholders = ", ".join(["%s"] * len(values))
    return cur.execute(
        f"INSERT INTO tickets ({', '.join([*columns, *more])}) VALUES ({placeholders}) RETURNING id", values
    ).fetchone()[0]


def test_a_missed_deadline_escalates_once_then_again_and_a_resolution_closes_itself(db: psycopg.Connection) -> None:
    calendar = WorkingCalendar()
    monday = datetime.now(VIETNAM).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=60)
    monday -= timedelta(days=monday.weekday())
    deadline = calendar.add(monday, 1)
    settings = Settings(report_close_after_days=2)
    with db.transaction(force_rollback=True), db.cursor() as cur:
        late = ticket(cur, monday, deadline)
        resolved = ticket(cur, monday, deadline, "resolved", resolved_at=monday + timedelta(hours=2))

        def at(moment: datetime) -> list[tuple[str, int | None]]:
            events = watch_tickets(cur, settings, moment)
            return sorted((e.kind, e.data.get("level")) for e in events if e.data["ticket_id"] in (late, resolved))

        assert at(deadline - timedelta(hours=1)) == []
        assert at(deadline + timedelta(hours=1)) == [("citizen.report.escalated", 1)]
        assert at(deadline + timedelta(hours=2)) == []  # once per level
        assert at(calendar.add(deadline, 2) + timedelta(hours=1)) == [
            ("citizen.report.closed", None),
            ("citizen.report.escalated", 2),
        ]
        rows = dict(cur.execute("SELECT id, escalation_level FROM tickets WHERE id IN (%s, %s)", (late, resolved)))
        assert rows[late] == 2
        assert cur.execute("SELECT state FROM tickets WHERE id = %s", (resolved,)).fetchone() == ("closed",)
        steps = cur.execute("SELECT by_whom, state FROM ticket_steps WHERE ticket_id = %s", (resolved,)).fetchall()
        assert steps == [("auto", "closed")]
