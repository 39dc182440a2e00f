"""Cluster mode's source: RabbitMQ's quorum queues, read over AMQP as competing consumers.

Devices publish over MQTT to any node of the cluster; RabbitMQ routes each message from
``amq.topic`` through a consistent-hash exchange into one of ``IOC_AMQP_QUEUES`` durable,
replicated (quorum) queues, by its topic, so one device's messages keep to one queue and the
queues' leaders spread over the nodes. Every worker consumes every queue; a message is
acknowledged only after its batch is committed (one ``basic_ack`` with ``multiple`` per batch), so
a worker, a broker node or the database may die at any time: what was not acknowledged is
delivered again, and the unique index stores it once.

pika's connection belongs to one thread: that thread reads, and everything the main thread asks of
it (acknowledge, publish, drop the connection) is passed to it with ``add_callback_threadsafe``.
Like the MQTT session, each connection is a generation: delivery tags are valid only on theirs.
"""

import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import pika
import pika.exceptions

from ingest import metrics
from ingest.source import Received
from ioc_core import topics
from ioc_core.mqtt import parse_url
from ioc_core.settings import Settings

log = logging.getLogger(__name__)
logging.getLogger("pika").setLevel(logging.WARNING)  # a line per connection step otherwise

EXCHANGE = "ioc.ingest"  # consistent-hash: a topic always lands in the same queue
QUEUE_PREFIX = "ioc.ingest."


def queue_names(count: int) -> list[str]:
    return [f"{QUEUE_PREFIX}{i}" for i in range(1, count + 1)]


def declare(channel, queues: int) -> None:
    """The exchange, its bindings from ``amq.topic`` and the quorum queues: idempotent."""
    channel.exchange_declare(EXCHANGE, exchange_type="x-consistent-hash", durable=True)
    for tree in topics.INGEST_SUBSCRIPTIONS:
        channel.exchange_bind(destination=EXCHANGE, source="amq.topic", routing_key=topics.to_routing_key(tree))
    for name in queue_names(queues):
        channel.queue_declare(
            name, durable=True, arguments={"x-queue-type": "quorum", "x-queue-leader-locator": "balanced"}
        )
        channel.queue_bind(name, EXCHANGE, routing_key="1")  # equal weights


def connection_parameters(settings: Settings, worker: int) -> list[pika.ConnectionParameters]:
    """Every node of the cluster, tried in turn, worker N's list starting with node N (so workers
    spread over the nodes); the account is the service's broker account."""
    account = parse_url(settings.mqtt_url)
    credentials = pika.PlainCredentials(account.username or "", account.password or "")
    hosts = settings.amqp_hosts
    first = (worker - 1) % len(hosts)
    parameters = []
    for hostport in hosts[first:] + hosts[:first]:
        host, _, port = hostport.rpartition(":")
        parameters.append(
            pika.ConnectionParameters(
                host=host,
                port=int(port),
                credentials=credentials,
                heartbeat=15,
                blocked_connection_timeout=60,
                connection_attempts=1,
                socket_timeout=5,
            )
        )
    return parameters


@dataclass(slots=True)
class Delivery:
    topic: str
    payload: bytes
    qos: int
    tag: int


