"""Fan-out of live events and value digests to WebSocket clients.

Each client has one bounded queue and one send task, so a slow or stalled client never delays the
others: a message is encoded once and put on every matching queue without waiting.
"""

import asyncio
import logging
from dataclasses import dataclass, field

import orjson

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000


@dataclass(eq=False)
class LiveClient:
    units: frozenset[str] | None = None  # None: every unit
    values: bool = True
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: int = 0

    def wants(self, unit_id: str) -> bool:
        return self.units is None or unit_id in self.units

    def offer(self, message: bytes) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1


class LiveHub:
    def __init__(self) -> None:
        self.clients: set[LiveClient] = set()

    def add(self, client: LiveClient) -> None:
        self.clients.add(client)

    def remove(self, client: LiveClient) -> None:
        self.clients.discard(client)

    def values(self, unit_id: str, digest: dict) -> None:
        """A unit's digest of changed values (from ingest, once a second)."""
        message = orjson.dumps({"type": "values", "unit_id": unit_id, "values": digest.get("values", [])})
        for client in self.clients:
            if client.values and client.wants(unit_id):
                client.offer(message)

    def event(self, unit_id: str, event: dict) -> None:
        """A stored event, with its id."""
        message = orjson.dumps({"type": "event", "event": event})
        for client in self.clients:
            if client.wants(unit_id):
                client.offer(message)
