"""Response times: how fast each unit acknowledges and resolves its alerts, per period and severity.

The same figures serve operators (scoped to their units) and the public (open data): counts and
durations only, never a location or a source.
"""

from datetime import datetime
from typing import Literal

from psycopg import AsyncConnection
from psycopg.rows import class_row
from pydantic import BaseModel, Field

Period = Literal["day", "week", "month"]
CITY_TIMEZONE = "Asia/Ho_Chi_Minh"

_SQL = """
SELECT a.unit_id, u.name AS unit_name,
       date_trunc(%(period)s, a.opened_at AT TIME ZONE %(tz)s) AT TIME ZONE %(tz)s AS period_start,
       a.severity,
       count(*) AS alerts,
       count(a.acknowledged_at) AS acknowledged,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.acknowledged_at - a.opened_at))
         AS acknowledge_median_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM a.acknowledged_at - a.opened_at))
         AS acknowledge_p90_s,
       count(*) FILTER (WHERE a.resolved_by <> 'auto') AS resolved,
       count(*) FILTER (WHERE a.resolved_by = 'auto') AS cleared_by_themselves,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.resolved_at - a.opened_at))
         FILTER (WHERE a.resolved_by <> 'auto') AS resolve_median_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM a.resolved_at - a.opened_at))
         FILTER (WHERE a.resolved_by <> 'auto') AS resolve_p90_s,
       count(*) FILTER (WHERE a.escalation_level > 0) AS escalated
FROM alerts a JOIN units u ON u.id = a.unit_id
WHERE a.opened_at >= %(start)s AND a.opened_at < %(end)s AND NOT a.exercise  -- drills are not figures
  AND (%(unit)s::text IS NULL OR a.unit_id = %(unit)s)
GROUP BY 1, 2, 3, 4
ORDER BY 3, 1, array_position(ARRAY['critical','major','minor','info'], a.severity)
"""


class ResponseTimes(BaseModel):
    unit_id: str
    unit_name: str
    period_start: datetime = Field(description="Start of the day, week or month in the city's time zone.")
    severity: str
    alerts: int = Field(description="Alerts opened in the period.")
    acknowledged: int
    acknowledge_median_s: float | None
    acknowledge_p90_s: float | None
    resolved: int = Field(description="Resolved by people.")
    cleared_by_themselves: int = Field(description="Resolved automatically: the condition cleared.")
    resolve_median_s: float | None = Field(description="Opening to resolution by people.")
    resolve_p90_s: float | None
    escalated: int = Field(description="Escalated to city level for want of an acknowledgement.")


async def response_times(
    db: AsyncConnection, period: Period, start: datetime, end: datetime, unit: str | None
) -> list[ResponseTimes]:
    """The figures of the alerts ``db``'s scope holds (the caller's units, or every unit for open data)."""
    async with db.cursor(row_factory=class_row(ResponseTimes)) as cur:
        await cur.execute(
            _SQL,
            {"period": period, "tz": CITY_TIMEZONE, "start": start, "end": end, "unit": unit},
        )
        return await cur.fetchall()
