"""The NGSI-LD temporal API over the stored readings: an entity's attributes as they were, as
instances, as ``[value, time]`` pairs, or aggregated per period.

Aggregates read the hourly or 1-minute rollups when the periods fall on whole hours or minutes
(as the REST history does; rollups are current to within ``IOC_ROLLUP_INTERVAL_S``), the raw
readings otherwise. An attribute answers at most ``MAX_INSTANCES`` instances; past that the answer
is a 206 whose ``Content-Range`` says which times it covers, and the caller asks for the rest.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response

from ioc_api.deps import Db
from ioc_api.ngsild.protocol import JSON, JSON_LD, Caller, ReadingCaller, answer, bad_request, negotiate, not_found
from ioc_api.routes.ngsild import DEFAULT_LIMIT, _check_uri, _int, _names, current, selection, visible
from ioc_core.ngsild.entities import Entity, iso
from ioc_core.ngsild.temporal import (
    AGGREGATES,
    Buckets,
    Instances,
    TemporalError,
    Window,
    aggregated,
    attribute_metrics,
    normalized,
    parse_duration,
    temporal_values,
    unit_codes,
    window,
)

router = APIRouter(prefix="/ngsi-ld/v1/temporal", tags=["ngsi-ld"])
MAX_INSTANCES = 10_000
MAX_ENTITIES = 100

_INSTANCES = """
SELECT m.metric, r.time, r.value FROM unnest(%(metrics)s::text[]) AS m(metric)
CROSS JOIN LATERAL (
  SELECT time, value FROM readings WHERE sensor_id = %(sensor)s AND metric = m.metric
  AND time >= %(start)s AND time < %(end)s ORDER BY time {order} LIMIT %(cap)s
) r
"""
# count, sum, avg, min, max of each period, from the raw readings or a rollup
_AGGREGATES = {
    "readings": ("time", "count(*)::float8, sum(value), avg(value), min(value), max(value)"),
    "readings_1m": (
        "bucket",
        "sum(count)::float8, sum(avg * count), sum(avg * count) / sum(count), min(min), max(max)",
    ),
}
_AGGREGATES["readings_1h"] = _AGGREGATES["readings_1m"]


class Asked:
    """What a temporal request asks for: the window, the representation, the aggregation."""

    def __init__(self, request: Request):
        params = request.query_params
        options = {o for raw in params.getlist("options") for o in raw.split(",") if o}
        form = params.get("format") or next((o for o in ("temporalValues", "aggregatedValues") if o in options), None)
        if form not in (None, "normalized", "temporalValues", "aggregatedValues"):
            raise bad_request(f"format {form!r} is not normalized, temporalValues or aggregatedValues")
        self.form = form or "normalized"
        if (prop := params.get("timeproperty")) not in (None, "observedAt"):
            raise bad_request(f"timeproperty {prop!r}: the readings' history is by observedAt")
        last_n = _int(request, "lastN", 0, 1, MAX_INSTANCES) if "lastN" in params else None
        try:
            self.window: Window = window(
                params.get("timerel"), params.get("timeAt"), params.get("endTimeAt"), last_n, datetime.now(UTC)
            )
            self.methods: tuple[str, ...] = ()
            self.period: timedelta | None = None
            if self.form == "aggregatedValues":
                self._aggregation(params.get("aggrMethods"), params.get("aggrPeriodDuration"))
        except TemporalError as exc:
            raise bad_request(str(exc)) from exc

    def _aggregation(self, methods: str | None, duration: str | None) -> None:
        if not methods:
            raise TemporalError(f"aggregatedValues needs aggrMethods, some of {', '.join(AGGREGATES)}")
        names = tuple(m.strip() for m in methods.split(",") if m.strip())
        unknown = [m for m in names if m not in AGGREGATES]
        if unknown:
            raise TemporalError(f"aggrMethods {', '.join(unknown)} not supported; these are: {', '.join(AGGREGATES)}")
        self.methods = names
        period = parse_duration(duration) if duration else timedelta(0)
        span = self.window.end - self.window.start
        self.period = span if not period or period > span else period
        if self.period < timedelta(seconds=1):
            raise TemporalError("aggrPeriodDuration is a second at least")


def _source(start: datetime, period: timedelta) -> str:
    """The coarsest table whose buckets fit the periods exactly."""
    seconds, aligned = period.total_seconds(), start.timestamp()
    if seconds % 3600 == 0 and aligned % 3600 == 0:
        return "readings_1h"
    if seconds % 60 == 0 and aligned % 60 == 0:
        return "readings_1m"
    return "readings"


async def _instances(db: Db, sensor: str, metrics: dict[str, str], w: Window) -> tuple[dict[str, Instances], bool]:
    """Each attribute's instances in time order; whether one of them was cut at the cap."""
    cap = min(w.last_n or MAX_INSTANCES, MAX_INSTANCES)
    newest_first = w.last_n is not None
    cur = await db.execute(
        _INSTANCES.format(order="DESC" if newest_first else "ASC"),
        {"metrics": list(metrics.values()), "sensor": sensor, "start": w.start, "end": w.end, "cap": cap + 1},
    )
    by_metric: dict[str, Instances] = {m: [] for m in metrics.values()}
    for metric, time, value in await cur.fetchall():
        by_metric[metric].append((time, value))
    cut = False
    values = {}
    for attr, metric in metrics.items():
        found = by_metric[metric]
        if len(found) > cap:
            found = found[:cap]
            cut = cut or w.last_n is None
        values[attr] = found[::-1] if newest_first else found
    return values, cut


