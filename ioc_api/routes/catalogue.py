"""The open-data catalogue (DCAT-AP 3) that open-data portals harvest: JSON-LD by default, Turtle
or RDF/XML by ``Accept`` or ``?format=``; no token needed.

What it lists is read from the database (the sensor kinds the public sees and the span of their
hourly readings, whether public alerts, alerts and citizens' reports exist and since when), so a
body is shared for ``MAX_AGE_S`` by every caller on the same host, in the same form
(``ioc_api/body_cache.py``). Links are made from the host asked (``request.base_url``).

This module also brings the open readings (``open_readings``) that its datasets distribute: one
include registers both.
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from psycopg import AsyncConnection

from ioc_api.body_cache import BodyCache
from ioc_api.deps import EVERY_UNIT, scoped_connection
from ioc_api.problems import PROBLEM_RESPONSES
from ioc_api.routes import open_readings
from ioc_api.routes.open_readings import PUBLIC_SENSORS
from ioc_core.catalogue import CITY_BBOX, FORMATS, Holdings, Publisher, Span, build_catalogue, serialize

router = APIRouter(tags=["open data"], responses=PROBLEM_RESPONSES)
router.include_router(open_readings.router)

MAX_AGE_S = 60.0
Format = Literal["jsonld", "ttl", "rdf"]
# Media types a harvester may ask for, by the form that answers them.
_ACCEPTED: dict[str, Format] = {
    "application/ld+json": "jsonld",
    "application/json": "jsonld",
    "text/turtle": "ttl",
    "application/x-turtle": "ttl",
    "application/rdf+xml": "rdf",
    "text/*": "ttl",
    "application/*": "jsonld",
    "*/*": "jsonld",
}

# Each kind's readings span, per (sensor, metric) from the rollup's primary key: the first
# hour and the last reading, without reading every hour of every sensor.
_KINDS = f"""
SELECT s.kind, min(f.first), max(f.last)
FROM sensors s
LEFT JOIN LATERAL (
  SELECT (SELECT h.bucket FROM readings_1h h WHERE h.sensor_id = l.sensor_id AND h.metric = l.metric
          ORDER BY h.bucket LIMIT 1) AS first,
         (SELECT h.last_time FROM readings_1h h WHERE h.sensor_id = l.sensor_id AND h.metric = l.metric
          ORDER BY h.bucket DESC LIMIT 1) AS last
  FROM latest l WHERE l.sensor_id = s.id
) f ON true
WHERE {PUBLIC_SENSORS}
GROUP BY s.kind ORDER BY s.kind
"""
# Drills are not figures: they neither open a dataset nor stretch its span.
_ALERTS = """
SELECT min(a.opened_at) FILTER (WHERE r.public), max(a.opened_at) FILTER (WHERE r.public),
       min(a.opened_at), max(a.opened_at)
FROM alerts a LEFT JOIN rules r ON r.id = a.rule_id WHERE NOT a.exercise
"""
_TICKETS = "SELECT min(received_at), max(received_at) FROM tickets WHERE NOT exercise"
_CITY = "SELECT boundary FROM units WHERE kind = 'city' AND boundary IS NOT NULL LIMIT 1"


def _span(first, last) -> Span | None:
    return Span(first, last) if first is not None and last is not None else None


def _bbox(geometry: dict | None) -> tuple[float, float, float, float]:
    """West, south, east and north of a GeoJSON (multi)polygon; the city's known extent without one."""
    points: list[tuple[float, float]] = []

    def walk(coordinates: list) -> None:
        if coordinates and isinstance(coordinates[0], int | float):
            points.append((float(coordinates[0]), float(coordinates[1])))
        else:
            for inner in coordinates:
                walk(inner)

    walk((geometry or {}).get("coordinates") or [])
    if not points:
        return CITY_BBOX
    lons, lats = [p[0] for p in points], [p[1] for p in points]
    return min(lons), min(lats), max(lons), max(lats)


async def holdings(conn: AsyncConnection) -> Holdings:
    """What the catalogue lists, read on a connection of every unit's scope."""
    kinds = {kind: _span(first, last) for kind, first, last in await (await conn.execute(_KINDS)).fetchall()}
    public_first, public_last, first, last = await (await conn.execute(_ALERTS)).fetchone()
    ticket_first, ticket_last = await (await conn.execute(_TICKETS)).fetchone()
    city = await (await conn.execute(_CITY)).fetchone()
    return Holdings(
        kinds=kinds,
        public_alerts=_span(public_first, public_last),
        alerts=_span(first, last),
        tickets=_span(ticket_first, ticket_last),
        bbox=_bbox(city[0] if city else None),
    )


def negotiate(accept: str) -> Format:
    """The form ``Accept`` prefers (a named type before a wildcard of the same weight); JSON-LD when
    it names none of them."""
    best: Format = "jsonld"
    best_q = -1.0
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        fmt = _ACCEPTED.get(media.lower())
        if fmt is None:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        q -= 0.001 if "*" in media else 0.0
        if q > 0 and q > best_q:
            best, best_q = fmt, q
    return best


def _bodies(request: Request) -> BodyCache:
    bodies = getattr(request.app.state, "catalogue_bodies", None)
    if bodies is None:
        bodies = request.app.state.catalogue_bodies = BodyCache(MAX_AGE_S, max_entries=64)
    return bodies


@router.get(
    "/open-data/catalogue",
    summary="Open data: the DCAT-AP 3 catalogue of the IOC's open datasets and services (for open-data portals)",
    response_class=Response,
    responses={200: {"content": {media: {} for media, _ in FORMATS.values()}}},
)
async def catalogue(
    request: Request,
    format: Annotated[Format | None, Query(description="Overrides Accept: jsonld, ttl or rdf.")] = None,
) -> Response:
    fmt = format or negotiate(request.headers.get("accept", ""))
    base = str(request.base_url)
    pool, settings = request.app.state.pool, request.app.state.settings

    async def render() -> dict[str, str]:
        """Every format from one graph: a harvester reading two of them reads the same catalogue."""
        async with scoped_connection(pool, EVERY_UNIT) as conn:
            held = await holdings(conn)
        graph = build_catalogue(base, held, Publisher(settings.cap_sender))
        return {name: serialize(graph, name) for name in FORMATS}

    body = (await _bodies(request).get(base, render))[fmt]
    media, _ = FORMATS[fmt]
    headers = {"Vary": "Accept", "Cache-Control": f"public, max-age={int(MAX_AGE_S)}"}
    return Response(body, media_type=media, headers=headers)
