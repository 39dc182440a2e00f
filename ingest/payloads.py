"""Turning MQTT messages into readings, each rejected part with a reason.

Pure functions, no I/O: a message becomes the readings it holds plus the reasons for every part
that was refused, so that the valid readings of a partly bad batch are still stored.
"""

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson

from ioc_core.topics import DEVICE_ID

METRIC_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class Reading:
    time: datetime
    sensor_id: str
    metric: str
    value: float


@dataclass(slots=True)
class Rejection:
    code: str  # a short label, used for metrics: malformed_json, not_finite, ...
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


@dataclass(slots=True)
class Parsed:
    readings: list[Reading] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Limits:
    """What a reading must respect; ranges come from the registry: {sensor: {metric: (lo, hi)}}."""

    max_future: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=90)
    ranges: dict[str, dict[str, tuple[float | None, float | None]]] = field(default_factory=dict)


def _storable(obj: Any) -> bool:
    """PostgreSQL's text and jsonb cannot hold NUL: a string with one would fail the whole batch."""
    if isinstance(obj, str):
        return "\x00" not in obj
    if isinstance(obj, dict):
        return all(_storable(k) and _storable(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(_storable(v) for v in obj)
    return True


def parse_time(raw: Any, received: datetime) -> datetime:
    """RFC 3339 text or epoch milliseconds; absent means the time of receipt."""
    if type(raw) is str:  # the usual case first
        try:
            ts = datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"timestamp {raw[:64]!r} is not RFC 3339") from None
        if ts.tzinfo is None:
            raise ValueError(f"timestamp {raw[:64]!r} has no UTC offset")
        return ts
    if raw is None:
        return received
    if isinstance(raw, bool):
        raise ValueError(f"timestamp must be RFC 3339 text or epoch milliseconds, not {raw!r}")
    if isinstance(raw, int | float):
        if not math.isfinite(raw):
            raise ValueError("timestamp is not finite")
        return _EPOCH + timedelta(milliseconds=raw)
    raise ValueError(f"timestamp must be RFC 3339 text or epoch milliseconds, not {type(raw).__name__}")


@lru_cache(maxsize=65536)
def _valid_device_id(value: str) -> bool:
    """Cached: a city's few thousand ids are checked once each, not once a reading."""
    return DEVICE_ID.fullmatch(value) is not None


@lru_cache(maxsize=4096)
def _valid_metric(name: str) -> bool:
    return METRIC_NAME.fullmatch(name) is not None


class _Reader:
    """One message's readings: its time window and ranges worked out once, not once a reading."""

    __slots__ = ("latest", "limits", "oldest", "out", "received")

    def __init__(self, received: datetime, limits: Limits, out: Parsed):
        self.received, self.limits, self.out = received, limits, out
        self.latest, self.oldest = received + limits.max_future, received - limits.max_age

    def read(self, sensor_id: Any, obj: Any, at: int | None) -> None:
        """``at``: the item's index in an array, None for a lone object."""
        refuse = self.out.rejections.append
        if type(obj) is not dict:
            refuse(Rejection("wrong_type", f"{_where(at)}: expected an object, got {type(obj).__name__}"))
            return
        if type(sensor_id) is not str or not _valid_device_id(sensor_id):
            refuse(Rejection("bad_sensor_id", f"{_where(at)}: sensor_id {sensor_id!r} is not valid"))
            return
        try:
            ts = parse_time(obj.get("ts"), self.received)
        except (ValueError, OverflowError) as exc:
            refuse(Rejection("bad_timestamp", f"{_where(at)}: {exc}"))
            return
        if ts > self.latest:
            refuse(
                Rejection(
                    "future_timestamp", f"{_where(at)}: {ts.isoformat()} is more than {self.limits.max_future} ahead"
                )
            )
            return
        if ts < self.oldest:
            refuse(
                Rejection(
                    "too_old", f"{_where(at)}: {ts.isoformat()} is older than the retention of {self.limits.max_age}"
                )
            )
            return
        values = obj.get("values")
        if type(values) is not dict or not values:
            refuse(Rejection("missing_values", f"{_where(at)}: 'values' must be a non-empty object"))
            return
        ranges = self.limits.ranges.get(sensor_id)
        readings = self.out.readings
        for metric, value in values.items():
            if not _valid_metric(metric):
                refuse(Rejection("bad_metric_name", f"{_where(at)}: metric {metric[:64]!r} is not an identifier"))
            elif type(value) is not float and type(value) is not int:  # bool is not a number here
                refuse(Rejection("wrong_type", f"{_where(at)}: {metric} is {type(value).__name__}, not a number"))
            elif not math.isfinite(value):
                refuse(Rejection("not_finite", f"{_where(at)}: {metric} is {value}"))
            else:
                lo, hi = ranges.get(metric, _UNBOUNDED) if ranges else _UNBOUNDED
                if (lo is not None and value < lo) or (hi is not None and value > hi):
                    refuse(Rejection("out_of_range", f"{_where(at)}: {metric}={value} outside [{lo}, {hi}]"))
                else:
                    readings.append(Reading(ts, sensor_id, metric, float(value)))


_UNBOUNDED = (None, None)


def _where(at: int | None) -> str:
    """Where in the message a refused part is, written only when one is refused."""
    return "message" if at is None else f"[{at}]"


def _loads(payload: bytes, out: Parsed) -> Any:
    try:
        # orjson refuses NaN and Infinity literals, which is what we want: they are not JSON.
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        out.rejections.append(Rejection("malformed_json", str(exc)[:200]))
        return None


def parse_sensor_message(sensor_id: str, payload: bytes, received: datetime, limits: Limits) -> Parsed:
    """``ioc/v1/sensors/{id}/readings`` (and camera counts): one object or an array of them."""
    out = Parsed()
    doc = _loads(payload, out)
    if out.rejections:
        return out
    reader = _Reader(received, limits, out)
    if isinstance(doc, list):
        for i, item in enumerate(doc):
            reader.read(sensor_id, item, i)
    else:
        reader.read(sensor_id, doc, None)
    return out


def parse_gateway_message(payload: bytes, received: datetime, limits: Limits) -> Parsed:
    """``ioc/v1/gateways/{id}/readings``: an array of objects that each name their sensor."""
    out = Parsed()
    doc = _loads(payload, out)
    if out.rejections:
        return out
    reader = _Reader(received, limits, out)
    for i, item in enumerate(doc if isinstance(doc, list) else [doc]):
        reader.read(item.get("sensor_id") if type(item) is dict else None, item, i)
    return out


@dataclass(slots=True)
class StatusChange:
    device_id: str
    status: str  # online | offline
    time: datetime
    health: dict[str, Any]


def parse_status_message(device_id: str, payload: bytes, received: datetime) -> StatusChange | Rejection:
    """``online`` / ``offline`` as plain text (a last will), or JSON ``{"status": ..., ...health}``."""
    text = payload.strip()
    if text in (b"online", b"offline"):
        return StatusChange(device_id, text.decode(), received, {})
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return Rejection("bad_status", f"expected 'online', 'offline' or a JSON object, got {payload[:64]!r}")
    if not isinstance(doc, dict) or doc.get("status") not in ("online", "offline"):
        return Rejection("bad_status", "a status object needs 'status': 'online' or 'offline'")
    if not _storable(doc):
        return Rejection("bad_status", "a text holds a NUL character, which cannot be stored")
    return StatusChange(device_id, doc["status"], received, {k: v for k, v in doc.items() if k != "status"})


@dataclass(slots=True)
class CameraEvent:
    camera_id: str
    time: datetime
    event: str  # congestion, stopped_vehicle, crowding, intrusion ...
    severity: str
    title: str
    data: dict[str, Any]


_SEVERITIES = ("info", "minor", "major", "critical")


def parse_camera_event(camera_id: str, payload: bytes, received: datetime, limits: Limits) -> CameraEvent | Rejection:
    """``ioc/v1/cameras/{id}/events``: ``{"ts", "event", "severity", "title", "data": {...}}``."""
    out = Parsed()
    doc = _loads(payload, out)
    if out.rejections:
        return out.rejections[0]
    if not isinstance(doc, dict):
        return Rejection("wrong_type", f"expected an object, got {type(doc).__name__}")
    event, severity = doc.get("event"), doc.get("severity", "minor")
    if not isinstance(event, str) or not METRIC_NAME.fullmatch(event):
        return Rejection("bad_event", f"'event' {event!r} is not an identifier")
    if severity not in _SEVERITIES:
        return Rejection("bad_event", f"'severity' {severity!r} is not one of {', '.join(_SEVERITIES)}")
    data = doc.get("data", {})
    if not isinstance(data, dict):
        return Rejection("wrong_type", "'data' must be an object")
    if not _storable(doc):
        return Rejection("bad_event", "a text holds a NUL character, which cannot be stored")
    try:
        ts = parse_time(doc.get("ts"), received)
    except (ValueError, OverflowError) as exc:
        return Rejection("bad_timestamp", str(exc))
    if ts > received + limits.max_future:
        return Rejection("future_timestamp", f"{ts.isoformat()} is more than {limits.max_future} ahead")
    title = doc.get("title") if isinstance(doc.get("title"), str) else event.replace("_", " ")
    return CameraEvent(camera_id, ts, event, severity, title[:200], data)
