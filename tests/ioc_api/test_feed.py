"""The live feed's promise against the real API, database and broker: a client that holds a
position has every event that position shows, and resumes from it after any cut, whatever order
the events were committed in and whether or not they ever reached the broker."""

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import orjson
import psycopg
import pytest
import websockets

from ioc_api.cli import create_token, create_user
from ioc_core.events import Event, Source, insert_event
from tests.support import Broker, Service, as_, start_api

pytestmark = pytest.mark.asyncio(loop_scope="session")

UNIT = "tam-my"  # a unit no other test writes events for: the room is quiet unless this test speaks


@pytest.fixture(scope="module")
def ward_token(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_user(conn, "feed-room", "ward_operator", [UNIT], None)
        return create_token(conn, "feed-room", "tests", 1)


def store(conn: psycopg.Connection, title: str, unit: str = UNIT, kind: str = "test.feed") -> int:
    """An event stored straight into the database, as a writer does before it publishes (or dies); of
    a kind no incident gathers, so that it comes alone."""
    event = Event(
        time=datetime.now(UTC),
        kind=kind,
        severity="major",
        unit_id=unit,
        source=Source(type="camera", id="feed-cam"),
        title=title,
    )
    with conn.cursor() as cur:
        return insert_event(cur, event).id


def store_now(database_url: str, title: str, **kw) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return store(conn, title, **kw)


def position_now(port: int, token: str) -> str:
    response = httpx.get(f"http://127.0.0.1:{port}/api/v1/live/position", headers=as_(token), timeout=10)
    response.raise_for_status()
    return response.json()["position"]


class Screen:
    """One WebSocket client: every message it receives, batches unpacked, and its newest position."""

    def __init__(self, ws) -> None:
        self.ws, self.messages, self.position = ws, [], None

    @classmethod
    async def open(cls, port: int, token: str, **subscription) -> "Screen":
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws", max_queue=None)
        await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
        await ws.send(orjson.dumps({"type": "subscribe", "values": False, **subscription}).decode())
        return cls(ws)

    async def until(self, done, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                frame = orjson.loads(await self.ws.recv())
                for message in frame["messages"] if frame["type"] == "batch" else [frame]:
                    self.messages.append(message)
                    if message["type"] in ("position", "reset"):
                        self.position = message["position"]

    def events(self) -> list[dict]:
        return [m for m in self.messages if m["type"] == "event"]

    def ids(self) -> list[int]:
        return [m["event"]["id"] for m in self.events()]

    def positions(self) -> int:
        return sum(m["type"] == "position" for m in self.messages)

    async def position_after(self, event_id: int) -> str:
        """A position that came after ``event_id``: one that shows it."""
        await self.until(lambda: event_id in self.ids())
        seen = len(self.messages)
        await self.until(lambda: any(m["type"] == "position" for m in self.messages[seen:]))
        return self.position

    async def close(self) -> None:
        await self.ws.close()


async def test_an_event_that_never_reached_the_broker_reaches_a_live_screen(
    api: Service, database_url: str, ward_token: str
) -> None:
    screen = await Screen.open(api.port, ward_token, since=position_now(api.port, ward_token))
    await screen.until(lambda: screen.positions() >= 1)
    event_id = store_now(database_url, "stored, never published")
    await screen.until(lambda: event_id in screen.ids())
    assert screen.ids() == [event_id]
    await screen.close()


async def test_an_event_committed_after_a_later_one_still_reaches_a_client_that_resumes(
    api: Service, database_url: str, ward_token: str
) -> None:
    start = position_now(api.port, ward_token)
    slow = psycopg.connect(database_url)  # a writer whose transaction took its id first and commits last
    try:
        early = store(slow, "id taken first, committed last")
        late = store_now(database_url, "id taken second, committed first")
        assert early < late
        screen = await Screen.open(api.port, ward_token, since=start)
        held = await screen.position_after(late)
        assert early not in screen.ids()
        await screen.close()
        slow.commit()  # while the screen is away
    finally:
        slow.close()
    again = await Screen.open(api.port, ward_token, since=held)
    await again.until(lambda: early in again.ids())
    replayed = [m for m in again.events() if m["event"]["id"] == early]
    assert replayed[0].get("replay") is True
    assert late not in again.ids()  # the position showed it: not sent twice
    await again.close()


async def test_a_client_that_wants_no_events_is_replayed_none(api: Service, database_url: str, ward_token: str) -> None:
    start = position_now(api.port, ward_token)
    store_now(database_url, "missed, but not wanted")
    screen = await Screen.open(api.port, ward_token, since=start, kinds=[])
    await screen.until(lambda: screen.positions() >= 2)
    assert screen.events() == []
    await screen.close()


async def test_a_client_without_a_position_starts_at_its_first_one(
    api: Service, database_url: str, ward_token: str
) -> None:
    screen = await Screen.open(api.port, ward_token)
    await screen.until(lambda: screen.positions() >= 1)
    after = store_now(database_url, "after its first position")
    await screen.until(lambda: after in screen.ids())
    await screen.close()


async def test_a_position_this_database_never_gave_is_a_reset_with_a_fresh_position(
    api: Service, database_url: str, ward_token: str
) -> None:
    for bad in ("42/1:2:", "not a position", 1234):
        screen = await Screen.open(api.port, ward_token, since=bad)
        await screen.until(lambda s=screen: any(m["type"] == "reset" for m in s.messages))
        reset = next(m for m in screen.messages if m["type"] == "reset")
        assert reset["position"].split("/")[0] == position_now(api.port, ward_token).split("/")[0]
        await screen.close()


@pytest.fixture
def own_api(service_env: dict[str, str], own_broker: Broker) -> Iterator[dict]:
    """An API of its own on a broker of its own, to stop and start without disturbing others."""
    env = {**service_env, "IOC_MQTT_URL": own_broker.url_for("api")}
    service = start_api(env)
    parts = {"api": service, "env": env, "broker": own_broker}
    yield parts
    parts["api"].stop()


async def test_what_was_committed_while_the_api_was_down_reaches_the_screen_that_resumes(
    own_api: dict, database_url: str, ward_token: str
) -> None:
    port = own_api["api"].port
    screen = await Screen.open(port, ward_token, since=position_now(port, ward_token))
    await screen.until(lambda: screen.positions() >= 1)
    own_api["api"].stop()
    missed = store_now(database_url, "while the API was down")
    own_api["api"] = start_api(own_api["env"], port)
    again = await Screen.open(port, ward_token, since=screen.position)
    await again.until(lambda: missed in again.ids())
    await again.close()


async def test_when_the_api_loses_the_broker_events_still_arrive_and_positions_say_values_stopped(
    own_api: dict, database_url: str, ward_token: str
) -> None:
    port, broker = own_api["api"].port, own_api["broker"]
    screen = await Screen.open(port, ward_token, since=position_now(port, ward_token))
    await screen.until(lambda: screen.positions() >= 1)
    broker.stop()
    try:
        seen = len(screen.messages)
        await screen.until(
            lambda: any(m["type"] == "position" and m["broker"] is False for m in screen.messages[seen:])
        )
        during = store_now(database_url, "while the API had no broker")
        await screen.until(lambda: during in screen.ids())
    finally:
        broker.start()
    seen = len(screen.messages)
    await screen.until(lambda: any(m["type"] == "position" and m["broker"] for m in screen.messages[seen:]))
    await screen.close()
