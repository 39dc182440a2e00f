"""Reaching people: the chain planned on the clock and stopped by acknowledgement; real servers
receive what is sent: an SMTP server (aiosmtpd) the emails, a webhook receiver that checks the
signatures and fails twice, so the retries show; a storm digested into one message per person, and
the rate per person held."""

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import psycopg
import pytest
from aiosmtpd.controller import Controller
from psycopg.types.json import Jsonb

from ioc_core.settings import Settings
from notify.channels import verify
from notify.planner import plan
from notify.service import Notifier
from tests.support import free_port, wait_until

SECRET = "a-webhook-secret-of-the-city"


class Inbox:
    """aiosmtpd's handler: every message it receives."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content), datetime.now(UTC)))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, Inbox]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, inbox
    controller.stop()


@pytest.fixture
def hook() -> Iterator[tuple[str, list]]:
    """A receiver that answers 500 twice, then 200; it keeps (signature valid, body) of each call."""
    calls: list[tuple[bool, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            valid = verify(SECRET, self.headers["X-IOC-Timestamp"], body, self.headers["X-IOC-Signature"])
            calls.append((valid, orjson.loads(body)))
            self.send_response(500 if len(calls) <= 2 else 200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", calls
    server.shutdown()


def incident(cur, unit: str, opened: datetime, title: str, exercise: bool = False) -> int:
    return cur.execute(
        "INSERT INTO incidents (unit_id, type, title, severity, exercise, opened_at, last_member_at, members)"
        " VALUES (%s, 'flood', %s, 'critical', %s, %s, %s, 1) RETURNING id",
        (unit, title, exercise, opened, opened),
    ).fetchone()[0]


def user(cur, name: str, email: str | None, unit: str | None = None, on: datetime | None = None) -> None:
    cur.execute(
        "INSERT INTO users (username, role, units, email) VALUES (%s, 'ward_operator', %s, %s)",
        (name, [unit] if unit else [], email),
    )
    if on:
        cur.execute(
            "INSERT INTO duty_shifts (unit_id, role, username, starts_at, ends_at) VALUES (%s, 'ward_operator', %s,"
            " %s, %s)",
            (unit, name, on - timedelta(hours=4), on + timedelta(hours=4)),
        )


def rule(cur, unit: str, channel: str, chain: list[dict], remind: float | None = None, secret=None) -> int:
    return cur.execute(
        "INSERT INTO notification_rules (name, unit_id, incident_types, min_severity, channel, chain,"
        " remind_minutes, secret) VALUES ('test', %s, '{flood}', 'major', %s, %s, %s, %s) RETURNING id",
        (unit, channel, Jsonb(chain), remind, secret),
    ).fetchone()[0]


def test_the_chain_escalates_on_the_clock_reminds_and_stops_once_acknowledged(db: psycopg.Connection) -> None:
    t0 = datetime(2026, 3, 16, 2, 0, tzinfo=UTC)
    with db.transaction(force_rollback=True), db.cursor() as cur:
        user(cur, "nt-duty", "duty@ward.vn", "an-hai", on=t0)
        user(cur, "nt-off", "off@ward.vn", "an-hai")  # not on shift: never reached
        rule(
            cur,
            "an-hai",
            "email",
            [{"after_minutes": 0, "to": "on_duty:ward_operator"}, {"after_minutes": 10, "to": "email:chief@city.vn"}],
            remind=15,
        )
        flood = incident(cur, "an-hai", t0, "Ngập An Hải")
        incident(cur, "an-hai", t0, "Diễn tập", exercise=True)  # a drill: this rule is not for drills

        def planned() -> list[tuple]:
            return cur.execute(
                "SELECT level, round, recipient FROM notifications n JOIN incidents i ON i.id = n.incident_id"
                " WHERE i.unit_id = 'an-hai' ORDER BY level, round, recipient"
            ).fetchall()

        plan(cur, t0 + timedelta(minutes=1), t0)
        assert planned() == [(0, 0, "duty@ward.vn")]
        plan(cur, t0 + timedelta(minutes=11), t0)
        plan(cur, t0 + timedelta(minutes=12), t0)  # nothing twice
        assert planned() == [(0, 0, "duty@ward.vn"), (1, 0, "chief@city.vn")]
        plan(cur, t0 + timedelta(minutes=16), t0)  # a reminder to the first step
        assert planned() == [(0, 0, "duty@ward.vn"), (0, 1, "duty@ward.vn"), (1, 0, "chief@city.vn")]
        cur.execute("UPDATE incidents SET acknowledged_at = %s WHERE id = %s", (t0, flood))
        plan(cur, t0 + timedelta(hours=2), t0)
        assert len(planned()) == 3


def test_a_storm_is_one_email_a_webhook_is_signed_and_retried_and_the_rate_per_person_holds(
    database_url: str, smtp, hook
) -> None:
    port, inbox = smtp
    url, calls = hook
    now = datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
        user(cur, "nt-storm", "storm@ward.vn", "thanh-khe", on=now)
        rules = [
            rule(cur, "thanh-khe", "email", [{"after_minutes": 0, "to": "on_duty:ward_operator"}]),
            rule(cur, "thanh-khe", "webhook", [{"after_minutes": 0, "to": f"url:{url}"}], secret=SECRET),
        ]
        storm = [incident(cur, "thanh-khe", now - timedelta(seconds=i), f"Ngập {i}") for i in range(3)]
    settings = Settings(database_url=database_url, smtp_url=f"smtp://127.0.0.1:{port}", notify_per_person_per_hour=1)
    notifier = Notifier(settings)
    try:

        def delivered() -> bool:
            notifier.run_once()
            return bool(inbox.messages) and len(calls) >= 3

        wait_until(delivered, timeout=60, interval=0.5, what="the email, and the webhook after two failures")
        [(to, email, _)] = inbox.messages
        assert to == ["storm@ward.vn"] and "3 incidents" in email["Subject"]
        text = email.get_payload(decode=True).decode()
        assert all(f"Ngập {i}" in text for i in range(3))
        assert [valid for valid, _ in calls] == [True, True, True]
        assert len(calls[-1][1]["incidents"]) == 3  # one call carries the three
        with psycopg.connect(database_url) as conn:
            states = conn.execute(
                "SELECT channel, state, attempts FROM notifications WHERE incident_id = ANY(%s) ORDER BY id", (storm,)
            ).fetchall()
        assert sorted(states) == sorted(
            [
                ("email", "sent", 1),
                ("email", "digested", 0),
                ("email", "digested", 0),
                ("webhook", "sent", 3),
                ("webhook", "digested", 2),
                ("webhook", "digested", 2),
            ]
        )
        with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
            later = incident(cur, "thanh-khe", datetime.now(UTC), "Ngập lần nữa")
        notifier.run_once()
        notifier.run_once()
        assert len(inbox.messages) == 1  # one an hour for this person: the next waits
        with psycopg.connect(database_url) as conn:
            waiting = conn.execute(
                "SELECT state, next_attempt_at > now() + interval '50 minutes' FROM notifications"
                " WHERE incident_id = %s AND channel = 'email'",
                (later,),
            ).fetchall()
        assert waiting == [("pending", True)]
    finally:
        notifier.http.close()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM notification_rules WHERE id = ANY(%s)", (rules,))
            conn.execute("DELETE FROM incidents WHERE unit_id = 'thanh-khe' AND type = 'flood'")
            conn.execute("DELETE FROM users WHERE username = 'nt-storm'")


def test_a_storm_of_a_thousand_alerts_in_a_minute_is_one_incident_and_one_email(
    database_url: str, smtp, ingest
) -> None:
    """The policy: one incident per situation, one message per person and pass; no more."""
    port, inbox = smtp
    now = datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
        level = cur.execute("SELECT id FROM rules WHERE name = 'Water level at alarm level III'").fetchone()[0]
        cur.executemany(
            "INSERT INTO alerts (rule_id, unit_id, source_type, source_id, severity, title, lat, lon, opened_at)"
            " VALUES (%s, 'ngu-hanh-son', 'sensor', %s, 'critical', 'Water high', 16.0, 108.25, %s)",
            [(level, f"storm-{i}", now - timedelta(seconds=60 - i * 0.06)) for i in range(1000)],
        )
        user(cur, "nt-nhs", "nhs@ward.vn", "ngu-hanh-son", on=now)
        storm_rule = rule(cur, "ngu-hanh-son", "email", [{"after_minutes": 0, "to": "on_duty:ward_operator"}])
    settings = Settings(database_url=database_url, smtp_url=f"smtp://127.0.0.1:{port}")
    notifier = Notifier(settings)
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            wait_until(  # the session's ingest groups them (every second)
                lambda: (
                    conn.execute(
                        "SELECT count(*) FROM incident_members m JOIN alerts a ON m.member_type = 'alert'"
                        " AND a.id = m.member_id WHERE a.source_id LIKE 'storm-%%'"
                    ).fetchone()[0]
                    == 1000
                ),
                what="the storm grouped",
            )
            incidents = conn.execute(
                "SELECT DISTINCT m.incident_id FROM incident_members m JOIN alerts a ON m.member_type = 'alert'"
                " AND a.id = m.member_id WHERE a.source_id LIKE 'storm-%%'"
            ).fetchall()
        assert len(incidents) == 1
        wait_until(lambda: notifier.run_once() or inbox.messages, what="the email")
        for _ in range(3):
            notifier.run_once()
        assert [to for to, _, _ in inbox.messages] == [["nhs@ward.vn"]]
    finally:
        notifier.http.close()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM notification_rules WHERE id = %s", (storm_rule,))
            conn.execute("UPDATE alerts SET state = 'resolved' WHERE source_id LIKE 'storm-%%'")
            conn.execute("UPDATE incidents SET state = 'closed' WHERE unit_id = 'ngu-hanh-son'")
            conn.execute("DELETE FROM users WHERE username = 'nt-nhs'")
