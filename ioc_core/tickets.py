"""What the API (which files and handles tickets) and ingest (which watches their deadlines) both
say of a ticket: its states, how it is read, and the event each of its steps is."""

from datetime import datetime

from ioc_core.events import Event, Location, Source

OPEN_STATES = ("received", "accepted", "in_progress")
CLOSED_STATES = ("resolved", "closed", "rejected")

# A ticket as its events describe it (``ticket_event``); ``%s`` is its id.
TICKET = (
    "SELECT t.id, t.category, c.name_vi AS category_name, t.unit_id, t.department, t.state, t.emergency, t.lat,"
    " t.lon, t.address, t.description, t.received_at, t.deadline_at, t.reporters, t.escalation_level, t.exercise"
    " FROM tickets t JOIN report_categories c ON c.code = t.category WHERE t.id = %s"
)


def ticket_event(ticket: dict, step: str, at: datetime, by: str | None, note: str | None, **data) -> Event:
    """``citizen.report.<step>`` of a ticket read with ``TICKET``, to its unit's screens."""
    emergency = ticket["emergency"]
    return Event(
        time=at,
        kind=f"citizen.report.{step}",
        severity="major" if emergency else "minor",
        unit_id=ticket["unit_id"],
        source=Source(type="ticket", id=str(ticket["id"])),
        location=Location.of(ticket["lat"], ticket["lon"]),
        title=f"{ticket['category_name']}: {ticket['description'][:120]}",
        data={
            "ticket_id": ticket["id"],
            "category": ticket["category"],
            "state": ticket["state"],
            "deadline_at": ticket["deadline_at"].isoformat(),
            "reporters": ticket["reporters"],
            "emergency": emergency,
            "escalation_level": ticket["escalation_level"],
            "exercise": ticket["exercise"],
            "by": by,
            "note": note,
            **data,
        },
    )
