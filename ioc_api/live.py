"""Fan-out of live events and values to WebSocket clients.

Every client has its own bounded outbox and its own send task, so a slow or stalled client never
delays the others: the hub only appends to outboxes, it never waits on a socket. Messages are
encoded once and shared: an event's bytes go to every client that wants it; values are
coalesced per unit over a second, encoded once per unit, and joined per client.

Events come from two paths, the broker's live topics (fast) and the database feed
(``ioc_api/feed.py``: complete); ``deliver`` passes each event id on once per node, whichever path
brings it first. After every look at the database each client gets, at most once a second, its
position: it has every event that position shows, and resumes from it after a disconnection.

A client that falls behind loses values first (its unsent values message is replaced by the
next one, which holds the newer values); when its events fill the outbox, it is closed with
``TOO_SLOW`` as soon as its current send completes, and reconnects with ``since`` to catch up
from the database. A client that reads nothing at all is closed by the WebSocket ping timeout.
"""

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import orjson

from ioc_core.events import SEVERITIES
from ioc_core.units import CITY_ID

log = logging.getLogger(__name__)

OUTBOX_EVENTS = 1000
VALUES_PERIOD_S = 1.0
VALUE_SLOTS = 10  # clients get their values in ten groups, a tenth of a second apart
POSITION_EVERY_S = 1.0  # the most often a client is told its position
REPLAY_MEMORY_S = 60.0
DELIVERED_MEMORY_S = 120.0  # how long an event id is remembered as delivered by this node
# WebSocket close codes (documented in docs/live-protocol.md).
UNAUTHORIZED = 4401
FORBIDDEN = 4403
SCOPE_CHANGED = 4205
TOO_SLOW = 4008


@dataclass(eq=False)
class LiveClient:
    units: frozenset[str] | None = None  # None: every unit (city roles only)
    kinds: tuple[str, ...] | None = None  # exact kinds, or prefixes ending with a dot
    min_rank: int = 0
    values: bool = True
    slot: int = -1  # which tick of the second sends its values (set by the hub)
    events: deque[bytes] = field(default_factory=deque)
    values_message: bytes | None = None
    position_message: bytes | None = None  # sent after the events it covers
    position_due: float = 0.0  # monotonic time from which the next position may be sent
    too_slow: bool = False
    replaying: bool = False
    held: list[tuple[int, bytes]] = field(default_factory=list)  # live events during a replay
    # Ids a replay sent: their live copies can still be on their way after it (publish follows
    # commit), and are dropped until REPLAY_MEMORY_S after the replay.
    replayed: set[int] = field(default_factory=set)
    replayed_at: float = 0.0
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def wants_unit(self, unit_id: str) -> bool:
        return self.units is None or unit_id in self.units

    def wants_event(self, unit_id: str, kind: str, rank: int) -> bool:
        if rank < self.min_rank or not self.wants_unit(unit_id):
            return False
        return self.kinds is None or any(kind == k or (k.endswith(".") and kind.startswith(k)) for k in self.kinds)

    def push_event(self, event_id: int, message: bytes) -> None:
        if event_id in self.replayed:
            return
        if self.replaying:
            self.held.append((event_id, message))
            if len(self.held) > OUTBOX_EVENTS:
                self.too_slow = True
        elif len(self.events) >= OUTBOX_EVENTS:
            self.values_message = None  # values go first
            self.too_slow = True
        else:
            self.events.append(message)
        self.wake.set()

    def end_replay(self, replayed: set[int]) -> None:
        """Live events held during the replay follow it, without those it already sent."""
        for event_id, message in self.held:
            if event_id not in replayed:
                self.events.append(message)
        self.held.clear()
        self.replayed, self.replayed_at = replayed, time.monotonic()
        self.replaying = False
        self.wake.set()