async def _buckets(db: Db, sensor: str, metrics: dict[str, str], asked: Asked) -> tuple[dict[str, Buckets], bool]:
    w, period = asked.window, asked.period
    assert period is not None
    source = _source(w.start, period)
    column, aggregates = _AGGREGATES[source]
    cur = await db.execute(
        f"SELECT metric, time_bucket(%(period)s, {column}, %(origin)s) AS b, {aggregates} FROM {source}"
        f" WHERE sensor_id = %(sensor)s AND metric = ANY(%(metrics)s) AND {column} >= %(start)s"
        f" AND {column} < %(end)s GROUP BY 1, 2 ORDER BY 1, 2 LIMIT %(cap)s",
        {
            "period": period,
            "origin": w.start,
            "sensor": sensor,
            "metrics": list(metrics.values()),
            "start": w.start,
            "end": w.end,
            "cap": MAX_INSTANCES * len(metrics) + 1,
        },
    )
    rows = await cur.fetchall()
    attr_of = {m: a for a, m in metrics.items()}
    out: dict[str, Buckets] = {a: [] for a in metrics}
    for metric, start, count, total, avg, low, high in rows[: MAX_INSTANCES * len(metrics)]:
        values = {"totalCount": count, "sum": total, "avg": avg, "min": low, "max": high}
        out[attr_of[metric]].append((start, min(start + period, w.end), values))
    return out, len(rows) > MAX_INSTANCES * len(metrics)


async def temporal_entity(db: Db, caller: Caller, entity: Entity, names: frozenset[str] | None, asked: Asked):
    """The entity's history as the caller asked for it, and whether it was cut short."""
    metrics = attribute_metrics(entity)
    if names is not None:
        metrics = {a: m for a, m in metrics.items() if a in names}
    body: dict[str, Any] = {"id": entity.id, "type": caller.terms.to_caller(entity.type)}
    if not metrics:
        return body, False
    name_of = caller.terms.to_caller
    if asked.form == "aggregatedValues":
        buckets, cut = await _buckets(db, entity.source, metrics, asked)
        return {**body, **aggregated(name_of, buckets, asked.methods)}, cut
    values, cut = await _instances(db, entity.source, metrics, asked.window)
    if asked.form == "temporalValues":
        return {**body, **temporal_values(name_of, values)}, cut
    return {**body, **normalized(name_of, values, unit_codes(entity))}, cut


def _partial(asked: Asked, headers: dict[str, str]) -> int:
    w = asked.window
    headers["Content-Range"] = f"date-time {iso(w.start)}-{iso(w.end)}/*"
    return 206


@router.get("/entities/{entity_id:path}", summary="One entity's attributes over time (temporal representation)")
async def retrieve_temporal(entity_id: str, request: Request, caller: ReadingCaller, db: Db) -> Response:
    media = negotiate(request, (JSON, JSON_LD))
    _check_uri(entity_id)
    asked = Asked(request)
    names = _names(caller, request.query_params.get("attrs"))
    snapshot = await current(request, caller)
    entity = snapshot.get(caller.tenant, entity_id)
    if entity is None or not caller.sees(entity):
        raise not_found(f"no entity {entity_id!r}")
    body, cut = await temporal_entity(db, caller, entity, names, asked)
    headers: dict[str, str] = {}
    status = _partial(asked, headers) if cut else 200
    return answer(caller, media, body, status=status, headers=headers)


@router.get("/entities", summary="Entities' attributes over time: the query of /entities, with timerel and lastN")
async def query_temporal(request: Request, caller: ReadingCaller, db: Db) -> Response:
    media = negotiate(request, (JSON, JSON_LD))
    asked = Asked(request)
    if request.query_params.get("timerel") is None and asked.window.last_n is None:
        raise bad_request("a temporal query names timerel (with timeAt) or lastN")
    query = selection(request, caller)
    limit = _int(request, "limit", DEFAULT_LIMIT, 1, MAX_ENTITIES)
    offset = _int(request, "offset", 0, 0)
    snapshot = await current(request, caller)
    found = visible(caller, snapshot.entities(caller.tenant, query.types), query)
    bodies, any_cut = [], False
    for entity in found[offset : offset + limit]:
        body, cut = await temporal_entity(db, caller, entity, query.attrs, asked)
        bodies.append(body)
        any_cut = any_cut or cut
    headers: dict[str, str] = {}
    if request.query_params.get("count") == "true":
        headers["NGSILD-Results-Count"] = str(len(found))
    status = _partial(asked, headers) if any_cut else 200
    return answer(caller, media, bodies, status=status, headers=headers)
