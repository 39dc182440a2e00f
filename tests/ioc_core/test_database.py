"""The schema, migrations and reference units on the real TimescaleDB cluster."""

import psycopg

from ioc_core.db import migrate


def test_migrations_apply_once(database_url: str, db: psycopg.Connection) -> None:
    assert migrate(database_url) == []
    versions = [r[0] for r in db.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions[0] == "0001_core"


def test_readings_and_events_are_hypertables(db: psycopg.Connection) -> None:
    names = {r[0] for r in db.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")}
    assert {"readings", "events"} <= names
    assert db.execute("SELECT current_setting('timescaledb.license')").fetchone()[0] in ("apache", "timescale")


def test_redelivered_reading_is_stored_once(db: psycopg.Connection) -> None:
    row = ("2026-01-01T00:00:00Z", "dup-sensor", "pm25", 12.5)
    for _ in range(2):
        db.execute("INSERT INTO readings VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", row)
    assert db.execute("SELECT count(*) FROM readings WHERE sensor_id = 'dup-sensor'").fetchone()[0] == 1


def test_da_nang_and_its_94_units_are_seeded(db: psycopg.Connection) -> None:
    kinds = dict(db.execute("SELECT kind, count(*) FROM units GROUP BY kind").fetchall())
    assert kinds == {"city": 1, "ward": 23, "commune": 70, "special_zone": 1}
    hai_chau = db.execute("SELECT name, parent_id, population, boundary->>'type' FROM units WHERE id = 'hai-chau'")
    assert hai_chau.fetchone() == ("Hải Châu", "danang", 131427, "MultiPolygon")


def test_each_committee_lies_in_its_own_unit(db: psycopg.Connection) -> None:
    misplaced = db.execute(
        "SELECT id, unit_at(committee[0], committee[1]) FROM units"
        " WHERE kind <> 'city' AND unit_at(committee[0], committee[1]) <> id"
    ).fetchall()
    assert misplaced == []


def test_sensor_placed_by_coordinates_is_assigned_its_unit(db: psycopg.Connection) -> None:
    db.execute("INSERT INTO sensors (id, kind, lat, lon) VALUES ('placed-1', 'air', 16.0637, 108.2224)")
    assert db.execute("SELECT unit_id FROM sensors WHERE id = 'placed-1'").fetchone()[0] == "hai-chau"
    # Moved to Hội An's committee: the unit follows.
    lat, lon = db.execute("SELECT committee[1], committee[0] FROM units WHERE id = 'hoi-an'").fetchone()
    db.execute("UPDATE sensors SET lat = %s, lon = %s, unit_id = NULL WHERE id = 'placed-1'", (lat, lon))
    assert db.execute("SELECT unit_id FROM sensors WHERE id = 'placed-1'").fetchone()[0] == "hoi-an"
