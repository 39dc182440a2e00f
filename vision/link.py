"""A camera's MQTT connection: its counts, its events and its status, with ``offline`` as its will.

One connection per camera, so that when a worker dies the broker marks each of its cameras
offline on its own, as it does for any device.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import paho.mqtt.client as paho

from ioc_core import topics
from ioc_core.mqtt import parse_url


class CameraLink:
    def __init__(self, mqtt_url: str, camera_id: str, worker_id: str) -> None:
        address = parse_url(mqtt_url)
        self.camera_id = camera_id
        self._status = topics.device_status(camera_id)
        self._client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=f"{worker_id}:{camera_id}", protocol=paho.MQTTv311
        )
        if address.username:
            self._client.username_pw_set(address.username, address.password)
        self._client.will_set(self._status, b"offline", qos=1, retain=True)
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._client.connect_async(address.host, address.port, keepalive=30)
        self._client.loop_start()

    def counts(self, ts: datetime, values: dict[str, float]) -> None:
        self._publish(topics.camera_counts(self.camera_id), {"ts": ts.isoformat(), "values": values})

    def event(self, ts: datetime, event: str, severity: str, title: str, data: dict[str, Any]) -> None:
        payload = {"ts": ts.isoformat(), "event": event, "severity": severity, "title": title, "data": data}
        self._publish(topics.camera_events(self.camera_id), payload)

    def status(self, online: bool, health: dict[str, Any]) -> None:
        self._publish(self._status, {"status": "online" if online else "offline", **health}, retain=True)

    def close(self) -> None:
        """Say offline (the stop is deliberate), then wait until what was queued has left."""
        self._client.publish(self._status, b"offline", qos=1, retain=True).wait_for_publish(timeout=5)
        self._client.disconnect()
        self._client.loop_stop()

    def _publish(self, topic: str, payload: dict[str, Any], *, retain: bool = False) -> None:
        # QoS 1 and paho's own queue: a broker away for a while loses nothing that was published.
        self._client.publish(topic, orjson.dumps(payload), qos=1, retain=retain)
