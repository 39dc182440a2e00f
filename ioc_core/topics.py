"""MQTT topic names of protocol v1 (DESIGN.md), built and parsed in one place.

Every service builds the topics it publishes on with these functions and reads the topics it
receives with ``route`` (ingest's inputs) and ``live_of`` (the API's). The broker's ACL
(``ops/mosquitto/acl``) names the same trees.
"""

import re
from dataclasses import dataclass

PREFIX = "ioc/v1"
# PostgreSQL's NOTIFY channels: new latest values (ingest, at commit), subscriptions changed (the API).
VALUES_STORED = "ioc_values_stored"
SUBSCRIPTIONS_CHANGED = "ioc_ngsild_subscriptions"

SENSOR_READINGS = f"{PREFIX}/sensors/+/readings"
GATEWAY_READINGS = f"{PREFIX}/gateways/+/readings"
CAMERA_COUNTS = f"{PREFIX}/cameras/+/counts"
CAMERA_EVENTS = f"{PREFIX}/cameras/+/events"
DEVICE_STATUS = f"{PREFIX}/devices/+/status"
LIVE_ALL = f"{PREFIX}/live/#"
ALL_READINGS = f"{PREFIX}/+/+/readings"
# What ingest subscribes to: whole subtrees, so that a wrong topic under them becomes a dead
# letter instead of vanishing.
INPUT_TREES = ("sensors", "gateways", "cameras", "devices")
INGEST_SUBSCRIPTIONS = tuple(f"{PREFIX}/{tree}/#" for tree in INPUT_TREES)

INGEST_SHARE_GROUP = "ingest"
DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def sensor_readings(sensor_id: str) -> str:
    return f"{PREFIX}/sensors/{sensor_id}/readings"


def gateway_readings(gateway_id: str) -> str:
    return f"{PREFIX}/gateways/{gateway_id}/readings"


def camera_counts(camera_id: str) -> str:
    return f"{PREFIX}/cameras/{camera_id}/counts"


def camera_events(camera_id: str) -> str:
    return f"{PREFIX}/cameras/{camera_id}/events"


def device_status(device_id: str) -> str:
    return f"{PREFIX}/devices/{device_id}/status"


def live(unit_id: str, kind: str) -> str:
    """Stored events (kind = event kind) and value digests (kind = ``values``) of one unit."""
    return f"{PREFIX}/live/{unit_id}/{kind}"


def shared(topic: str, group: str = INGEST_SHARE_GROUP) -> str:
    """A shared subscription: the group's members split the messages between them."""
    return f"$share/{group}/{topic}"


def split(topic: str) -> list[str]:
    """Levels after the ``ioc/v1`` prefix, or an empty list for a foreign topic."""
    parts = topic.split("/")
    return parts[2:] if parts[:2] == PREFIX.split("/") else []


@dataclass(frozen=True, slots=True)
class Route:
    """What a topic carries: ``kind`` is readings, gateway, counts, camera_event or status."""

    kind: str
    device_id: str


_ROUTES = {
    ("sensors", "readings"): "readings",
    ("gateways", "readings"): "gateway",
    ("cameras", "counts"): "counts",
    ("cameras", "events"): "camera_event",
    ("devices", "status"): "status",
}


def route(topic: str) -> Route | None:
    """The route of an input topic, or None for a topic no v1 route takes."""
    levels = split(topic)
    if len(levels) != 3 or not DEVICE_ID.fullmatch(levels[1]):
        return None
    kind = _ROUTES.get((levels[0], levels[2]))
    return Route(kind, levels[1]) if kind else None


def live_of(topic: str) -> tuple[str, str] | None:
    """``(unit_id, kind)`` of a live topic, or None. An event kind's dots may come as levels
    (``alert/opened``): RabbitMQ's MQTT plugin writes every dot of a routing key as ``/``."""
    levels = split(topic)
    if len(levels) < 3 or levels[0] != "live":
        return None
    return levels[1], ".".join(levels[2:])


def from_routing_key(key: str) -> str:
    """The MQTT topic of a RabbitMQ routing key (cluster mode). The broker writes a topic's ``/``
    as ``.`` and keeps its dots, so a device id's dots are told apart by place: an input topic has
    three levels after the prefix, and whatever stands between the tree and the last is the id.
    ``+`` is written ``*`` (a subscription's filter)."""
    parts = key.replace("*", "+").split(".")
    if len(parts) >= 5 and parts[2] in INPUT_TREES:
        return "/".join([*parts[:3], ".".join(parts[3:-1]), parts[-1]])
    return "/".join(parts)


def to_routing_key(topic: str) -> str:
    return topic.replace("/", ".").replace("+", "*")
