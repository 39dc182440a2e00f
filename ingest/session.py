"""Ingest's broker session: its subscriptions, a bounded inbox, and acknowledgements after commit.

paho's network thread only hands messages over. The inbox holds at most
``IOC_INGEST_INBOX_MESSAGES``: when it is full the network thread waits for room, so it stops
reading from the socket and the broker keeps the backlog (in the session it persists), not this
process. (Mosquitto's own in-flight window does not bound it: it has been seen to send far past
it.) Each connection is a generation: a message id is valid only on the connection that
delivered it, so acknowledgements skip messages of an earlier one, which the broker sends again.
"""

import contextlib
import logging
import queue
import socket
import struct
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import paho.mqtt.client as paho

from ingest import metrics
from ingest.source import Received
from ioc_core import topics
from ioc_core.mqtt import make_client
from ioc_core.settings import Settings

log = logging.getLogger(__name__)

_PUBACK = struct.Struct("!BBH")  # MQTT 3.1.1: PUBACK, remaining length 2, the message id
_U16 = struct.Struct("!H")
_READ_BYTES = 64 * 1024
# A read that brings less than this is a thin stream: waiting this long before the next one lets a
# few messages gather, a wake-up of this thread for several rather than for each.
_THIN_READ_BYTES = 4 * 1024
_THIN_READ_PAUSE_S = 0.002


@dataclass(slots=True)
class Published:
    """A PUBLISH as ingest reads it: what the pipeline uses, and nothing else."""

    topic: str
    payload: bytes
    qos: int
    mid: int


class IngestClient(paho.Client):
    """paho's client with four shortcuts on ingest's hot path (profiled: ``docs/benchmarks.md``).

    - Reads are buffered: paho asks the socket for a packet's first byte, its length and its body
      in three calls; here one ``recv`` of up to 64 KiB serves all the packets it brings.
    - A QoS 0 or 1 PUBLISH (MQTT 3.1.1) is decoded here into a ``Published``: paho's own message
      object makes a lock and a condition for each message received, a fifth of the receive path.
    - It goes straight to ``on_message``: ingest adds no per-topic callbacks, so paho's topic
      matcher and its two locks per message do nothing for it.
    - ``ack_many``: a batch's PUBACKs written as one packet of consecutive frames, one queue entry
      and one wake-up of the network thread instead of one per message.
    Everything else (connecting, keepalive, QoS 2, MQTT 5, publishing) is paho's.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._read, self._read_at, self._read_from = b"", 0, None  # received, not yet handed to paho

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._read_from is not self._sock:  # a new connection: nothing of the old one is valid
            self._read, self._read_at, self._read_from = b"", 0, self._sock
        if self._read_at >= len(self._read):
            data = super()._sock_recv(_READ_BYTES)  # BlockingIOError when there is nothing yet
            if not data:
                return data  # closed
            self._read, self._read_at = data, 0
        start = self._read_at
        self._read_at = min(start + bufsize, len(self._read))
        return self._read[start : self._read_at]

    def loop_read(self, max_packets: int = 1) -> paho.MQTTErrorCode:
        """paho's, and then the packets already read: select() would not tell of them."""
        rc = super().loop_read(max_packets)
        while rc == paho.MQTTErrorCode.MQTT_ERR_SUCCESS and self._sock is not None and self._read_at < len(self._read):
            rc = super().loop_read(1)
        if len(self._read) < _THIN_READ_BYTES:
            time.sleep(_THIN_READ_PAUSE_S)  # a thin stream: let a few messages gather for the next read
        return rc

    def _handle_publish(self) -> paho.MQTTErrorCode:
        command, packet = self._in_packet["command"], self._in_packet["packet"]
        qos = (command & 0x06) >> 1
        if self._protocol != paho.MQTTv311 or qos == 2:
            return super()._handle_publish()
        (length,) = _U16.unpack_from(packet, 0)
        topic = bytes(packet[2 : 2 + length]).decode("utf-8", "replace")  # not UTF-8: an unknown topic
        mid, start = (_U16.unpack_from(packet, 2 + length)[0], 4 + length) if qos else (0, 2 + length)
        self._handle_on_message(Published(topic, bytes(packet[start:]), qos, mid))
        if qos and not self._manual_ack:
            return self._send_puback(mid)
        return paho.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_on_message(self, message) -> None:
        try:
            self.on_message(self, self._userdata, message)
        except Exception:  # logged, and the connection goes on (paho would end its loop)
            log.exception("on_message failed", extra={"topic": message.topic})

    def ack_many(self, mids: list[int]) -> None:
        if mids:
            packet = b"".join([_PUBACK.pack(paho.PUBACK, 2, mid) for mid in mids])
            self._packet_queue(paho.PUBACK, packet, 0, 0)


