"""Da Nang's city and its 94 commune-level units, seeded from ``shared/geo``.

The source lists each unit's people's committee but no boundary, so each unit gets a plausible
one: the Voronoi cell of its committee clipped to the city boundary (a unit whose committee lies
outside the boundary, like the Hoàng Sa special zone, gets a disc of its area). That is enough for
maps and for point-in-unit lookups, which the database does itself (``unit_at``).
"""

import logging
import math
import re
import unicodedata
from pathlib import Path

import orjson
import psycopg
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon, mapping, shape

CITY_ID = "danang"
_SIMPLIFY_DEG = 0.0003  # about 30 m: keeps boundaries light for maps
_KM_PER_DEG = 111.32

log = logging.getLogger(__name__)


def slug(name: str) -> str:
    """ASCII id from a Vietnamese name: ``Đặc khu Hoàng Sa`` -> ``dac-khu-hoang-sa``."""
    text = name.replace("Đ", "D").replace("đ", "d")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _kind(unit: dict) -> str:
    if unit["new_commune_ward"].startswith("Đặc khu"):
        return "special_zone"
    return "commune" if unit["is_commune"] else "ward"


def _polygons(geom) -> list[Polygon]:
    if isinstance(geom, Polygon):
        return [geom]
    if isinstance(geom, MultiPolygon):
        return list(geom.geoms)
    return [g for part in getattr(geom, "geoms", []) for g in _polygons(part)]


def unit_boundaries(units: list[dict], city: MultiPolygon) -> list[MultiPolygon]:
    """One boundary per unit, in the order given."""
    points = [Point(u["location"]["longitude"], u["location"]["latitude"]) for u in units]
    inside = [i for i, p in enumerate(points) if city.contains(p)]
    cells = shapely.voronoi_polygons(
        shapely.MultiPoint([points[i] for i in inside]), extend_to=city.envelope, ordered=True
    )
    boundaries: list[MultiPolygon | None] = [None] * len(units)
    for i, cell in zip(inside, cells.geoms, strict=True):
        clipped = cell.intersection(city).simplify(_SIMPLIFY_DEG)
        boundaries[i] = MultiPolygon([p for p in _polygons(clipped) if not p.is_empty])
    for i, unit in enumerate(units):
        if boundaries[i] is None:
            radius_km = math.sqrt(max(unit["area_km2"], 1.0) / math.pi)
            disc = points[i].buffer(radius_km / _KM_PER_DEG, quad_segs=8)
            boundaries[i] = MultiPolygon([disc])
    return boundaries  # type: ignore[return-value]


def _pg_polygon(polygon: Polygon) -> str:
    return "(" + ",".join(f"({x:.6f},{y:.6f})" for x, y in polygon.exterior.coords) + ")"


def seed_units(conn: psycopg.Connection, shared_dir: Path) -> int:
    """Insert the city and its units once; returns how many units were inserted."""
    if conn.execute("SELECT count(*) FROM units").fetchone()[0]:
        return 0
    units_file = shared_dir / "geo" / "danang_units_2025.json"
    boundary_file = shared_dir / "geo" / "danang_boundary.geojson"
    if not (units_file.exists() and boundary_file.exists()):
        log.warning(
            "no reference units seeded: %s or %s is missing (set IOC_SHARED_DIR)",
            units_file,
            boundary_file,
        )
        return 0
    source = orjson.loads(units_file.read_bytes())
    city_info = source["metadata"]["city_info"]
    city = shape(orjson.loads(boundary_file.read_bytes())["features"][0]["geometry"])
    units = source["commune_ward_list"]
    boundaries = unit_boundaries(units, city)

    with conn.transaction(), conn.cursor() as cur:
        city_simple = MultiPolygon(_polygons(city.simplify(_SIMPLIFY_DEG)))
        rows = [
            (
                CITY_ID,
                "Đà Nẵng",
                "city",
                None,
                city_info["population"],
                city_info["area_km2"],
                city_simple,
                None,
                None,
                None,
            )
        ]
        for unit, boundary in zip(units, boundaries, strict=True):
            loc = unit["location"]
            rows.append(
                (
                    slug(unit["new_commune_ward"]),
                    unit["new_commune_ward"],
                    _kind(unit),
                    CITY_ID,
                    unit["population"],
                    unit["area_km2"],
                    boundary,
                    (loc["longitude"], loc["latitude"]),
                    loc.get("address"),
                    unit["merged_communes_wards"],
                )
            )
        for uid, name, kind, parent, pop, area, geom, committee, address, former in rows:
            c = geom.centroid
            cur.execute(
                "INSERT INTO units (id, name, kind, parent_id, population, area_km2, boundary,"
                " centroid, committee, address, former_units)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, point(%s, %s), %s::point, %s, %s)",
                (
                    uid,
                    name,
                    kind,
                    parent,
                    pop,
                    area,
                    orjson.dumps(mapping(geom)).decode(),
                    c.x,
                    c.y,
                    f"({committee[0]},{committee[1]})" if committee else None,
                    address,
                    former,
                ),
            )
            if kind != "city":
                cur.executemany(
                    "INSERT INTO unit_parts (unit_id, part) VALUES (%s, %s::polygon)",
                    [(uid, _pg_polygon(p)) for p in geom.geoms],
                )
    log.info("units seeded", extra={"units": len(units)})
    return len(units)
