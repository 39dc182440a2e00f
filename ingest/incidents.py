"""Incidents: the alerts, camera events and citizens' reports of one situation, grouped as they come.

Every ``IOC_INCIDENT_CHECK_S`` one ingest worker at a time (an advisory lock) takes what no incident
holds yet, oldest first: alerts, camera events that started, open citizens' reports. Each belongs to
the incident type of the SOP that covers it (``ioc_core.sops.type_of``) and joins the open incident
of its unit and type (and exercise or not) whose last member came within
``IOC_INCIDENT_WINDOW_MINUTES`` of it and, where both have a place, lies within
``IOC_INCIDENT_DISTANCE_M``; else it opens one, with the SOP's current version as its checklist.
So a storm of a thousand alerts in one unit is one incident, not a thousand lines. An incident
opened is an event (``incident.opened``), and so is a rise of its severity (``incident.raised``);
members joining are not, so a storm is not a storm of events. Operators merge and split incidents
through the API.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg.rows import dict_row

from ioc_core.events import SEVERITIES, Event, Location, Source, insert_event
from ioc_core.settings import Settings
from ioc_core.sops import current, type_of

_LOCK = 0x10C_0004
_HORIZON = timedelta(days=1)  # what is older than this and still alone stays alone
_BATCH = 5000

_ALERTS = """
SELECT 'alert' AS member_type, a.id, a.unit_id, a.severity, a.opened_at AS at, a.title, a.lat, a.lon, a.exercise,
       r.type AS rule_type, r.sensor_kind, r.params->>'event' AS camera_event, NULL AS category,
       'alert.' || coalesce(r.type, 'rule') AS kind
FROM alerts a LEFT JOIN rules r ON r.id = a.rule_id
WHERE a.opened_at > %(since)s AND a.unit_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM incident_members m WHERE m.member_type = 'alert' AND m.member_id = a.id)
ORDER BY a.opened_at LIMIT %(limit)s
"""
_CAMERA_EVENTS = """
SELECT 'event' AS member_type, e.id, e.unit_id, e.severity, e.time AS at, e.title, e.lat, e.lon,
       coalesce(c.exercise, false) AS exercise, NULL AS rule_type, NULL AS sensor_kind,
       substr(e.kind, 8) AS camera_event, NULL AS category, e.kind
FROM events e LEFT JOIN cameras c ON c.id = e.source_id
WHERE e.time > %(since)s AND e.kind LIKE 'camera.%%' AND e.unit_id IS NOT NULL
  AND coalesce(e.data->>'state', 'started') = 'started'
  AND NOT EXISTS (SELECT 1 FROM incident_members m WHERE m.member_type = 'event' AND m.member_id = e.id)
ORDER BY e.time LIMIT %(limit)s
"""
_TICKETS = """
SELECT 'ticket' AS member_type, t.id, t.unit_id, CASE WHEN t.emergency THEN 'major' ELSE 'minor' END AS severity,
       t.received_at AS at, left(t.description, 200) AS title, t.lat, t.lon, t.exercise, NULL AS rule_type,
       NULL AS sensor_kind, NULL AS camera_event, t.category, 'citizen.report' AS kind
FROM tickets t
WHERE t.received_at > %(since)s AND t.state IN ('received', 'accepted', 'in_progress')
  AND NOT EXISTS (SELECT 1 FROM incident_members m WHERE m.member_type = 'ticket' AND m.member_id = t.id)