class AmqpSession:
    def __init__(self, settings: Settings, worker: int, stopping: threading.Event):
        self._settings = settings
        self._stopping = stopping
        self._parameters = connection_parameters(settings, worker)
        self._queues = queue_names(settings.amqp_queues)
        self.connected = threading.Event()
        self.inbox: queue.Queue[Received] = queue.Queue(maxsize=settings.ingest_inbox_messages)
        # Per consumer: with every queue consumed, the unacknowledged total stays within the inbox.
        self._prefetch = max(1, settings.ingest_inbox_messages // len(self._queues))
        self._generation = 0
        self._connection: pika.BlockingConnection | None = None
        self._channel = None
        self._pending_publishes = 0
        self._consuming = True
        self.last_received = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="amqp", daemon=True)

    def describe(self) -> str:
        return "amqp://" + ",".join(self._settings.amqp_hosts)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(10)

    # --- the connection's thread

    def _run(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            try:
                self._session()
                delay = 0.5
            except (pika.exceptions.AMQPError, OSError) as exc:
                if not self._stopping.is_set():
                    log.warning(
                        "broker connection lost, retrying", extra={"error": repr(exc)[:300], "retry_in_s": delay}
                    )
            finally:
                self.connected.clear()
                metrics.BROKER_UP.set(0)
                self._connection = self._channel = None
                self._pending_publishes = 0
            self._stopping.wait(delay)
            delay = min(delay * 2, 10)

    def _session(self) -> None:
        connection = pika.BlockingConnection(self._parameters)
        try:
            channel = connection.channel()
            declare(channel, len(self._queues))
            channel.basic_qos(prefetch_count=self._prefetch)
            self._generation += 1
            if self._consuming:
                for name in self._queues:
                    channel.basic_consume(name, self._on_message)
            self._connection, self._channel = connection, channel
            self.connected.set()
            metrics.BROKER_UP.set(1)
            log.info("consuming", extra={"queues": len(self._queues)})
            while not self._stopping.is_set():
                connection.process_data_events(time_limit=0.5)
        finally:
            with contextlib.suppress(Exception):
                connection.close()

    def _on_message(self, channel, method, properties, body: bytes) -> None:
        self.last_received = time.monotonic()
        item = Received(
            self._generation,
            Delivery(topics.from_routing_key(method.routing_key), body, 1, method.delivery_tag),
            datetime.now(UTC),
        )
        try:
            self.inbox.put_nowait(item)
            return
        except queue.Full:
            pass
        metrics.INBOX_FULL.inc()
        started = time.monotonic()
        while not self._stopping.is_set():
            try:
                self.inbox.put(item, timeout=0.5)
                break
            except queue.Full:
                continue
        metrics.INBOX_WAIT_SECONDS.inc(time.monotonic() - started)

    # --- the main thread

    def next(self, timeout: float) -> Received:
        """The next message to store; one an earlier connection delivered is dropped unread (the
        broker delivers it again on this one)."""
        while True:
            item = self.inbox.get(timeout=timeout) if timeout > 0 else self.inbox.get_nowait()
            if item.generation == self._generation:
                return item
            metrics.STALE.inc()

    def backlog(self) -> int:
        return self.inbox.qsize()

    def _call(self, callback) -> bool:
        """Run ``callback`` on the connection's thread; False when there is no connection."""
        connection = self._connection
        if connection is None:
            return False
        try:
            connection.add_callback_threadsafe(callback)
            return True
        except Exception:  # closed meanwhile
            return False

    def acknowledge(self, received: list[Received]) -> None:
        """One acknowledgement for the batch: its messages are in delivery order, and all before
        them were acknowledged with the batches before."""
        generation = self._generation
        tags = [item.message.tag for item in received if item.generation == generation]
        if not tags:
            return
        channel, last = self._channel, max(tags)

        def ack() -> None:
            if self._generation == generation and channel is not None and channel.is_open:
                channel.basic_ack(last, multiple=True)

        self._call(ack)

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        """To ``amq.topic``, where the API nodes' MQTT subscriptions read it. Bounded like the MQTT
        session's queue: past it (or with no connection) screens get events from the database."""
        channel = self._channel
        if channel is None or self._pending_publishes >= self._settings.ingest_publish_queue:
            metrics.UNPUBLISHED.inc()
            return
        self._pending_publishes += 1
        properties = pika.BasicProperties(delivery_mode=2 if qos else 1)

        def send() -> None:
            self._pending_publishes -= 1
            if channel.is_open:
                channel.basic_publish("amq.topic", topics.to_routing_key(topic), payload, properties)

        if not self._call(send):
            self._pending_publishes -= 1
            metrics.UNPUBLISHED.inc()

    def redeliver(self) -> None:
        """Drop the connection: the broker requeues what it delivered and was not acknowledged."""
        connection = self._connection
        if connection is not None:
            self._call(connection.close)

    def leave(self) -> bool:
        """Stop consuming (a retiring worker): the queues' other consumers take the rest."""
        self._consuming = False
        channel = self._channel
        if channel is None:
            return True
        done = threading.Event()

        def cancel() -> None:
            for tag in list(channel.consumer_tags):
                channel.basic_cancel(tag)
            done.set()

        return self._call(cancel) and done.wait(10)

    def end(self) -> None:
        """Nothing to end: the queues are the cluster's, not this worker's."""