class BrokerSession:
    def __init__(self, settings: Settings, client_id: str, stopping: threading.Event):
        self._settings = settings
        self.client_id = client_id
        self._stopping = stopping
        self.connected = threading.Event()
        # A SimpleQueue (C, no lock of Python's own per put and get), bounded here by _on_message.
        self.inbox: queue.SimpleQueue[Received] = queue.SimpleQueue()
        self._inbox_max = settings.ingest_inbox_messages
        self._generation = 0
        self.last_received = time.monotonic()
        self._leaving = False
        self.client, self.address = make_client(
            settings.mqtt_url, client_id, manual_ack=True, client_class=IngestClient
        )
        # What ingest publishes (stored events) waits here while the network thread is held by a
        # full inbox: bounded, and many in flight at once, so that an alert storm during a backlog
        # cannot grow this process. Past the bound an event is not published: screens get it from
        # the database (each API node's look, ioc_api/feed.py), as when the broker is away.
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(settings.ingest_publish_queue)
        # One worker subscribes plainly: Mosquitto 2.0 keeps a persistent session's plain
        # subscriptions through its own restart, but forgets shared ones until the worker is back.
        shared, plain = [topics.shared(t) for t in topics.INGEST_SUBSCRIPTIONS], list(topics.INGEST_SUBSCRIPTIONS)
        self._topics, self._other_topics = (shared, plain) if settings.ingest_workers > 1 else (plain, shared)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def describe(self) -> str:
        return f"mqtt://{self.address.host}:{self.address.port}"

    def start(self) -> None:
        self.client.connect_async(self.address.host, self.address.port, keepalive=30)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # --- paho's network thread: hand over, nothing more

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection", extra={"reason": str(reason_code)})
            return
        self._generation += 1
        if self._leaving:
            return
        client.subscribe([(t, 1) for t in self._topics])
        client.unsubscribe(self._other_topics)  # the other form, if the session had it from before
        log.info("connected to broker", extra={"session_present": flags.session_present})

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            log.error("broker refused a subscription", extra={"reasons": [str(rc) for rc in reason_codes]})
            return
        self.connected.set()
        metrics.BROKER_UP.set(1)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        metrics.BROKER_UP.set(0)
        if not self._stopping.is_set():
            log.warning("disconnected from broker", extra={"reason": str(reason_code)})

    def _on_message(self, client, userdata, message: Published) -> None:
        self.last_received = time.monotonic()
        if self.inbox.qsize() >= self._inbox_max and not self._wait_for_room():
            return  # stopping: unacknowledged, the broker sends it again
        self.inbox.put(Received(self._generation, message, datetime.now(UTC)))

    def _wait_for_room(self) -> bool:
        """Reading stops here while the inbox is full: the broker keeps the rest. False when the
        worker stops meanwhile."""
        metrics.INBOX_FULL.inc()
        started = time.monotonic()
        while self.inbox.qsize() >= self._inbox_max:
            if self._stopping.wait(0.002):
                return False
        metrics.INBOX_WAIT_SECONDS.inc(time.monotonic() - started)
        return True

    # --- the main thread

    def next(self, timeout: float) -> Received:
        """The next message to store. One that an earlier connection delivered at QoS 1 is dropped
        unread: its id is void, and the broker sends it again on this connection (the session is
        persistent), so storing it now would only do the work twice; behind a slow database every
        reconnection would otherwise add its whole in-flight window again. A QoS 0 message is kept:
        nothing would send it again."""
        while True:
            item = self.inbox.get(timeout=timeout) if timeout > 0 else self.inbox.get_nowait()
            if item.generation == self._generation or item.message.qos == 0:
                return item
            metrics.STALE.inc()

    def backlog(self) -> int:
        return self.inbox.qsize()

    def acknowledge(self, received: list[Received]) -> None:
        """Acknowledge in arrival order, in one write; ids of an earlier connection are left for
        redelivery. (Ingest subscribes at QoS 1: a QoS 2 message arrives as QoS 1.)"""
        generation = self._generation
        self.client.ack_many([i.message.mid for i in received if i.generation == generation and i.message.qos > 0])

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        if self.client.publish(topic, payload, qos=qos).rc == paho.MQTT_ERR_QUEUE_SIZE:
            metrics.UNPUBLISHED.inc()

    def redeliver(self) -> None:
        """Drop the connection as if it were lost: paho makes a new one, and the broker sends again
        what it delivered and was never acknowledged."""
        sock = self.client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # --- retiring a worker

    def leave(self) -> bool:
        """Unsubscribe this worker's share (it will not come back); True once the broker confirmed."""
        self._leaving = True
        unsubscribed = threading.Event()
        self.client.on_unsubscribe = lambda *args: unsubscribed.set()
        self.client.unsubscribe(self._topics)
        return unsubscribed.wait(10)

    def end(self) -> None:
        """End the persistent session: connect once with a clean session."""
        client, _ = make_client(self._settings.mqtt_url, self.client_id, clean_session=True)
        client.connect(self.address.host, self.address.port)
        client.loop_start()
        deadline = time.monotonic() + 5
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        client.disconnect()
        client.loop_stop()
