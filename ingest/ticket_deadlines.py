"""Citizens' reports that time runs out on, watched with the alerts' escalations (same clock, same
lock, same publishing: ``ingest/alert_scheduler.py``).

A ticket still open at its deadline is escalated to the city (level 1); still open when as much
working time again has passed, a second time (level 2). A resolved ticket that its reporters
neither confirm nor dispute closes itself after ``IOC_REPORT_CLOSE_AFTER_DAYS`` working days.
"""

from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from ioc_core.events import Event, insert_event
from ioc_core.settings import Settings
from ioc_core.tickets import TICKET, ticket_event
from ioc_core.working_days import WorkingCalendar, parse_office_hours

LEVELS = 2

_OVERDUE = """
SELECT t.id, t.received_at, t.deadline_at, t.escalation_level FROM tickets t
WHERE t.state IN ('received', 'accepted', 'in_progress') AND t.deadline_at <= %s AND t.escalation_level < %s
FOR UPDATE SKIP LOCKED
"""
# Working days are never fewer than calendar days: the calendar's own count decides among these.
_RESOLVED = """
SELECT id, resolved_at FROM tickets WHERE state = 'resolved' AND resolved_at <= %s - %s * interval '1 day'
FOR UPDATE SKIP LOCKED
"""


def calendar_of(cur: psycopg.Cursor, settings: Settings) -> WorkingCalendar:
    """The calendar as the database holds it now (the city's days change through the API)."""
    days = dict(cur.execute("SELECT day, working FROM calendar_days").fetchall())
    return WorkingCalendar(days, parse_office_hours(settings.office_hours))


def watch_tickets(cur: psycopg.Cursor, settings: Settings, now: datetime) -> list[Event]:
    calendar = calendar_of(cur, settings)
    events = []
    with cur.connection.cursor(row_factory=dict_row) as reader:
        for row in reader.execute(_OVERDUE, (now, LEVELS)).fetchall():
            allowed = calendar.between(row["received_at"], row["deadline_at"])
            overdue = calendar.between(row["deadline_at"], now)
            level = 1 + (overdue >= allowed)
            if level <= row["escalation_level"]:
                continue
            cur.execute(
                "UPDATE tickets SET escalation_level = %s, escalated_at = %s WHERE id = %s", (level, now, row["id"])
            )
            ticket = reader.execute(TICKET, (row["id"],)).fetchone()
            event = ticket_event(
                ticket,
                "escalated",
                now,
                None,
                None,
                level=level,
                to="city",
                overdue_hours=overdue.total_seconds() / 3600,
            )
            events.append(insert_event(cur, event))
        days = settings.report_close_after_days
        for row in reader.execute(_RESOLVED, (now, days)).fetchall():
            if calendar.add(row["resolved_at"], days) > now:
                continue
            cur.execute(
                "UPDATE tickets SET state = 'closed', closed_at = %s, updated_at = %s WHERE id = %s",
                (now, now, row["id"]),
            )
            ticket = reader.execute(TICKET, (row["id"],)).fetchone()
            cur.execute(
                "INSERT INTO ticket_steps (ticket_id, at, step, state, unit_id, by_whom, note, public)"
                " VALUES (%s, %s, 'close', 'closed', %s, 'auto', %s, true)",
                (row["id"], now, ticket["unit_id"], "closed: no reporter disputed the resolution"),
            )
            events.append(insert_event(cur, ticket_event(ticket, "closed", now, "auto", None)))
    return events
