"""Messages into batches: each message becomes a part (its readings, dead letters, new devices,
status changes and events), and a batch is a list of parts written together.

A batch keeps its parts apart so that one the database refuses can be narrowed down to the
messages that cause it (``ingest/pipeline.py``). A message that the parsing itself cannot handle
(a bug, or registry data that breaks it) becomes a dead letter with the error, never an exception
out of the worker.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ingest import metrics
from ingest.admission import Admission, Pending
from ingest.payloads import (
    CameraEvent,
    Limits,
    Parsed,
    Reading,
    Rejection,
    StatusChange,
    parse_camera_event,
    parse_gateway_message,
    parse_sensor_message,
    parse_status_message,
)
from ingest.registry import RegistryCache
from ingest.source import Received
from ioc_core import topics
from ioc_core.events import Event, Location, Source
from ioc_core.loops import record_failure
from ioc_core.settings import Settings

_MAX_REASONS = 10


@dataclass(slots=True)
class DeadLetter:
    received_at: datetime
    topic: str
    payload: bytes
    reason: str


@dataclass(slots=True)
class Part:
    """What one message brings to a batch."""

    received: Received
    readings: list[Reading] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    new_sensors: dict[str, str | None] = field(default_factory=dict)  # id -> the gateway it came through
    status_changes: list[StatusChange] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


class Batch:
    """Parts written in one transaction, with their contents side by side for the write."""

    __slots__ = ("_newest", "dead_letters", "events", "new_sensors", "parts", "readings", "status_changes")

    def __init__(self, parts: list[Part]):
        self.parts = parts
        self.readings: list[Reading] = []
        self.dead_letters: list[DeadLetter] = []
        self.new_sensors: dict[str, str | None] = {}
        self.status_changes: list[StatusChange] = []
        self.events: list[Event] = []
        for p in parts:
            self.readings += p.readings
            self.dead_letters += p.dead_letters
            self.new_sensors.update(p.new_sensors)
            self.status_changes += p.status_changes
            self.events += p.events
        self._newest: list[Reading] | None = None

    def newest(self) -> list[Reading]:
        """The newest reading of each sensor metric in the batch (the map's latest values and the
        live digest need no other)."""
        if self._newest is None:
            held: dict[tuple[str, str], Reading] = {}
            for r in self.readings:
                key = (r.sensor_id, r.metric)
                other = held.get(key)
                if other is None or other.time <= r.time:
                    held[key] = r
            self._newest = list(held.values())
        return self._newest

    def __len__(self) -> int:
        return len(self.readings) + len(self.dead_letters) + len(self.status_changes) + len(self.events)

    def halves(self) -> tuple["Batch", "Batch"]:
        middle = len(self.parts) // 2
        return Batch(self.parts[:middle]), Batch(self.parts[middle:])


def dead_letter(part: Part, payload: bytes, reasons: list[str], codes: list[str] | None = None) -> None:
    """The message (or the refused parts of it) as a dead letter, its reasons counted by code."""
    for code in codes or [reasons[0].split(":", 1)[0]]:
        metrics.DEAD_LETTERS.labels(code).inc()
    text = "; ".join(reasons[:_MAX_REASONS])
    if len(reasons) > _MAX_REASONS:
        text += f"; and {len(reasons) - _MAX_REASONS} more"
    item = part.received
    part.dead_letters.append(DeadLetter(item.at, item.message.topic, payload, text))


class Intake:
    """Turns received messages into parts, against the registry's current view; a device the
    registry does not hold is looked up first, so one registered since its last refresh is
    judged as itself (its ranges, unit and kind), not as a stranger."""

    def __init__(self, settings: Settings, registry: RegistryCache):
        self._settings = settings
        self._registry = registry
        self._admission = Admission(registry, settings)
        self._pending = Pending()
        self._limits = self._make_limits()

    def new_batch(self) -> None:
        """Start counting the new sensors of the next batch; take the registry as it is now."""
        self._pending = Pending()
        self._limits = self._make_limits()

    def _make_limits(self) -> Limits:
        return Limits(
            max_future=timedelta(seconds=self._settings.ingest_max_future_s),
            max_age=timedelta(days=self._settings.retention_days),
            ranges=self._registry.ranges,
        )

    def part(self, item: Received) -> Part:
        part = Part(item)
        try:
            self._parse(item, part)
        except Exception as exc:  # a bug, or registry data that breaks parsing: this message only
            record_failure("intake", exc)
            part = Part(item)
            reason = f"internal_error: {type(exc).__name__}: {exc}"[:500]
            dead_letter(part, item.message.payload, [reason], ["internal_error"])
        return part

    def _parse(self, item: Received, part: Part) -> None:
        msg = item.message
        topic, payload = msg.topic, msg.payload
        where = topics.route(topic)
        metrics.MESSAGES_BY_ROUTE[where.kind if where else "unknown"].inc()
        if where is None:
            dead_letter(part, payload, ["unknown_topic: no v1 route takes this topic"])
            return
        limit = self._settings.ingest_max_message_bytes
        if len(payload) > limit:
            dead_letter(part, payload[:limit], [f"oversized: {len(payload)} bytes, limit {limit}"])
            return
        if where.kind in ("status", "camera_event"):
            self._device_message(where.kind, where.device_id, item, part)
            return
        if where.kind == "gateway":
            parsed = parse_gateway_message(payload, item.at, self._limits)
            if self._registry.learn({r.sensor_id for r in parsed.readings}):
                parsed = parse_gateway_message(payload, item.at, self._limits)  # their ranges apply
            self._admission.hold_to_gateway(parsed, where.device_id)
            self._admission.admit(parsed, part.new_sensors, self._pending, where.device_id)
        else:
            if where.device_id not in self._registry.units:
                self._registry.learn((where.device_id,))
            parsed = parse_sensor_message(where.device_id, payload, item.at, self._limits)
            self._admission.admit(parsed, part.new_sensors, self._pending)
        part.readings = parsed.readings
        self._refused(parsed, part)

    @staticmethod
    def _refused(parsed: Parsed, part: Part) -> None:
        if parsed.rejections:
            reasons = [str(r) for r in parsed.rejections]
            dead_letter(part, part.received.message.payload, reasons, [r.code for r in parsed.rejections])

    def _device_message(self, kind: str, device_id: str, item: Received, part: Part) -> None:
        """A device's status (registry and a device event) or a camera event (an event)."""
        payload = item.message.payload
        if kind == "status":
            result = parse_status_message(device_id, payload, item.at)
        else:
            result = parse_camera_event(device_id, payload, item.at, self._limits)
        if not isinstance(result, Rejection):
            self._registry.learn((device_id,))
            refused = self._admission.admit_device(device_id, part.new_sensors, self._pending)
            result = refused or result
        if isinstance(result, Rejection):
            dead_letter(part, payload, [str(result)], [result.code])
        elif isinstance(result, CameraEvent):
            part.events.append(self._camera_event(result))
        else:
            part.status_changes.append(result)

    def _camera_event(self, e: CameraEvent) -> Event:
        lat_lon = self._registry.locations.get(e.camera_id)
        return Event(
            time=e.time,
            kind=f"camera.{e.event}",
            severity=e.severity,
            unit_id=self._registry.unit_of(e.camera_id),
            source=Source(type="camera", id=e.camera_id),
            location=Location(lat=lat_lon[0], lon=lat_lon[1]) if lat_lon else None,
            title=e.title,
            data=e.data,
        )
