"""MQTT topic names of protocol v1 (DESIGN.md), in one place."""

PREFIX = "ioc/v1"

SENSOR_READINGS = f"{PREFIX}/sensors/+/readings"
GATEWAY_READINGS = f"{PREFIX}/gateways/+/readings"
CAMERA_COUNTS = f"{PREFIX}/cameras/+/counts"
CAMERA_EVENTS = f"{PREFIX}/cameras/+/events"
DEVICE_STATUS = f"{PREFIX}/devices/+/status"
LIVE_ALL = f"{PREFIX}/live/#"

INGEST_SHARE_GROUP = "ingest"


def sensor_readings(sensor_id: str) -> str:
    return f"{PREFIX}/sensors/{sensor_id}/readings"


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
