"""The notifier's round, every ``IOC_NOTIFY_CHECK_S``: plan what is due (one notifier at a time: an
advisory lock), then deliver it. Both survive anything a step raises (``ioc_core.loops``)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import httpx
import psycopg
from prometheus_client import Counter

from ioc_core.clock import clock_now
from ioc_core.loops import Loop
from ioc_core.settings import Settings
from notify.delivery import deliver
from notify.planner import plan

_LOCK = 0x10C_0005
PLANNED = Counter("ioc_notify_planned_total", "Notifications planned")
MESSAGES = Counter("ioc_notify_messages_total", "Messages sent, failed, or held back by the rate limit", ["result"])


class Notifier:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.stop = threading.Event()
        self.http = httpx.Client(timeout=10)

    def run_once(self) -> None:
        wall = datetime.now(UTC)
        with psycopg.connect(self.settings.database_url, connect_timeout=5, autocommit=True) as conn:
            if conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK,)).fetchone()[0]:
                now = clock_now(conn, self.settings)
                if now is not None:
                    with conn.transaction(), conn.cursor() as cur:
                        PLANNED.inc(plan(cur, now, wall))
            for result, n in deliver(conn, self.settings, self.http, wall).items():
                MESSAGES.labels(result).inc(n)

    def run(self) -> None:
        Loop("notify", self.settings.notify_check_s).run(self.run_once, self.stop)
        self.http.close()
