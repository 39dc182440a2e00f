"""The guarantee behind the live WebSocket: every stored event reaches every screen that wants it.

The broker's live topics are the fast path, but a message can be lost on the way (the API away
from the broker, ingest killed between its commit and its publish, a restart). So each API node
also reads, every ``IOC_LIVE_FEED_PERIOD_S``, the events committed since it last looked and
delivers those the broker did not bring (``LiveHub.deliver`` passes each id on once). Each look
is one read-only transaction whose snapshot becomes the position of every client served by it: a
client holding a position has received every event that snapshot shows.

A position is a PostgreSQL snapshot (``pg_snapshot``), not an event id: ids come from a sequence
when an event is inserted, and the transactions that insert them (several ingest workers, the
alert scheduler, the API's own actions) commit in any order, so "every id above mine" misses an
event whose id was taken before and committed after. The events a position has not seen are
exactly those whose transaction (``events.xid``) it shows as not yet committed: at or above its
``xmax``, or in its list of transactions in progress. A position carries the database's system
identifier as its epoch: a position from another database is refused, and the client reloads.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import orjson
from psycopg import AsyncConnection

from ioc_api.live import LiveClient, LiveHub
from ioc_core.events import COLUMNS, SEVERITIES, Event, from_row, severity_at_least

log = logging.getLogger(__name__)

REPLAY_LIMIT = 10_000
_SNAPSHOT = re.compile(r"^(\d+)/(\d+):(\d+):((?:\d+(?:,\d+)*)?)$")

# Events whose transaction a position does not show as committed; the caller's snapshot shows them.
_UNSEEN = "(xid >= %(xmax)s::text::xid8 OR xid = ANY(%(xip)s::text[]::xid8[]))"
_NEW_EVENTS = f"SELECT {COLUMNS} FROM events WHERE {_UNSEEN} ORDER BY id"
_MISSED = (
    f"SELECT {COLUMNS} FROM events WHERE {_UNSEEN}"
    " AND (%(units)s::text[] IS NULL OR unit_id = ANY(%(units)s)) AND severity = ANY(%(severities)s)"
    " ORDER BY id LIMIT %(limit)s"
)


class PositionError(ValueError):
    """A position this database cannot resume from: the client reloads its state."""


@dataclass(frozen=True, slots=True)
class Position:
    epoch: str
    xmin: int
    xmax: int
    xip: tuple[int, ...]  # transactions in progress when it was taken

    @classmethod
    def parse(cls, text: object, epoch: str) -> Position:
        match = _SNAPSHOT.match(text) if isinstance(text, str) else None
        if match is None:
            raise PositionError("not a position this server gave")
        if match.group(1) != epoch:
            raise PositionError("a position of another database")
        xmin, xmax = int(match.group(2)), int(match.group(3))
        xip = tuple(int(x) for x in match.group(4).split(",") if x)
        if not xmin <= xmax or any(not xmin <= x < xmax for x in xip):
            raise PositionError("not a position this server gave")
        return cls(epoch, xmin, xmax, xip)

    @classmethod
    def of_snapshot(cls, epoch: str, snapshot: str) -> Position:
        """From PostgreSQL's text form of a ``pg_snapshot``: ``xmin:xmax:xip,...``."""
        return cls.parse(f"{epoch}/{snapshot}", epoch)

    def __str__(self) -> str:
        return f"{self.epoch}/{self.xmin}:{self.xmax}:{','.join(map(str, self.xip))}"

    def unseen(self) -> dict[str, object]:
        """Parameters of ``_UNSEEN``."""
        return {"xmax": str(self.xmax), "xip": [str(x) for x in self.xip]}


async def database_epoch(conn: AsyncConnection) -> str:
    cur = await conn.execute("SELECT system_identifier FROM pg_control_system()")
    return str((await cur.fetchone())[0])


async def current_position(conn: AsyncConnection, epoch: str) -> Position:
    """The position now: state read after it, and events after it, together miss nothing."""
    cur = await conn.execute("SELECT pg_current_snapshot()::text")
    return Position.of_snapshot(epoch, (await cur.fetchone())[0])


