"""Alerts written from rule hits, in the caller's transaction, with an event for each transition.

One open alert per rule and source (a unique index): a hit on an open alert updates its last
value, peak and count instead of opening another. Repeats between two transitions of the same
alert are merged into one update, so a sensor stuck above its limit costs one statement a batch.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from ioc_core.events import Event, Location, Source, insert_event
from ioc_core.rules import Hit
from ioc_core.units import CITY_ID

_OPEN = """
INSERT INTO alerts (rule_id, unit_id, source_type, source_id, metric, severity, title, lat, lon,
                    opened_at, last_value, peak_value, data, exercise)
VALUES (%(rule)s, %(unit)s, %(type)s, %(source)s, %(metric)s, %(severity)s, %(title)s, %(lat)s, %(lon)s,
        %(now)s, %(value)s, %(value)s, %(data)s,
        -- a drill's devices make a drill's alerts
        coalesce((SELECT exercise FROM sensors WHERE id = %(source)s),
                 (SELECT exercise FROM cameras WHERE id = %(source)s), false))
ON CONFLICT (rule_id, source_type, source_id) WHERE state <> 'resolved'
DO UPDATE SET last_value = EXCLUDED.last_value, count = alerts.count + 1, updated_at = EXCLUDED.opened_at
RETURNING id, (xmax = 0) AS opened
"""
_REPEAT = """
UPDATE alerts SET last_value = %(value)s, count = count + %(count)s, updated_at = %(now)s,
       peak_value = CASE WHEN %(higher)s THEN greatest(peak_value, %(peak)s) ELSE least(peak_value, %(peak)s) END
WHERE rule_id = %(rule)s AND source_type = %(type)s AND source_id = %(source)s AND state <> 'resolved'
"""
_RESOLVE = """
UPDATE alerts SET state = 'resolved', resolved_at = %(now)s, resolved_by = 'auto', last_value = %(value)s,
       updated_at = %(now)s
WHERE rule_id = %(rule)s AND source_type = %(type)s AND source_id = %(source)s AND state <> 'resolved'
RETURNING id, unit_id, severity, title, lat, lon
"""


@dataclass(slots=True)
class _Repeat:
    hit: Hit
    count: int
    peak: float | None


def condition(params: Any) -> dict[str, Any]:
    """The rule's condition as people read it (kept with the alert and in its events)."""
    return params.model_dump(exclude={"type"}) if params is not None else {}


def apply_hits(
    cur: psycopg.Cursor,
    hits: list[Hit],
    units: dict[str, str],
    locations: dict[str, tuple[float, float]],
) -> list[Event]:
    """Write the hits in order; returns the stored transition events to publish after commit."""
    now = datetime.now(UTC)
    events: list[Event] = []
    repeats: dict[tuple[int, str], _Repeat] = {}

    def flush(key: tuple[int, str]) -> None:
        repeat = repeats.pop(key, None)
        if repeat is not None:
            h = repeat.hit
            cur.execute(
                _REPEAT,
                {
                    "value": h.value,
                    "count": repeat.count,
                    "now": now,
                    "higher": h.rule.kind.higher_is_worse(h.rule.params),
                    "peak": repeat.peak,
                    "rule": h.rule.id,
                    "type": h.source_type,
                    "source": h.source_id,
                },
            )

    for hit in hits:
        key = (hit.rule.id, hit.source_id)
        if hit.action == "repeat":
            merged = repeats.get(key)
            if merged is None:
                repeats[key] = _Repeat(hit, 1, hit.value)
            else:
                worse = max if hit.rule.kind.higher_is_worse(hit.rule.params) else min
                peak = hit.value if merged.peak is None else worse(merged.peak, hit.value or merged.peak)
                repeats[key] = _Repeat(hit, merged.count + 1, peak)
            continue
        flush(key)
        event = open_alert(cur, hit, units, locations, now) if hit.action == "open" else resolve_alert(cur, hit, now)
        if event is not None:
            events.append(event)
    for key in list(repeats):
        flush(key)
    return events


def open_alert(
    cur: psycopg.Cursor,
    hit: Hit,
    units: dict[str, str],
    locations: dict[str, tuple[float, float]],
    now: datetime,
) -> Event | None:
    """Open the alert, or count a repeat if one is open already (then no event)."""
    rule = hit.rule
    unit_id = hit.unit_id or units.get(hit.source_id, CITY_ID)
    lat, lon = hit.location or locations.get(hit.source_id, (None, None))
    title = f"{rule.name}: {hit.source_type} {hit.source_id}"
    data = {"rule": rule.name, "condition": condition(rule.params), "observed_at": hit.time.isoformat()}
    if rule.reference:
        data["reference"] = rule.reference
    row = cur.execute(
        _OPEN,
        {
            "rule": rule.id,
            "unit": unit_id,
            "type": hit.source_type,
            "source": hit.source_id,
            "metric": rule.metric,
            "severity": rule.severity,
            "title": title,
            "lat": lat,
            "lon": lon,
            "now": now,
            "value": hit.value,
            "data": psycopg.types.json.Jsonb(data),
        },
    ).fetchone()
    alert_id, opened = row
    if not opened:
        return None
    return insert_event(
        cur,
        Event(
            time=now,
            kind="alert.opened",
            severity=rule.severity,
            unit_id=unit_id,
            source=Source(type=hit.source_type, id=hit.source_id),
            location=Location.of(lat, lon),
            title=title,
            data={"alert_id": alert_id, "rule_id": rule.id, "state": "open", "value": hit.value, **data},
        ),
    )


def resolve_alert(cur: psycopg.Cursor, hit: Hit, now: datetime) -> Event | None:
    """Resolve automatically (``resolved_by = 'auto'``): the condition cleared."""
    row = cur.execute(
        _RESOLVE,
        {"now": now, "value": hit.value, "rule": hit.rule.id, "type": hit.source_type, "source": hit.source_id},
    ).fetchone()
    if row is None:
        return None  # resolved meanwhile by a person or another worker
    alert_id, unit_id, severity, title, lat, lon = row
    return insert_event(
        cur,
        Event(
            time=now,
            kind="alert.resolved",
            severity=severity,
            unit_id=unit_id,
            source=Source(type=hit.source_type, id=hit.source_id),
            location=Location.of(lat, lon),
            title=title,
            data={
                "alert_id": alert_id,
                "rule_id": hit.rule.id,
                "state": "resolved",
                "by": "auto",
                "auto": True,
                "value": hit.value,
                "observed_at": hit.time.isoformat(),
            },
        ),
    )
