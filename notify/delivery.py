"""Sending what is due: every notification due to one recipient by one channel goes in one message
(a storm becomes a digest), at most ``IOC_NOTIFY_PER_PERSON_PER_HOUR`` messages an hour to anyone
(what waits past it goes in the next message the limit allows), each channel's sends side by side
with a timeout, a failure retried with backoff (1 s, then twice as long each time, up to 5
minutes) and given up after ``IOC_NOTIFY_ATTEMPTS``. What each notification became is stored:
sent, digested into another's message, failed (with the last error), or cancelled once its
incident was acknowledged."""

from __future__ import annotations

import itertools
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import httpx
import psycopg
from psycopg.rows import dict_row

from ioc_core.settings import Settings
from notify.channels import DeliveryError, send_email, send_webhook

log = logging.getLogger(__name__)

_DUE = """
SELECT n.id, n.incident_id, n.level, n.round, n.channel, n.recipient, n.attempts, r.secret, r.name AS rule_name,
       i.title, i.severity, i.type, i.unit_id, u.name AS unit_name, i.members, i.exercise, i.opened_at, i.state
FROM notifications n JOIN notification_rules r ON r.id = n.rule_id JOIN incidents i ON i.id = n.incident_id
JOIN units u ON u.id = i.unit_id
WHERE n.state = 'pending' AND n.next_attempt_at <= %(wall)s
ORDER BY n.id LIMIT 2000 FOR UPDATE OF n SKIP LOCKED
"""


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(2 ** max(attempts - 1, 0), 300))


def message(group: list[dict], screen_url: str) -> tuple[str, str, dict]:
    """(subject, text, webhook payload) of one message carrying a group's notifications."""
    incidents = {n["incident_id"]: n for n in group}
    first = group[0]
    drill = "[DIỄN TẬP / EXERCISE] " if first["exercise"] else ""
    if len(incidents) == 1:
        subject = f"{drill}[IOC {first['severity']}] {first['title']} · {first['unit_name']}"
    else:
        subject = f"{drill}[IOC] {len(incidents)} incidents need attention"
    lines = []
    for n in incidents.values():
        escalated = f", escalation step {n['level']}" if n["level"] else ""
        reminder = f", reminder {n['round']}" if n["round"] else ""
        lines.append(
            f"- {n['severity'].upper()} {n['type']} in {n['unit_name']}: {n['title']} (members: {n['members']},"
            f" opened {n['opened_at']:%Y-%m-%d %H:%M} UTC{escalated}{reminder})\n"
            f"  {screen_url}/#incident-{n['incident_id']}"
        )
    text = "\n".join(lines) + "\n\nAcknowledge on the screen to stop these messages.\n"
    payload = {
        "notifications": [n["id"] for n in group],
        "incidents": [
            {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in n.items() if k not in ("secret",)}
            for n in incidents.values()
        ],
    }
    return subject, text, payload


def deliver(conn: psycopg.Connection, settings: Settings, http: httpx.Client, wall: datetime) -> dict[str, int]:
    """One pass; how many messages went, failed, and waited for the rate limit."""
    counts = {"sent": 0, "failed": 0, "postponed": 0}
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        due = cur.execute(_DUE, {"wall": wall}).fetchall()
        if not due:
            return counts
        groups = [list(g) for _, g in itertools.groupby(due, key=lambda n: (n["channel"], n["recipient"]))]
        groups = _merge(groups)
        sendable = []
        for group in groups:
            wait = _rate_limited(cur, group[0]["recipient"], settings.notify_per_person_per_hour, wall)
            if wait is not None:
                cur.execute(
                    "UPDATE notifications SET next_attempt_at = %s WHERE id = ANY(%s)", (wait, [n["id"] for n in group])
                )
                counts["postponed"] += 1
            else:
                sendable.append(group)
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda g: _send(g, settings, http), sendable))
        for group, error in zip(sendable, results, strict=True):
            ids = [n["id"] for n in group]
            if error is None:
                cur.execute(
                    "UPDATE notifications SET state = 'sent', sent_at = %s, attempts = attempts + 1 WHERE id = %s",
                    (wall, ids[0]),
                )
                cur.execute(
                    "UPDATE notifications SET state = 'digested', sent_at = %s, sent_with = %s WHERE id = ANY(%s)",
                    (wall, ids[0], ids[1:]),
                )
                counts["sent"] += 1
                continue
            attempts = max(n["attempts"] for n in group) + 1
            give_up = attempts >= settings.notify_attempts
            cur.execute(
                "UPDATE notifications SET attempts = attempts + 1, last_error = %s, next_attempt_at = %s,"
                " state = CASE WHEN %s THEN 'failed' ELSE 'pending' END WHERE id = ANY(%s)",
                (error, wall + backoff(attempts), give_up, ids),
            )
            counts["failed"] += 1
            log.warning(
                "notification not delivered",
                extra={"to": group[0]["recipient"], "error": error, "attempts": attempts, "given_up": give_up},
            )
    return counts


def _merge(groups: list[list[dict]]) -> list[list[dict]]:
    """Rows come by id: one group per channel and recipient, whatever their order."""
    merged: dict[tuple[str, str], list[dict]] = {}
    for group in groups:
        merged.setdefault((group[0]["channel"], group[0]["recipient"]), []).extend(group)
    return list(merged.values())


def _rate_limited(cur: psycopg.Cursor, recipient: str, per_hour: int, wall: datetime) -> datetime | None:
    """When the recipient may be sent the next message, if not now."""
    sent = cur.execute(
        "SELECT sent_at FROM notifications WHERE recipient = %s AND state = 'sent' AND sent_at > %s ORDER BY sent_at",
        (recipient, wall - timedelta(hours=1)),
    ).fetchall()
    if len(sent) < per_hour:
        return None
    return sent[len(sent) - per_hour]["sent_at"] + timedelta(hours=1)


def _send(group: list[dict], settings: Settings, http: httpx.Client) -> str | None:
    """Send one message; the error, if it failed."""
    first = group[0]
    subject, text, payload = message(group, settings.notify_screen_url)
    try:
        if first["channel"] == "email":
            send_email(settings.smtp_url, settings.notify_from, first["recipient"], subject, text)
        else:
            send_webhook(http, first["recipient"], first["secret"] or "", {"subject": subject, "text": text, **payload})
    except DeliveryError as exc:
        return str(exc)
    return None
