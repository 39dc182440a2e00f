"""Grouping into incidents, on the test database in a transaction rolled back at the end: a storm of
a thousand alerts in one unit is one incident; other units, other types, far places, later times
and drills are incidents of their own; reports and camera events join the situation they belong to."""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from ingest.incidents import Grouping
from ioc_core.settings import Settings

T0 = datetime(2026, 3, 16, 2, 0, tzinfo=UTC)  # the members' own times: the clock is theirs


@pytest.fixture
def cur(db: psycopg.Connection):
    with db.transaction(force_rollback=True), db.cursor() as cur:
        yield cur


def rule_id(cur: psycopg.Cursor, name: str) -> int:
    return cur.execute("SELECT id FROM rules WHERE name = %s", (name,)).fetchone()[0]


def alert(
    cur, rule: int, unit: str, source: str, at: datetime, lat=15.99, lon=108.23, severity="critical", exercise=False
) -> int:
    return cur.execute(
        "INSERT INTO alerts (rule_id, unit_id, source_type, source_id, severity, title, lat, lon, opened_at, exercise)"
        " VALUES (%s, %s, 'sensor', %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (rule, unit, source, severity, f"{source} high", lat, lon, at, exercise),
    ).fetchone()[0]


def incidents_of(cur, kind: str, ids: list[int]) -> dict[int, int]:
    """incident id -> how many of these members it holds."""
    rows = cur.execute(
        "SELECT incident_id, count(*) FROM incident_members WHERE member_type = %s AND member_id = ANY(%s) GROUP BY 1",
        (kind, ids),
    ).fetchall()
    return dict(rows)


def test_a_storm_of_a_thousand_alerts_in_a_unit_is_one_incident(cur: psycopg.Cursor) -> None:
    level = rule_id(cur, "Water level at alarm level III")
    storm = [alert(cur, level, "hoa-xuan", f"inc-wl-{i}", T0 + timedelta(seconds=i * 0.06)) for i in range(1000)]
    events = Grouping(Settings()).run_once(cur, T0 + timedelta(minutes=2))
    groups = incidents_of(cur, "alert", storm)
    assert list(groups.values()) == [1000]
    (incident,) = groups
    assert cur.execute(
        "SELECT type, severity, members, state FROM incidents WHERE id = %s", (incident,)
    ).fetchone() == (
        "flood",
        "critical",
        1000,
        "open",
    )
    mine = [e for e in events if e.data["incident_id"] == incident]
    assert [e.kind for e in mine] == ["incident.opened"]  # members joining are no events


def test_units_types_places_times_and_drills_keep_incidents_apart_and_the_rest_joins(cur: psycopg.Cursor) -> None:
    level, silent = rule_id(cur, "Water level at alarm level III"), rule_id(cur, "Water level sensor silent")
    first = alert(cur, level, "hoa-xuan", "inc-a", T0, severity="major")
    same = alert(cur, level, "hoa-xuan", "inc-b", T0 + timedelta(minutes=5))  # raises it to critical
    other_unit = alert(cur, level, "hai-chau", "inc-c", T0 + timedelta(minutes=6), lat=16.06, lon=108.22)
    outage = alert(cur, silent, "hoa-xuan", "inc-d", T0 + timedelta(minutes=7))  # a silent gauge: an outage
    far = alert(cur, level, "hoa-xuan", "inc-e", T0 + timedelta(minutes=8), lat=16.10)  # 12 km away
    later = alert(cur, level, "hoa-xuan", "inc-f", T0 + timedelta(hours=3))  # past the hour's window
    drill = alert(cur, level, "hoa-xuan", "inc-g", T0 + timedelta(minutes=9), exercise=True)
    report = cur.execute(
        "INSERT INTO tickets (category, unit_id, emergency, lat, lon, description, received_at, deadline_at)"
        " VALUES ('flooding', 'hoa-xuan', true, 15.991, 108.231, 'Ngập sâu', %s, %s) RETURNING id",
        (T0 + timedelta(minutes=10), T0 + timedelta(days=1)),
    ).fetchone()[0]
    camera = cur.execute(
        "INSERT INTO events (time, kind, severity, unit_id, source_type, source_id, lat, lon, title, data)"
        " VALUES (%s, 'camera.stopped_vehicle', 'major', 'hoa-xuan', 'camera', 'inc-cam', 15.99, 108.23,"
        " 'Stopped', %s) RETURNING id",
        (T0 + timedelta(minutes=11), Jsonb({"state": "started"})),
    ).fetchone()[0]
    events = Grouping(Settings()).run_once(cur, T0 + timedelta(hours=4))
    of = {
        name: next(iter(incidents_of(cur, kind, [member])))
        for name, kind, member in [
            ("first", "alert", first),
            ("same", "alert", same),
            ("other_unit", "alert", other_unit),
            ("outage", "alert", outage),
            ("far", "alert", far),
            ("later", "alert", later),
            ("drill", "alert", drill),
            ("report", "ticket", report),
            ("camera", "event", camera),
        ]
    }
    assert of["same"] == of["first"] == of["report"]  # the flooding report joins the flood
    assert len({of[k] for k in of if k not in ("same", "report")}) == 7
    types = dict(cur.execute("SELECT id, type FROM incidents WHERE id = ANY(%s)", (list(of.values()),)).fetchall())
    assert (types[of["outage"]], types[of["camera"]]) == ("sensor_outage", "stopped_vehicle")
    flood = cur.execute("SELECT severity, members, exercise FROM incidents WHERE id = %s", (of["first"],)).fetchone()
    assert flood == ("critical", 3, False)
    assert cur.execute("SELECT exercise FROM incidents WHERE id = %s", (of["drill"],)).fetchone() == (True,)
    raised = [e.kind for e in events if e.data["incident_id"] == of["first"]]
    assert raised == ["incident.opened", "incident.raised"]
