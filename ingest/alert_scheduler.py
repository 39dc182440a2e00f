"""What must happen when nothing arrives: escalation of unacknowledged alerts, clock rules (no
data), and citizens' reports past their deadline (``ingest/ticket_deadlines.py``).

It runs on a clock, not on readings, so an alert escalates and a silent sensor is noticed even
when the whole city is quiet. Every ingest worker runs it; an advisory lock lets one at a time do
the work, in one transaction whose events are published after it commits.
"""

import logging
from collections.abc import Callable
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from ingest.alerting import open_alert, resolve_alert
from ingest.ticket_deadlines import watch_tickets
from ioc_core.clock import clock_now
from ioc_core.events import Event, Location, Source, insert_event
from ioc_core.rules import RULE_COLUMNS, TYPES, ClockType, Rule
from ioc_core.settings import Settings

log = logging.getLogger(__name__)

_LOCK = 0x10C_0003
ESCALATION_LEVELS = 2

_UNACKNOWLEDGED = """
SELECT id, unit_id, severity, opened_at, escalation_level, source_type, source_id, title, lat, lon
FROM alerts WHERE state = 'open' AND escalation_level < %s FOR UPDATE SKIP LOCKED
"""


def deadlines(settings: Settings, unit_id: str | None, severity: str) -> tuple[float, ...]:
    """Seconds from opening to each escalation: the unit's own, else the city's."""
    per_unit = settings.escalation_unit_deadlines_s.get(unit_id or "", {})
    return tuple(per_unit.get(severity) or settings.escalation_deadlines_s.get(severity) or ())


def escalate(cur: psycopg.Cursor, settings: Settings, now: datetime) -> list[Event]:
    """Raise each open (unacknowledged) alert past its next deadline by one level or more."""
    events = []
    for row in cur.execute(_UNACKNOWLEDGED, (ESCALATION_LEVELS,)).fetchall():
        alert_id, unit_id, severity, opened_at, current, source_type, source_id, title, lat, lon = row
        steps = deadlines(settings, unit_id, severity)
        age = (now - opened_at).total_seconds()
        level = sum(1 for s in steps[:ESCALATION_LEVELS] if age >= s)
        if level <= current:
            continue
        cur.execute(
            "UPDATE alerts SET escalation_level = %s, escalated_at = %s, updated_at = %s WHERE id = %s",
            (level, now, now, alert_id),
        )
        events.append(
            insert_event(
                cur,
                Event(
                    time=now,
                    kind="alert.escalated",
                    severity=severity,
                    unit_id=unit_id,
                    source=Source(type=source_type, id=source_id),
                    location=Location.of(lat, lon),
                    title=title,
                    data={
                        "alert_id": alert_id,
                        "level": level,
                        "to": "city",
                        "deadline_s": steps[level - 1],
                        "unacknowledged_s": round(age, 1),
                    },
                ),
            )
        )
    return events


def check_clock_rules(cur: psycopg.Cursor, rules: list[Rule], now: datetime) -> list[Event]:
    """Each clock rule type's check (no-data rules: silent sensors), its hits written as alerts."""
    events = []
    for name, rule_type in TYPES.items():
        if not isinstance(rule_type, ClockType):
            continue
        for hit in rule_type.check(cur, [r for r in rules if r.type == name], now):
            event = open_alert(cur, hit, {}, {}, now) if hit.action == "open" else resolve_alert(cur, hit, now)
            if event is not None:
                events.append(event)
    return events


class AlertScheduler:
    """Escalations and clock rules, then ``publish`` their events; ``run_once`` is the step of a
    loop every ``IOC_ALERT_CHECK_S`` (``ioc_core.loops``)."""

    def __init__(self, settings: Settings, publish: Callable[[list[Event]], None]):
        self._settings, self._publish = settings, publish

    def run_once(self) -> list[Event]:
        with psycopg.connect(self._settings.database_url, connect_timeout=5, autocommit=True) as conn:
            if not conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK,)).fetchone()[0]:
                return []  # another worker is at it
            now = self._now(conn)
            if now is None:
                return []  # a data clock with no data yet
            with conn.cursor(row_factory=dict_row) as reader:
                rows = reader.execute(
                    f"SELECT {RULE_COLUMNS} FROM rules WHERE enabled AND type = ANY(%s)",
                    ([name for name, t in TYPES.items() if isinstance(t, ClockType)],),
                ).fetchall()
            rules = []
            for row in rows:
                try:
                    rules.append(Rule.from_row(row))
                except ValueError as exc:  # stored by hand around the API: the others still run
                    log.error("rule ignored: unreadable parameters", extra={"rule_id": row["id"], "error": str(exc)})
            with conn.transaction(), conn.cursor() as cur:
                events = escalate(cur, self._settings, now) + check_clock_rules(cur, rules, now)
                events += watch_tickets(cur, self._settings, now)
        self._publish(events)  # committed: stored before it is pushed
        if events:
            log.info("alerts escalated or silent sensors judged", extra={"events": len(events)})
        return events

    def _now(self, conn: psycopg.Connection) -> datetime | None:
        return clock_now(conn, self._settings)
