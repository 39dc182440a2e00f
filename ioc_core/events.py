"""The one event envelope used on MQTT live topics, the WebSocket, REST and the events table."""

from datetime import datetime
from typing import Any, Literal

import orjson
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

Severity = Literal["info", "minor", "major", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "minor", "major", "critical")


class Source(BaseModel):
    type: str = Field(description="sensor, camera, device, rule, user, citizen")
    id: str


class Location(BaseModel):
    lat: float
    lon: float

    @classmethod
    def of(cls, lat: float | None, lon: float | None) -> "Location | None":
        """A location from nullable columns: None unless both are known."""
        return cls(lat=lat, lon=lon) if lat is not None and lon is not None else None


class Event(BaseModel):
    id: int | None = Field(None, description="Assigned by the events table when stored.")
    time: datetime
    kind: str = Field(examples=["alert.opened", "device.offline", "camera.congestion"])
    severity: Severity = "info"
    unit_id: str | None = None
    source: Source
    location: Location | None = None
    title: str
    data: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


_INSERT = (
    "INSERT INTO events (time, kind, severity, unit_id, source_type, source_id, lat, lon, title, data)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
)
# The columns, in order, that ``from_row`` reads.
COLUMNS = "id, time, kind, severity, unit_id, source_type, source_id, lat, lon, title, data"


def _params(event: Event) -> tuple:
    loc = event.location
    return (
        event.time,
        event.kind,
        event.severity,
        event.unit_id,
        event.source.type,
        event.source.id,
        loc.lat if loc else None,
        loc.lon if loc else None,
        event.title,
        Jsonb(event.data),
    )


def insert_event(cur, event: Event) -> Event:
    """Store an event and return it with its id (inside the caller's transaction)."""
    return event.model_copy(update={"id": cur.execute(_INSERT, _params(event)).fetchone()[0]})


async def insert_event_async(conn, event: Event) -> Event:
    cur = await conn.execute(_INSERT, _params(event))
    return event.model_copy(update={"id": (await cur.fetchone())[0]})


def from_row(row: tuple) -> Event:
    """An event from a row of ``SELECT {COLUMNS} FROM events``."""
    id_, time, kind, severity, unit_id, source_type, source_id, lat, lon, title, data = row
    return Event(
        id=id_,
        time=time,
        kind=kind,
        severity=severity,
        unit_id=unit_id,
        source=Source(type=source_type, id=source_id),
        location=Location.of(lat, lon),
        title=title,
        data=data,
    )


def severity_at_least(minimum: str) -> list[str]:
    """The severities at or above ``minimum``, for SQL ``severity = ANY(...)``."""
    return list(SEVERITIES[SEVERITIES.index(minimum) :])
