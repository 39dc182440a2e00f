"""No data: a sensor silent for longer than ``factor`` times its ``interval_s`` (or the default)
opens; its next reading resolves. Judged on a clock by the alert scheduler, so a silence is
noticed even when the rest of the city is quiet.

Silent means behind both the clock and the newest reading stored in the city. When ingest falls
behind (an overload, a database outage), every stored reading is late alike and no sensor is
behind the others: without the second bound each such backlog opened a no-data alert on every
sensor of the city, and resolved them all again minutes later. A silence of the whole city is
not any one sensor's fault either: ingest's and the API's readiness and the screen's pill say it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import psycopg
from pydantic import Field

from ioc_core.rules.base import ClockType, Hit, RuleParams

if TYPE_CHECKING:
    from ioc_core.rules import Rule


class Params(RuleParams):
    """Silent for longer than ``factor`` times the sensor's ``interval_s`` (or the default)."""

    type: Literal["no_data"] = "no_data"
    factor: float = Field(3, gt=1, allow_inf_nan=False)
    default_interval_s: float = Field(60, gt=0, allow_inf_nan=False)


_SILENT = """
SELECT s.id, s.unit_id, s.lat, s.lon
FROM sensors s LEFT JOIN latest l ON l.sensor_id = s.id AND (%(metric)s::text IS NULL OR l.metric = %(metric)s)
WHERE s.registered AND (%(kind)s::text IS NULL OR s.kind = %(kind)s)
  AND (%(unit)s::text IS NULL OR s.unit_id = %(unit)s)
GROUP BY s.id
HAVING coalesce(max(l.time), s.created_at)
       < least(%(now)s, %(newest)s) - %(factor)s * coalesce(s.interval_s, %(default)s) * interval '1 second'
"""


def step(silent: set[str], open_now: set[str]) -> tuple[list[str], list[str]]:
    """The pure evaluation: sensors to open (silent, not yet open) and to resolve (heard again)."""
    return sorted(silent - open_now), sorted(open_now - silent)


class NoData(ClockType):
    name = "no_data"
    Params = Params

    def check(self, cur: psycopg.Cursor, rules: Iterable[Rule], now: datetime) -> list[Hit]:
        hits = []
        row = cur.execute("SELECT time FROM readings ORDER BY time DESC LIMIT 1").fetchone()  # the time index
        newest = row[0] if row else now
        for rule in rules:
            p: Params = rule.params
            silent = {
                sensor_id: (unit_id, (lat, lon) if lat is not None and lon is not None else None)
                for sensor_id, unit_id, lat, lon in cur.execute(
                    _SILENT,
                    {
                        "metric": rule.metric,
                        "kind": rule.sensor_kind,
                        "unit": rule.unit_id,
                        "now": now,
                        "newest": newest,
                        "factor": p.factor,
                        "default": p.default_interval_s,
                    },
                )
            }
            open_now = {
                r[0]
                for r in cur.execute(
                    "SELECT source_id FROM alerts WHERE rule_id = %s AND state <> 'resolved'", (rule.id,)
                )
            }
            opening, resolving = step(set(silent), open_now)
            for sensor_id in opening:
                unit_id, location = silent[sensor_id]
                hits.append(Hit("open", rule, "sensor", sensor_id, now, unit_id=unit_id, location=location))
            hits += [Hit("resolve", rule, "sensor", sensor_id, now) for sensor_id in resolving]
        return hits
