"""The simulated city's side of the database: its units in, its sensors registered."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from simulators.city import Unit


def load_units(database_url: str, only: list[str] | None = None) -> list[Unit]:
    """The wards and communes (not the city itself), in a stable order."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id, centroid[1], centroid[0], coalesce(population, 0), coalesce(area_km2, 1) FROM units"
            " WHERE kind <> 'city' AND centroid IS NOT NULL ORDER BY id"
        ).fetchall()
    units = [Unit(*row) for row in rows]
    if only:
        missing = set(only) - {u.id for u in units}
        if missing:
            raise ValueError(f"no such units: {sorted(missing)}")
        units = [u for u in units if u.id in only]
    if not units:
        raise ValueError("no units in the database: run the migrations and seed the units first")
    return units


def register(database_url: str, devices: list[dict[str, Any]], exercise: bool = False) -> int:
    """Register (or update) the simulated sensors, a drill's marked as such; how many rows it wrote."""
    with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO sensors (id, kind, unit_id, lat, lon, interval_s, metrics, gateway_id, registered, exercise)"
            " VALUES (%(id)s, %(kind)s, %(unit_id)s, %(lat)s, %(lon)s, %(interval_s)s, %(metrics)s,"
            " %(gateway_id)s, true, %(exercise)s)"
            " ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, unit_id = excluded.unit_id, lat = excluded.lat,"
            " lon = excluded.lon, interval_s = excluded.interval_s, metrics = excluded.metrics,"
            " gateway_id = excluded.gateway_id, registered = true, exercise = excluded.exercise",
            [{**d, "metrics": Jsonb(d["metrics"]), "exercise": exercise} for d in devices],
        )
    return len(devices)
