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


def insert_event(cur, event: Event) -> Event:
    """Store an event in ``events`` and return it with its id (inside the caller's transaction)."""
    loc = event.location
    row = cur.execute(
        "INSERT INTO events (time, kind, severity, unit_id, source_type, source_id, lat, lon, title, data)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
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
        ),
    ).fetchone()
    return event.model_copy(update={"id": row[0]})