@dataclass(eq=False, slots=True)
class _Joining:
    client: LiveClient
    since: object | None  # as the client sent it: parsed once the database's epoch is known


class EventFeed:
    """One loop per API node: the events committed since the last look go to the hub; clients that
    joined meanwhile get what they missed since their position, in the same snapshot."""

    def __init__(
        self,
        connect: Callable[[], AbstractAsyncContextManager[AsyncConnection]],
        hub: LiveHub,
        broker_up: Callable[[], bool],
    ):
        self._connect = connect
        self._hub = hub
        self._broker_up = broker_up
        self._joining: list[_Joining] = []
        self._position: Position | None = None
        self.epoch: str | None = None

    # --- clients

    def join(self, client: LiveClient, since: object | None) -> None:
        """Serve ``client`` at the next look: what it missed after ``since``, or, without one,
        nothing before that look (it loads its state after its first position). It holds live
        events until then."""
        client.replaying = True
        client.held.clear()  # held under an earlier subscription's filters
        self._joining.append(_Joining(client, since))

    def leave(self, client: LiveClient) -> None:
        self._joining = [j for j in self._joining if j.client is not client]

    # --- the loop (run by ioc_core.loops.Loop: a failed look is logged, counted and retried)

    async def look(self) -> None:
        """One look at the database: new events to everyone, missed events to those joining."""
        joining, self._joining = self._joining, []
        try:
            new, served, position = await self._read(joining)
        except BaseException:
            self._joining = joining + self._joining  # they wait for the next look
            raise
        for event in new:
            self._hub.deliver(event.id, event.unit_id, event.kind, SEVERITIES.index(event.severity), event_frame(event))
        for client, missed, problem in served:
            _serve(client, missed, problem, position)
        self._hub.position(str(position), self._broker_up())
        self._position = position

    async def _read(self, joining: list[_Joining]) -> tuple[list[Event], list[tuple], Position]:
        async with self._connect() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            if self.epoch is None:
                self.epoch = await database_epoch(conn)
            position = await current_position(conn, self.epoch)  # the snapshot of everything below
            new: list[Event] = []
            if self._position is not None:
                cur = await conn.execute(_NEW_EVENTS, self._position.unseen())
                new = [from_row(r) for r in await cur.fetchall()]
            served = [(j.client, *await self._missed(conn, j, position)) for j in joining]
        return new, served, position

    async def _missed(self, conn: AsyncConnection, j: _Joining, now: Position) -> tuple[list[Event] | None, str]:
        """The events after the client's position in its filters, or None and why it must reload."""
        client = j.client
        if j.since is None:
            return [], ""
        try:
            since = Position.parse(j.since, now.epoch)
        except PositionError as exc:
            return None, str(exc)
        if since.xmax > now.xmax:
            return None, "a position ahead of this database"
        if client.kinds == ():
            return [], ""  # no events wanted
        cur = await conn.execute(
            _MISSED,
            {
                **since.unseen(),
                "units": sorted(client.units) if client.units is not None else None,
                "severities": severity_at_least(SEVERITIES[client.min_rank]),
                "limit": REPLAY_LIMIT + 1,
            },
        )
        rows = await cur.fetchall()
        if len(rows) > REPLAY_LIMIT:
            return None, f"more than {REPLAY_LIMIT} events missed"
        events = [from_row(r) for r in rows]
        return [e for e in events if client.wants_event(e.unit_id, e.kind, SEVERITIES.index(e.severity))], ""


def _serve(client: LiveClient, missed: list[Event] | None, problem: str, position: Position) -> None:
    """What a joining client missed, then the live events it held; or a reset to reload from here."""
    if missed is None:
        client.events.append(
            orjson.dumps({"type": "reset", "reason": f"{problem}: reload the state", "position": str(position)})
        )
        client.end_replay(set())
        return
    for event in missed:
        client.events.append(b'{"type":"event","replay":true,"event":' + event.to_json() + b"}")
    client.end_replay({e.id for e in missed})


def event_frame(event: Event) -> bytes:
    return b'{"type":"event","event":' + event.to_json() + b"}"
