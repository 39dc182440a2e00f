"""The temporal side of NGSI-LD: which stored metric an attribute's history is, the temporal query
(``timerel``, ``timeAt``, ``endTimeAt``, ``lastN``) and aggregation periods, and the three temporal
representations (normalized, temporalValues, aggregatedValues)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ioc_core.ngsild.entities import KIND_OF_TYPE, MODELS, Entity, iso, parse_iso

AGGREGATES = ("totalCount", "sum", "avg", "min", "max")
_DURATION = re.compile(r"^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
DERIVED = frozenset({"intensity", "powerState"})  # shown with an observedAt, made from other values


class TemporalError(ValueError):
    """A temporal query that cannot be answered as asked: the caller's fault."""


def attribute_metrics(entity: Entity) -> dict[str, str]:
    """The entity's attributes that have a history, by the IOC's names, with the metric whose
    readings they are: its model's measured attributes and, for a partner's entity, the other
    numbers it sent (stored under their own names)."""
    kind = KIND_OF_TYPE.get(entity.type)
    if entity.source is None or kind is None:
        return {}
    known = {attr: metric for metric, (attr, _) in MODELS[kind].attributes.items()}
    if entity.tenant:
        observed = (n for n, a in entity.attrs.items() if isinstance(a, dict) and "observedAt" in a)
        known |= {n: n for n in observed if n not in known and n not in DERIVED}
    return {attr: metric for attr, metric in known.items() if attr in entity.attrs}


def parse_time(name: str, raw: str) -> datetime:
    t = parse_iso(raw)
    if t is None:
        raise TemporalError(f"{name} {raw!r} is not an ISO 8601 date and time")
    if not 1970 <= t.year <= 2200:
        raise TemporalError(f"{name} {raw!r} lies outside the years 1970 to 2200")
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def parse_duration(raw: str) -> timedelta:
    """An ISO 8601 duration in weeks, days, hours, minutes and seconds (months and years have no
    fixed length, so they are refused)."""
    match = _DURATION.match(raw)
    if not match or raw in ("P", "PT") or raw.endswith("T"):
        raise TemporalError(f"aggrPeriodDuration {raw!r} is not an ISO 8601 duration such as PT1H or P1D")
    weeks, days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    try:
        return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError as exc:
        raise TemporalError(f"aggrPeriodDuration {raw!r} is longer than any history") from exc


@dataclass(frozen=True, slots=True)
class Window:
    """The time a temporal query covers, ``[start, end)``, and how it wants its instances."""

    start: datetime
    end: datetime
    last_n: int | None = None


def window(
    timerel: str | None, time_at: str | None, end_time_at: str | None, last_n: int | None, now: datetime
) -> Window:
    if timerel is None:
        if time_at is not None or end_time_at is not None:
            raise TemporalError("timeAt and endTimeAt come with timerel")
        return Window(EARLIEST, now + timedelta(seconds=1), last_n)
    if timerel not in ("before", "after", "between"):
        raise TemporalError(f"timerel {timerel!r} is not before, after or between")
    if time_at is None:
        raise TemporalError(f"timerel={timerel} needs timeAt")
    at = parse_time("timeAt", time_at)
    if timerel == "before":
        return Window(EARLIEST, at, last_n)
    if timerel == "after":
        return Window(at, max(at, now) + timedelta(seconds=1), last_n)
    if end_time_at is None:
        raise TemporalError("timerel=between needs endTimeAt")
    end = parse_time("endTimeAt", end_time_at)
    if end <= at:
        raise TemporalError("endTimeAt must come after timeAt")
    return Window(at, end, last_n)


Instances = list[tuple[datetime, float]]


def normalized(name_of: Any, values: dict[str, Instances], unit_codes: dict[str, str | None]) -> dict[str, Any]:
    out = {}
    for attr, instances in values.items():
        code = unit_codes.get(attr)
        out[name_of(attr)] = [
            {"type": "Property", "value": v, "observedAt": iso(t), **({"unitCode": code} if code else {})}
            for t, v in instances
        ]
    return out


def temporal_values(name_of: Any, values: dict[str, Instances]) -> dict[str, Any]:
    return {name_of(a): {"type": "Property", "values": [[v, iso(t)] for t, v in inst]} for a, inst in values.items()}


Buckets = list[tuple[datetime, datetime, dict[str, float]]]  # (start, end, {method: value})


def aggregated(name_of: Any, buckets: dict[str, Buckets], methods: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for attr, rows in buckets.items():
        body: dict[str, Any] = {"type": "Property"}
        for method in methods:
            body[method] = [[values[method], iso(start), iso(end)] for start, end, values in rows]
        out[name_of(attr)] = body
    return out


def unit_codes(entity: Entity) -> dict[str, str | None]:
    return {n: a.get("unitCode") for n, a in entity.attrs.items() if isinstance(a, dict)}