class LiveHub:
    """Clients are indexed by unit, so an event costs a look at the clients of its unit (and those
    of every unit), not at every client."""

    def __init__(self) -> None:
        self.clients: set[LiveClient] = set()
        self._everywhere: set[LiveClient] = set()
        self._by_unit: dict[str, set[LiveClient]] = {}
        # unit -> (sensor, metric) -> value, since the last tick; and those of the last second's ticks
        self._values: dict[str, dict[tuple[str, str], dict]] = {}
        self._recent: deque[dict[str, dict[tuple[str, str], dict]]] = deque(maxlen=VALUE_SLOTS)
        self._slots: list[set[LiveClient]] = [set() for _ in range(VALUE_SLOTS)]
        self._slot = 0
        self._next_slot = 0
        self._delivered: dict[int, float] = {}  # event id -> when this node passed it on (monotonic)

    def add(self, client: LiveClient) -> None:
        """Register a client with its current filters (remove it first when they change)."""
        self.clients.add(client)
        if client.slot < 0:
            client.slot, self._next_slot = self._next_slot, (self._next_slot + 1) % VALUE_SLOTS
        self._slots[client.slot].add(client)
        if client.units is None:
            self._everywhere.add(client)
        else:
            for unit in client.units:
                self._by_unit.setdefault(unit, set()).add(client)

    def remove(self, client: LiveClient) -> None:
        self.clients.discard(client)
        self._slots[client.slot].discard(client)
        self._everywhere.discard(client)
        for unit in client.units or ():
            self._by_unit.get(unit, set()).discard(client)

    def event(self, unit_id: str, payload: bytes) -> None:
        """A stored event from a live topic: its JSON is passed through, not re-encoded."""
        try:
            head = orjson.loads(payload)
            event_id, kind, rank = int(head["id"]), head["kind"], SEVERITIES.index(head["severity"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("unreadable live event", extra={"unit_id": unit_id})
            return
        self.deliver(event_id, unit_id, kind, rank, b'{"type":"event","event":' + payload + b"}")

    def deliver(self, event_id: int, unit_id: str | None, kind: str, rank: int, message: bytes) -> None:
        """An event to the clients that want it, once: a second copy of the same id (the feed found
        what the broker brought, or the other way round) is dropped."""
        if event_id in self._delivered:
            return
        self._delivered[event_id] = time.monotonic()
        unit_id = unit_id or CITY_ID
        behind = []
        for group in (self._everywhere, self._by_unit.get(unit_id, ())):
            for client in group:
                if client.wants_event(unit_id, kind, rank):
                    client.push_event(event_id, message)
                    if client.too_slow:
                        behind.append(client)
        for client in behind:  # it is being closed: nothing more is worth queueing for it
            self.remove(client)

    def values(self, unit_id: str, digest: bytes) -> None:
        """A unit's digest of changed values; kept a second, newest per sensor metric."""
        try:
            items = orjson.loads(digest)["values"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("unreadable values digest", extra={"unit_id": unit_id})
            return
        pending = self._values.setdefault(unit_id, {})
        for item in items:
            item["unit_id"] = unit_id
            pending[(item["sensor_id"], item["metric"])] = item

    def tick(self) -> None:
        """Every 1/VALUE_SLOTS of a second: the clients of one slot get the values of the last
        second, each unit encoded once, joined into one message per client. Clients are spread
        over the slots so that their values messages (the bulk of the bytes) go out evenly instead
        of in one burst a second, which delayed the events behind them."""
        now = time.monotonic()
        self._recent.append(self._values)
        self._values = {}
        slot, self._slot = self._slot, (self._slot + 1) % VALUE_SLOTS
        fragments: dict[str, bytes] = {}

        def fragment(unit: str) -> bytes:
            if unit not in fragments:
                merged: dict[tuple[str, str], dict] = {}
                for window in self._recent:  # oldest first: the newest value wins
                    merged.update(window.get(unit, ()))
                fragments[unit] = orjson.dumps(list(merged.values()))[1:-1] if merged else b""
            return fragments[unit]

        everywhere: list[str] | None = None
        for client in self._slots[slot]:
            if client.replayed and now - client.replayed_at > REPLAY_MEMORY_S:
                client.replayed = set()
            if not client.values:
                continue
            if client.units is None and everywhere is None:
                everywhere = list({unit for window in self._recent for unit in window})
            units = everywhere if client.units is None else client.units
            body = b",".join(f for f in map(fragment, units) if f)
            if body:
                client.values_message = b'{"type":"values","values":[' + body + b"]}"
                client.wake.set()

    def position(self, position: str, broker_up: bool) -> None:
        """After a look at the database: each client that is due hears the position it has reached
        (and whether live values flow), after the events queued for it so far."""
        now = time.monotonic()
        message = orjson.dumps({"type": "position", "position": position, "broker": broker_up})
        for client in self.clients:
            if not client.replaying and now >= client.position_due:
                client.position_message, client.position_due = message, now + POSITION_EVERY_S
                client.wake.set()
        horizon = now - DELIVERED_MEMORY_S
        while self._delivered:  # oldest first (insertion order)
            event_id, at = next(iter(self._delivered.items()))
            if at >= horizon:
                break
            del self._delivered[event_id]
