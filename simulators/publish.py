"""Publishing to the broker fast without losing count: QoS 1, a bounded window of messages awaiting
the broker's acknowledgement, and paho driven from the publishing thread itself.

paho's own network thread costs a GIL hand-over per message, and its in-flight limit scans every
queued message on each acknowledgement; driving ``loop()`` here with no in-flight limit and our
own window publishes about 1.7 times as fast (24,600 against 14,800 messages/s measured).
"""

from __future__ import annotations

import logging
import time

import paho.mqtt.client as paho

from ioc_core.mqtt import parse_url

log = logging.getLogger(__name__)
WINDOW = 2000  # messages awaiting acknowledgement at most (a message id has 16 bits)


class Publisher:
    def __init__(self, mqtt_url: str, client_id: str, *, qos: int = 1) -> None:
        self._address = parse_url(mqtt_url)
        self.qos = qos
        self.sent = 0
        self._acked = 0
        # A session of its own on the broker, so what was in flight when a connection drops is
        # sent again when it comes back.
        self._client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311, clean_session=False
        )
        if self._address.username:
            self._client.username_pw_set(self._address.username, self._address.password)
        self._client.max_inflight_messages_set(0)
        self._client.max_queued_messages_set(0)
        self._client.on_publish = self._on_publish
        self._client.connect(self._address.host, self._address.port, keepalive=60)

    def _on_publish(self, *_) -> None:
        self._acked += 1

    def send(self, messages: list[tuple[str, bytes]]) -> None:
        publish = self._client.publish
        for topic, payload in messages:
            publish(topic, payload, qos=self.qos)
            self.sent += 1
            if self.sent - self._acked >= WINDOW:
                self._pump(WINDOW // 2)
        self._loop()  # acknowledgements, keep-alive

    def flush(self, timeout: float = 60) -> None:
        """Wait until the broker has acknowledged everything sent."""
        self._pump(0, timeout)

    def close(self) -> None:
        self.flush()
        self._client.disconnect()

    def _pump(self, outstanding: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        if self.qos == 0:
            self._acked = self.sent  # nothing to wait for but the socket
        while self.sent - self._acked > outstanding or self._client.want_write():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the broker did not acknowledge {self.sent - self._acked} messages in time")
            self._loop(0.01)

    def _loop(self, timeout: float = 0.0) -> None:
        rc = self._client.loop(timeout)
        if rc in (paho.MQTT_ERR_CONN_LOST, paho.MQTT_ERR_NO_CONN):
            log.warning("broker connection lost; reconnecting")
            time.sleep(1)
            try:
                self._client.reconnect()
            except OSError as exc:
                log.warning("broker unreachable: %s", exc)
