"""Which notifications are due: for each enabled rule, the incidents it covers that nobody has
acknowledged, each step of its chain whose minutes have passed since the incident opened (on the
alerts' clock: the data clock in replays), and, with ``remind_minutes``, a reminder each time as
much again has passed. The recipients are resolved when a notification is planned: ``on_duty:ROLE``
is whoever is on shift in that role for the incident's unit then (their email), ``user:NAME`` that
user's email, ``email:`` and ``url:`` themselves. A notification is planned once (a unique key),
however often the planner looks."""

from __future__ import annotations

import logging
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from ioc_core.events import severity_at_least

log = logging.getLogger(__name__)

_COVERED = """
SELECT i.id, i.unit_id, i.opened_at FROM incidents i
WHERE i.state <> 'closed' AND i.acknowledged_at IS NULL AND i.severity = ANY(%(severities)s)
  AND (%(unit)s::text IS NULL OR i.unit_id = %(unit)s)
  AND (cardinality(%(types)s::text[]) = 0 OR i.type = ANY(%(types)s))
  AND (NOT i.exercise OR %(exercises)s)
"""


def recipients(cur: psycopg.Cursor, to: str, unit_id: str, channel: str, now: datetime) -> list[str]:
    kind, _, target = to.partition(":")
    if kind == "url" or kind == "email":
        return [target]
    if kind == "user":
        rows = cur.execute("SELECT email FROM users WHERE username = %s AND NOT disabled", (target,)).fetchall()
    else:  # on_duty
        rows = cur.execute(
            "SELECT DISTINCT u.email FROM duty_shifts s JOIN users u ON u.username = s.username"
            " WHERE s.unit_id = %s AND s.role = %s AND s.starts_at <= %s AND s.ends_at > %s AND NOT u.disabled",
            (unit_id, target, now, now),
        ).fetchall()
    found = sorted(r[0] for r in rows if r[0])
    if not found:
        log.warning("nobody to reach", extra={"to": to, "unit": unit_id, "channel": channel})
    return found


def plan(cur: psycopg.Cursor, now: datetime, wall: datetime) -> int:
    """Plan what is due at ``now`` (the clock); due to be sent at ``wall``. How many were planned."""
    planned = 0
    with cur.connection.cursor(row_factory=dict_row) as reader:
        rules = reader.execute("SELECT * FROM notification_rules WHERE enabled").fetchall()
        for rule in rules:
            incidents = reader.execute(
                _COVERED,
                {
                    "severities": severity_at_least(rule["min_severity"]),
                    "unit": rule["unit_id"],
                    "types": rule["incident_types"],
                    "exercises": rule["exercises"],
                },
            ).fetchall()
            for incident in incidents:
                age_min = (now - incident["opened_at"]).total_seconds() / 60
                for level, step in enumerate(rule["chain"]):
                    if age_min < step["after_minutes"]:
                        break
                    reminders = rule["remind_minutes"]
                    round_ = int((age_min - step["after_minutes"]) // reminders) if reminders else 0
                    for recipient in recipients(cur, step["to"], incident["unit_id"], rule["channel"], now):
                        planned += cur.execute(
                            "INSERT INTO notifications (incident_id, rule_id, level, round, channel, recipient,"
                            " next_attempt_at, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                            " ON CONFLICT DO NOTHING",
                            (incident["id"], rule["id"], level, round_, rule["channel"], recipient, wall, now),
                        ).rowcount
    return planned
