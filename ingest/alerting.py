"""Alerts written from rule hits, in the caller's transaction, with an event for each transition.

One open alert per rule and source (a unique index): a hit on an open alert updates its last
value, peak and count instead of opening another. Repeats between two transitions of the same
alert are merged into one update, so a sensor stuck above its limit costs one statement a batch.

Several workers, or a redelivery after a fault, may judge one source out of order. An alert keeps
the data time of its newest observation (``observed_at``): a late observation neither resolves an
alert that a newer one keeps open nor reopens one that a newer one resolved; a worker that still
holds an alert open which another resolved opens a new one when its next breach is newer than that
resolution; and what changed nothing is returned, so the engine takes those sources' state from
their alerts (``RuleEngine.align``).
"""

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from ioc_core.events import Event, Location, Source, insert_event
from ioc_core.rules import Hit
from ioc_core.units import CITY_ID

_OPEN = """
INSERT INTO alerts (rule_id, unit_id, source_type, source_id, metric, severity, title, lat, lon,
                    opened_at, last_value, peak_value, data, exercise, observed_at)
SELECT %(rule)s, %(unit)s, %(type)s, %(source)s, %(metric)s, %(severity)s, %(title)s, %(lat)s, %(lon)s,
       %(now)s, %(value)s, %(value)s, %(data)s,
       -- a drill's devices make a drill's alerts
       coalesce((SELECT exercise FROM sensors WHERE id = %(source)s),
                (SELECT exercise FROM cameras WHERE id = %(source)s), false),
       %(time)s
-- an observation older than the resolution of this rule's last alert on the source is late
WHERE NOT EXISTS (SELECT 1 FROM alerts WHERE rule_id = %(rule)s AND source_type = %(type)s
                  AND source_id = %(source)s AND state = 'resolved' AND observed_at >= %(time)s)
ON CONFLICT (rule_id, source_type, source_id) WHERE state <> 'resolved'
DO UPDATE SET last_value = EXCLUDED.last_value, count = alerts.count + 1, updated_at = EXCLUDED.opened_at,
              observed_at = greatest(alerts.observed_at, EXCLUDED.observed_at)
RETURNING id, (xmax = 0) AS opened
"""
_REPEAT = """
UPDATE alerts SET last_value = %(value)s, count = count + %(count)s, updated_at = %(now)s,
       observed_at = greatest(observed_at, %(time)s),
       peak_value = CASE WHEN %(higher)s THEN greatest(peak_value, %(peak)s) ELSE least(peak_value, %(peak)s) END
WHERE rule_id = %(rule)s AND source_type = %(type)s AND source_id = %(source)s AND state <> 'resolved'
"""
_RESOLVE = """
UPDATE alerts SET state = 'resolved', resolved_at = %(now)s, resolved_by = 'auto', last_value = %(value)s,
       updated_at = %(now)s, observed_at = %(time)s
WHERE rule_id = %(rule)s AND source_type = %(type)s AND source_id = %(source)s AND state <> 'resolved'
  AND (observed_at IS NULL OR observed_at <= %(time)s)  -- a late observation does not resolve it
RETURNING id, unit_id, severity, title, lat, lon
"""


@dataclass(slots=True)
class _Repeat:
    hit: Hit
    count: int
    peak: float | None
    newest: datetime


@dataclass(slots=True)
class Applied:
    events: list[Event] = field(default_factory=list)  # stored transition events, to publish after commit
    unchanged: list[Hit] = field(default_factory=list)  # opens and resolutions that changed no alert


def condition(params: Any) -> dict[str, Any]:
    """The rule's condition as people read it (kept with the alert and in its events)."""
    return params.model_dump(exclude={"type"}) if params is not None else {}


def apply_hits(
    cur: psycopg.Cursor,
    hits: list[Hit],
    units: dict[str, str],
    locations: dict[str, tuple[float, float]],
) -> Applied:
    """Write the hits in order: the stored transition events, and the opens and resolutions that
    changed nothing (a repeat of an open alert, one resolved meanwhile, or a late observation)."""
    now = datetime.now(UTC)
    applied = Applied()
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
                    "time": repeat.newest,
                    "higher": h.rule.kind.higher_is_worse(h.rule.params),
                    "peak": repeat.peak,
                    "rule": h.rule.id,
                    "type": h.source_type,
                    "source": h.source_id,
                },
            )
            if cur.rowcount == 0:  # resolved meanwhile (another worker, a person): the breach opens anew
                record(dataclasses.replace(h, action="open", time=repeat.newest))

    def record(hit: Hit) -> None:
        event = open_alert(cur, hit, units, locations, now) if hit.action == "open" else resolve_alert(cur, hit, now)
        if event is None:
            applied.unchanged.append(hit)
        else:
            applied.events.append(event)

    for hit in hits:
        key = (hit.rule.id, hit.source_id)
        if hit.action == "repeat":
            merged = repeats.get(key)
            if merged is None:
                repeats[key] = _Repeat(hit, 1, hit.value, hit.time)
            else:
                worse = max if hit.rule.kind.higher_is_worse(hit.rule.params) else min
                peak = hit.value if merged.peak is None else worse(merged.peak, hit.value or merged.peak)
                repeats[key] = _Repeat(hit, merged.count + 1, peak, max(merged.newest, hit.time))
            continue
        flush(key)
        record(hit)
    for key in list(repeats):
        flush(key)
    return applied


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
            "time": hit.time,
            "value": hit.value,
            "data": psycopg.types.json.Jsonb(data),
        },
    ).fetchone()
    if row is None or not row[1]:  # late, or a repeat of the open alert
        return None
    alert_id = row[0]
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
        {
            "now": now,
            "time": hit.time,
            "value": hit.value,
            "rule": hit.rule.id,
            "type": hit.source_type,
            "source": hit.source_id,
        },
    ).fetchone()
    if row is None:
        return None  # resolved meanwhile by a person or another worker, or a late observation
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
