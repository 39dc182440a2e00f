"""What ingest reads from: a broker session, whichever the broker.

The embedded default is an MQTT session with Mosquitto (``session.py``); cluster mode reads
RabbitMQ's quorum queues over AMQP (``amqp_session.py``). Both hand messages to a bounded inbox
and acknowledge them only after their batch is committed; the pipeline does not know which.
"""

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class Message(Protocol):
    """paho's ``MQTTMessage`` or an AMQP delivery: what the pipeline reads of a message."""

    topic: str
    payload: bytes
    qos: int


@dataclass(slots=True)
class Received:
    generation: int  # which connection delivered it: an acknowledgement is only valid on its own
    message: Message
    at: datetime


class Source(Protocol):
    connected: threading.Event
    last_received: float  # monotonic time of the last message

    def describe(self) -> str: ...
    def start(self) -> None: ...
    def close(self) -> None: ...
    def next(self, timeout: float) -> Received: ...
    def backlog(self) -> int: ...
    def acknowledge(self, received: list[Received]) -> None: ...
    def publish(self, topic: str, payload: bytes, qos: int) -> None: ...
    def redeliver(self) -> None: ...
    def leave(self) -> bool: ...
    def end(self) -> None: ...
