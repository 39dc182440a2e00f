"""Publishing to the broker fast without losing count: QoS 1, in windows, waiting for the broker's
acknowledgements before the 16-bit message ids could wrap."""

from __future__ import annotations

from collections import deque

import paho.mqtt.client as paho

from ioc_core.mqtt import parse_url

WINDOW = 20_000  # messages in flight at most; a message id has 16 bits


class Publisher:
    def __init__(self, mqtt_url: str, client_id: str = "", *, qos: int = 1) -> None:
        address = parse_url(mqtt_url)
        self.qos = qos
        self.sent = 0
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
        if address.username:
            self._client.username_pw_set(address.username, address.password)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.connect(address.host, address.port, keepalive=60)
        self._client.loop_start()
        self._pending: deque[paho.MQTTMessageInfo] = deque()

    def send(self, messages: list[tuple[str, bytes]]) -> None:
        for topic, payload in messages:
            self._pending.append(self._client.publish(topic, payload, qos=self.qos))
            if len(self._pending) >= WINDOW:
                self._settle(WINDOW // 2)
        self.sent += len(messages)

    def flush(self, timeout: float = 60) -> None:
        """Wait until the broker has acknowledged everything sent."""
        self._settle(0, timeout)

    def close(self) -> None:
        self.flush()
        self._client.disconnect()
        self._client.loop_stop()

    def _settle(self, keep: int, timeout: float = 60) -> None:
        while len(self._pending) > keep:
            info = self._pending.popleft()
            info.wait_for_publish(timeout)
            if not info.is_published():
                raise TimeoutError("the broker did not acknowledge a message in time")
