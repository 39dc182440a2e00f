"""Request and response models of the REST API, with the examples shown in the OpenAPI."""

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from ioc_core.camera_config import CameraAnalytics
from ioc_core.events import Event

DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
METRIC_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"

T = TypeVar("T")


def _refuse_null(value: Any, info: ValidationInfo) -> Any:
    if value is None:
        raise PydanticCustomError(
            "null_not_allowed", "{field} cannot be null: leave it out to keep its value", {"field": info.field_name}
        )
    return value


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # None stands for "left out", which the schema says by not requiring it


# A field of a PATCH body that the database cannot hold as NULL: left out, the value stays; an
# explicit null is a 422 that names the field (not a NOT NULL violation, a 500). Fields where null
# means something (no name, no gateway, every unit) stay ``X | None``.
NotNull = Annotated[T | SkipJsonSchema[None], BeforeValidator(_refuse_null), Field(json_schema_extra=_no_default)]


class Login(BaseModel):
    username: str = Field(max_length=200, examples=["hai-chau-room"])
    password: str = Field(max_length=1024, examples=["correct horse battery staple"])  # hashing is costly


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds.")
    role: str
    units: list[str] | None = Field(description="The units this token may see; null: every unit.")


class TokenInfo(BaseModel):
    id: int
    username: str
    kind: Literal["session", "service"]
    name: str | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class AuditEntry(BaseModel):
    id: int
    time: datetime
    actor: str = Field(description="Who: a username, `cli:<system user>`, or `address:<ip>` for a lockout.")
    action: str = Field(examples=["alert.acknowledged", "rule.update", "token.revoke"])
    target: str | None
    details: dict


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next: int | None = Field(description="Pass as `before` for the next (older) page; null: no more.")


class MetricSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit: str | None = Field(None, examples=["µg/m³"])
    min: float | None = Field(None, description="Readings below are refused by ingest.")
    max: float | None = Field(None, description="Readings above are refused by ingest.")


class SensorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=DEVICE_ID_PATTERN, examples=["aq-hai-chau-01"])
    kind: str = Field(examples=["air_quality"], max_length=64)
    name: str | None = Field(None, examples=["Air quality, Hải Châu market"], max_length=200)
    lat: float | None = Field(None, ge=-90, le=90, examples=[16.0678])
    lon: float | None = Field(None, ge=-180, le=180, examples=[108.2208])
    unit_id: str | None = Field(None, description="Omit to take the unit that holds (lat, lon).")
    metrics: dict[str, MetricSpec] = Field(
        default_factory=dict, examples=[{"pm25": {"unit": "µg/m³", "min": 0, "max": 1000}}]
    )
    interval_s: float | None = Field(
        None, gt=0, examples=[60], description="Expected reporting interval: no-data rules wait a multiple of it."
    )
    gateway_id: str | None = Field(
        None,
        pattern=DEVICE_ID_PATTERN,
        examples=["lora-gw-son-tra"],
        description="The gateway that reports for it: only that gateway's messages may carry its readings.",
    )


class SensorPatch(BaseModel):
    """The fields to change. null clears a name, a position, an interval or a gateway; a null
    ``unit_id`` takes the unit that holds the sensor's position."""

    model_config = ConfigDict(extra="forbid")
    kind: NotNull[str] = Field(None, max_length=64)
    name: str | None = Field(None, max_length=200)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    unit_id: str | None = None
    metrics: NotNull[dict[str, MetricSpec]] = Field(None, description="Replaces every metric; {} for none.")
    interval_s: float | None = Field(None, gt=0)
    gateway_id: str | None = Field(None, pattern=DEVICE_ID_PATTERN)


class Sensor(BaseModel):
    id: str
    kind: str
    name: str | None
    unit_id: str | None
    lat: float | None
    lon: float | None
    metrics: dict[str, Any]
    interval_s: float | None = None
    gateway_id: str | None = None
    registered: bool = Field(description="false: seen on the bus, not yet registered by an engineer.")
    status: str
    last_seen: datetime | None


class CameraIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=DEVICE_ID_PATTERN, examples=["cam-rong-bridge-01"])
    name: str | None = Field(None, max_length=200, examples=["Rồng bridge, east end"])
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    unit_id: str | None = None
    stream_url: str | None = Field(None, max_length=2000, examples=["rtsp://10.0.0.5/stream1"])
    analytics: CameraAnalytics = Field(
        default_factory=CameraAnalytics,
        description="Classes, analysis rate, lines and zones (normalized coordinates) for the vision worker.",
        examples=[
            {"lines": [{"name": "northbound", "points": [[0.1, 0.6], [0.9, 0.6]]}], "classes": ["car", "motorcycle"]}
        ],
    )


class CameraPatch(BaseModel):
    """The fields to change. null clears a name, a position or a stream; a null ``unit_id`` takes
    the unit that holds the camera's position."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=200)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    unit_id: str | None = None
    stream_url: str | None = Field(None, max_length=2000)
    analytics: NotNull[CameraAnalytics] = Field(None, description="Replaces the analytics; {} for the defaults.")


class Camera(BaseModel):
    id: str
    name: str | None
    unit_id: str | None
    lat: float | None
    lon: float | None
    stream_url: str | None
    analytics: dict[str, Any]
    status: str
    last_seen: datetime | None
    counts: dict[str, float] = Field(default_factory=dict, description="The latest counts the vision worker sent.")


class Bucket(BaseModel):
    time: datetime
    avg: float
    min: float
    max: float
    last: float | None
    count: int


class Series(BaseModel):
    sensor_id: str | None = None
    unit_id: str | None = None
    metric: str
    bucket_seconds: int
    source: Literal["readings", "readings_1m", "readings_1h"] = Field(description="The table that answered.")
    buckets: list[Bucket]


class EventPage(BaseModel):
    events: list[Event]
    next: int | None = Field(description="Pass as the cursor to get the following page; null at the end.")


class Comment(BaseModel):
    id: int
    author: str
    body: str
    created_at: datetime


class Alert(BaseModel):
    id: int
    rule_id: int | None
    unit_id: str | None
    source_type: str
    source_id: str
    metric: str | None
    severity: str
    state: Literal["open", "acknowledged", "resolved"]
    title: str
    lat: float | None
    lon: float | None
    opened_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None = Field(description="A username, or 'auto' when the condition cleared.")
    escalation_level: int = Field(description="0; 1 and 2 after each unacknowledged deadline (to city level).")
    escalated_at: datetime | None = None
    last_value: float | None
    peak_value: float | None
    count: int = Field(description="How many readings or camera events have repeated the condition.")
    data: dict[str, Any] = Field(default_factory=dict, description="The rule's condition and reference.")
    exercise: bool = Field(False, description="Caused by a drill's devices.")
    incident_id: int | None = Field(None, description="The incident it belongs to, once grouped.")
    comments: list[Comment] = Field(default_factory=list)


class AlertAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str | None = Field(None, max_length=2000, examples=["Team sent to the pumping station."])


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str = Field(min_length=1, max_length=2000)


class DeadLetter(BaseModel):
    id: int
    received_at: datetime
    topic: str
    reason: str
    payload_size: int
    payload_text: str = Field(description="The first 4 KiB, decoded as UTF-8 with replacements.")
