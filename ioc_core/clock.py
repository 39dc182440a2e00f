"""The clock that escalations, no-data rules, incidents and notifications time against
(``IOC_ALERT_CLOCK``): the wall clock in service; in replays and simulations at speed, the newest
stored reading's time, so that a run at 600x escalates on its own time."""

from datetime import UTC, datetime

import psycopg

from ioc_core.settings import Settings


def clock_now(conn: psycopg.Connection, settings: Settings) -> datetime | None:
    """Now on the configured clock; None on the data clock before the first reading."""
    if settings.alert_clock == "wall":
        return datetime.now(UTC)
    return conn.execute("SELECT max(time) FROM latest").fetchone()[0]