ORDER BY t.received_at LIMIT %(limit)s
"""


def metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Near enough for the distances that make one situation (an equirectangular projection)."""
    x = math.radians(lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
    return 6_371_000 * math.hypot(x, math.radians(lat2 - lat1))


@dataclass(slots=True)
class Open:
    """An open incident as the grouping needs it."""

    id: int
    severity: str
    lat: float | None
    lon: float | None
    last_member_at: datetime


def _event(incident_id: int, kind: str, m: dict, severity: str, type_: str, **data) -> Event:
    return Event(
        time=m["at"],
        kind=kind,
        severity=severity,
        unit_id=m["unit_id"],
        source=Source(type="incident", id=str(incident_id)),
        location=Location.of(m["lat"], m["lon"]),
        title=m["title"],
        data={"incident_id": incident_id, "type": type_, "exercise": m["exercise"], **data},
    )


class Grouping:
    def __init__(self, settings: Settings):
        self.window = timedelta(minutes=settings.incident_window_minutes)
        self.distance_m = settings.incident_distance_m

    def run_once(self, cur: psycopg.Cursor, now: datetime) -> list[Event]:
        """Group what no incident holds yet; the events of the incidents opened or raised."""
        params = {"since": now - _HORIZON, "limit": _BATCH}
        members = []
        with cur.connection.cursor(row_factory=dict_row) as reader:
            for query in (_ALERTS, _CAMERA_EVENTS, _TICKETS):
                members += reader.execute(query, params).fetchall()
        if not members:
            return []
        sops = current(cur.connection)
        found: dict[tuple[str, str, bool], list[Open]] = {}
        events = []
        for m in sorted(members, key=lambda m: m["at"]):
            type_ = type_of(
                sops,
                rule_type=m["rule_type"],
                sensor_kind=m["sensor_kind"],
                camera_event=m["camera_event"],
                category=m["category"],
            )
            key = (m["unit_id"], type_, m["exercise"])
            if key not in found:
                found[key] = self._open_incidents(cur, key, m["at"])
            incident = self._joinable(found[key], m)
            if incident is None:
                sop_id = sops[type_][0] if type_ in sops else None
                incident = self._open(cur, m, type_, sop_id)
                found[key].append(incident)
                events.append(insert_event(cur, _event(incident.id, "incident.opened", m, m["severity"], type_)))
            elif SEVERITIES.index(m["severity"]) > SEVERITIES.index(incident.severity):
                incident.severity = m["severity"]
                events.append(insert_event(cur, _event(incident.id, "incident.raised", m, m["severity"], type_)))
            self._add(cur, incident, m)
        return events

    def _open_incidents(self, cur: psycopg.Cursor, key: tuple[str, str, bool], at: datetime) -> list[Open]:
        unit_id, type_, exercise = key
        rows = cur.execute(
            "SELECT id, severity, lat, lon, last_member_at FROM incidents WHERE unit_id = %s AND type = %s"
            " AND exercise = %s AND state <> 'closed' AND last_member_at >= %s ORDER BY last_member_at DESC",
            (unit_id, type_, exercise, at - self.window),
        ).fetchall()
        return [Open(*r) for r in rows]

    def _joinable(self, candidates: list[Open], m: dict) -> Open | None:
        for incident in candidates:
            if m["at"] - incident.last_member_at > self.window:
                continue
            if (
                None in (incident.lat, m["lat"])
                or metres(incident.lat, incident.lon, m["lat"], m["lon"]) <= self.distance_m
            ):
                return incident
        return None

    @staticmethod
    def _open(cur: psycopg.Cursor, m: dict, type_: str, sop_id: int | None) -> Open:
        row = cur.execute(
            "INSERT INTO incidents (unit_id, type, sop_id, title, severity, exercise, lat, lon, opened_at,"
            " last_member_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                m["unit_id"],
                type_,
                sop_id,
                m["title"],
                m["severity"],
                m["exercise"],
                m["lat"],
                m["lon"],
                m["at"],
                m["at"],
                m["at"],
            ),
        ).fetchone()
        return Open(row[0], m["severity"], m["lat"], m["lon"], m["at"])

    @staticmethod
    def _add(cur: psycopg.Cursor, incident: Open, m: dict) -> None:
        cur.execute(
            "INSERT INTO incident_members (incident_id, member_type, member_id, kind, severity, unit_id, at, title,"
            " lat, lon) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (
                incident.id,
                m["member_type"],
                m["id"],
                m["kind"],
                m["severity"],
                m["unit_id"],
                m["at"],
                m["title"],
                m["lat"],
                m["lon"],
            ),
        )
        incident.last_member_at = max(incident.last_member_at, m["at"])
        cur.execute(
            "UPDATE incidents SET members = members + 1, severity = %s, last_member_at = greatest(last_member_at, %s),"
            " lat = coalesce(lat, %s), lon = coalesce(lon, %s), updated_at = now() WHERE id = %s",
            (incident.severity, m["at"], m["lat"], m["lon"], incident.id),
        )
        if incident.lat is None and m["lat"] is not None:
            incident.lat, incident.lon = m["lat"], m["lon"]


def group_once(settings: Settings, now_of, publish) -> list[Event] | None:
    """One round: the advisory lock, the grouping in one transaction, then its events published;
    None when another worker holds the round's lock."""
    with psycopg.connect(settings.database_url, connect_timeout=5, autocommit=True) as conn:
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK,)).fetchone()[0]:
            return None
        now = now_of(conn)
        if now is None:
            return []
        with conn.transaction(), conn.cursor() as cur:
            events = Grouping(settings).run_once(cur, now)
    publish(events)
    return events
