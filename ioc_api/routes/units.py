"""The city and its wards and communes, with boundaries as GeoJSON."""

from typing import Literal

from fastapi import APIRouter, Request
from psycopg.rows import dict_row

from ioc_api.deps import EVERY_UNIT, scoped_connection

router = APIRouter(tags=["units"])


@router.get("/units", summary="Units as a GeoJSON FeatureCollection")
async def list_units(request: Request, kind: Literal["city", "ward", "commune", "special_zone"] | None = None) -> dict:
    async with scoped_connection(request.app.state.pool, EVERY_UNIT) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT id, name, kind, parent_id, population, area_km2, boundary,"
            " centroid[0] AS lon, centroid[1] AS lat FROM units"
            " WHERE %(kind)s::text IS NULL OR kind = %(kind)s ORDER BY kind <> 'city', name",
            {"kind": kind},
        )
        rows = await cur.fetchall()
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": r["id"],
                "geometry": r.pop("boundary"),
                "properties": r,
            }
            for r in rows
        ],
    }
