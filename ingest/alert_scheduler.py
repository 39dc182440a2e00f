"""What must happen when nothing arrives: escalation of unacknowledged alerts and no-data rules.

It runs on a clock, not on readings, so an alert escalates and a silent sensor is noticed even
when the whole city is quiet. Every ingest worker runs it; an advisory lock lets one at a time do
the work, in one transaction whose events are published after it commits.
"""

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
from psycopg.rows import dict_row

from ingest.alerting import open_alert, resolve_alert
from ingest.rules import Hit
from ioc_core.events import Event, Location, Source, insert_event
from ioc_core.rules import RULE_COLUMNS, NoDataParams, Rule
from ioc_core.settings import Settings

log = logging.getLogger(__name__)

_LOCK = 0x10C_0003
ESCALATION_LEVELS = 2

_SILENT = """
SELECT s.id, s.unit_id, s.lat, s.lon
FROM sensors s LEFT JOIN latest l ON l.sensor_id = s.id AND (%(metric)s::text IS NULL OR l.metric = %(metric)s)
WHERE s.registered AND (%(kind)s::text IS NULL OR s.kind = %(kind)s)
  AND (%(unit)s::text IS NULL OR s.unit_id = %(unit)s)
GROUP BY s.id
HAVING coalesce(max(l.time), s.created_at)
       < %(now)s - %(factor)s * coalesce(s.interval_s, %(default)s) * interval '1 second'
"""
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


def check_silence(cur: psycopg.Cursor, rules: list[Rule], now: datetime) -> list[Event]:
    """Open an alert for each sensor silent past its rule's limit; resolve those heard again."""
    events = []
    for rule in rules:
        p: NoDataParams = rule.params
        silent = cur.execute(
            _SILENT,
            {
                "metric": rule.metric,
                "kind": rule.sensor_kind,
                "unit": rule.unit_id,
                "now": now,
                "factor": p.factor,
                "default": p.default_interval_s,
            },
        ).fetchall()
        open_ids = {
            r[0]
            for r in cur.execute("SELECT source_id FROM alerts WHERE rule_id = %s AND state <> 'resolved'", (rule.id,))
        }
        units = {sensor_id: unit_id for sensor_id, unit_id, _, _ in silent}
        locations = {sensor_id: (lat, lon) for sensor_id, _, lat, lon in silent if lat is not None and lon is not None}
        for sensor_id in sorted(units.keys() - open_ids):
            event = open_alert(cur, Hit("open", rule, "sensor", sensor_id, now), units, locations, now)
            if event is not None:
                events.append(event)
        for sensor_id in sorted(open_ids - units.keys()):
            event = resolve_alert(cur, Hit("resolve", rule, "sensor", sensor_id, now), now)
            if event is not None:
                events.append(event)
    return events


class AlertScheduler:
    """Every ``alert_check_s``: escalations and no-data rules, then ``publish`` their events."""

    def __init__(self, settings: Settings, stopping: threading.Event, publish: Callable[[list[Event]], None]):
        self._settings, self._stopping, self._publish = settings, stopping, publish

    def run(self) -> None:
        while not self._stopping.wait(self._settings.alert_check_s):
            try:
                self.run_once()
            except psycopg.Error as exc:
                log.warning("alert scheduler failed, will retry", extra={"error": str(exc)[:300]})

    def run_once(self) -> list[Event]:
        with psycopg.connect(self._settings.database_url, connect_timeout=5, autocommit=True) as conn:
            if not conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK,)).fetchone()[0]:
                return []  # another worker is at it
            now = self._now(conn)
            if now is None:
                return []  # a data clock with no data yet
            with conn.cursor(row_factory=dict_row) as reader:
                rows = reader.execute(f"SELECT {RULE_COLUMNS} FROM rules WHERE enabled AND type = 'no_data'").fetchall()
            rules = [Rule.from_row(r) for r in rows]
            with conn.transaction(), conn.cursor() as cur:
                events = escalate(cur, self._settings, now) + check_silence(cur, rules, now)
        self._publish(events)  # committed: stored before it is pushed
        if events:
            log.info("alerts escalated or silent sensors judged", extra={"events": len(events)})
        return events

    def _now(self, conn: psycopg.Connection) -> datetime | None:
        """The wall clock; or, for replays and simulations at speed, the newest reading's time."""
        if self._settings.alert_clock == "wall":
            return datetime.now(UTC)
        return conn.execute("SELECT max(time) FROM latest").fetchone()[0]
