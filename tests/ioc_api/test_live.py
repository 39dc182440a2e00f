"""The live WebSocket against the real broker, ingest, API and database."""

import asyncio
import time

import orjson
import psycopg
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from ioc_core import topics
from tests.ioc_api.test_feed import position_now
from tests.support import Broker, Service, StalledClient, publish_all, publisher

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def connect(api: Service, token: str | None, **subscription):
    ws = await websockets.connect(f"ws://127.0.0.1:{api.port}/ws", max_queue=None)
    ws.leftover = []  # messages that came in the same batch as the subscription's answer
    if token is not None:
        await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
        assert orjson.loads(await ws.recv())["type"] == "welcome"
    if subscription:
        await ws.send(orjson.dumps({"type": "subscribe", **subscription}).decode())
        frame = orjson.loads(await ws.recv())
        reply, *ws.leftover = frame["messages"] if frame["type"] == "batch" else [frame]
        assert reply["type"] == "subscribed", reply
    return ws


async def frames_until(ws, done, timeout: float = 30) -> list[dict]:
    """Messages received until ``done(messages)`` holds; batches are unpacked."""
    frames: list[dict] = list(getattr(ws, "leftover", []))
    ws.leftover = []
    async with asyncio.timeout(timeout):
        while not done(frames):
            frame = orjson.loads(await ws.recv())
            frames.extend(frame["messages"] if frame["type"] == "batch" else [frame])
    return frames


def event_ids(frames: list[dict]) -> list[int]:
    return [f["event"]["id"] for f in frames if f["type"] == "event"]


def camera_events(camera: str, n: int, start: int = 0) -> list[tuple[str, bytes]]:
    return [
        (f"ioc/v1/cameras/{camera}/events", orjson.dumps({"event": "crowding", "title": f"crowd {start + i}"}))
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def cameras(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO cameras (id, unit_id) VALUES ('ws-cam-hc', 'hai-chau'), ('ws-cam-hcg', 'hoa-cuong')")


async def test_without_a_valid_token_the_socket_is_closed_4401(api: Service) -> None:
    ws = await websockets.connect(f"ws://127.0.0.1:{api.port}/ws")
    await ws.send('{"type": "auth", "token": "ioc_wrong"}')
    with pytest.raises(ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd.code == 4401


async def test_a_ward_operator_cannot_subscribe_to_another_unit(api: Service, tokens: dict[str, str]) -> None:
    ws = await connect(api, tokens["hai_chau"])
    await ws.send(orjson.dumps({"type": "subscribe", "units": ["hoa-cuong"]}).decode())
    assert orjson.loads(await ws.recv())["type"] == "error"
    with pytest.raises(ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd.code == 4403


async def test_each_room_receives_its_own_units_events_only(
    api: Service, ingest: Service, broker: Broker, tokens: dict[str, str], cameras: None
) -> None:
    ward = await connect(api, tokens["hai_chau"], units=None, values=False, kinds=["camera."])
    city = await connect(api, tokens["city"], units=["hai-chau", "hoa-cuong"], values=False, kinds=["camera."])
    client = publisher(broker.port)
    publish_all(client, camera_events("ws-cam-hcg", 1) + camera_events("ws-cam-hc", 1))
    client.disconnect()
    city_frames = await frames_until(city, lambda fs: len(event_ids(fs)) >= 2)
    ward_frames = await frames_until(ward, lambda fs: len(event_ids(fs)) >= 1)
    await asyncio.sleep(0.5)  # anything else that was coming to the ward
    assert {f["event"]["unit_id"] for f in city_frames if f["type"] == "event"} == {"hai-chau", "hoa-cuong"}
    assert [f["event"]["unit_id"] for f in ward_frames if f["type"] == "event"] == ["hai-chau"]
    await ward.close()
    await city.close()


async def test_replay_then_live_has_no_gap_and_no_duplicate(
    api: Service, ingest: Service, broker: Broker, tokens: dict[str, str], cameras: None, database_url: str
) -> None:
    with psycopg.connect(database_url) as conn:
        first = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
    since = position_now(api.port, tokens["hai_chau"])
    client = publisher(broker.port)
    publish_all(client, camera_events("ws-cam-hc", 300))  # missed while away
    with psycopg.connect(database_url) as conn:
        while conn.execute("SELECT count(*) FROM events WHERE id > %s", (first,)).fetchone()[0] < 300:
            await asyncio.sleep(0.05)
    # Reconnect from the position, while more events keep coming.
    more = asyncio.get_running_loop().run_in_executor(None, publish_all, client, camera_events("ws-cam-hc", 300, 300))
    ws = await connect(api, tokens["hai_chau"], values=False, since=since, kinds=["camera."])
    frames = await frames_until(ws, lambda fs: len(event_ids(fs)) >= 600, timeout=30)
    await more
    client.disconnect()
    await asyncio.sleep(0.5)
    ids = event_ids(frames)
    with psycopg.connect(database_url) as conn:
        stored = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM events WHERE id > %s AND unit_id = 'hai-chau' AND kind LIKE 'camera.%%' ORDER BY id",
                (first,),
            )
        ]
    assert len(ids) == len(set(ids)) == 600
    assert sorted(ids) == stored
    assert any(f.get("replay") for f in frames)  # the first 300 at least: they were stored before it came
    await ws.close()


async def test_values_reach_the_units_rooms_once_a_second_at_most(
    api: Service, ingest: Service, broker: Broker, tokens: dict[str, str], database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sensors (id, kind, unit_id) VALUES ('ws-v-hc', 'air', 'hai-chau'),"
            " ('ws-v-hcg', 'air', 'hoa-cuong')"
        )
    await asyncio.sleep(1.0)  # the registry refresh in tests is 0.5 s
    ward = await connect(api, tokens["hai_chau"], values=True, kinds=[])
    client = publisher(broker.port)
    for i in range(20):
        publish_all(
            client,
            [
                (topics.sensor_readings("ws-v-hc"), orjson.dumps({"values": {"pm25": i}})),
                (topics.sensor_readings("ws-v-hcg"), orjson.dumps({"values": {"pm25": i}})),
            ],
        )
        await asyncio.sleep(0.1)
    client.disconnect()
    frames = await frames_until(
        ward, lambda fs: any(v["value"] == 19 for f in fs if f["type"] == "values" for v in f["values"])
    )
    values = [v for f in frames if f["type"] == "values" for v in f["values"]]
    assert {v["sensor_id"] for v in values} == {"ws-v-hc"}
    # Two seconds of readings every 0.1 s arrive as a few coalesced updates, not twenty.
    assert len([v for v in values if v["sensor_id"] == "ws-v-hc"]) <= 4
    await ward.close()


async def test_a_stalled_client_is_closed_4008_and_the_others_keep_up(
    api: Service, broker: Broker, tokens: dict[str, str]
) -> None:
    stalled = StalledClient(api.port)
    stalled.send({"type": "auth", "token": tokens["city"]})
    stalled.send({"type": "subscribe", "values": False, "kinds": ["test."]})
    reader = await connect(api, tokens["city"], values=False, kinds=["test."])
    client = publisher(broker.port, account="ingest")
    pad = "x" * 2_000
    flood = [
        (
            topics.live("hai-chau", "test.flood"),
            orjson.dumps(
                {"id": 10_000_000 + i, "kind": "test.flood", "severity": "info", "unit_id": "hai-chau", "title": pad}
            ),
        )
        for i in range(6000)
    ]

    def paced() -> None:  # bursts a healthy client absorbs; the stalled one's buffers fill up
        for start in range(0, len(flood), 500):
            publish_all(client, flood[start : start + 500])
            time.sleep(0.25)

    sending = asyncio.get_running_loop().run_in_executor(None, paced)
    frames = await frames_until(reader, lambda fs: len(event_ids(fs)) >= 6000, timeout=60)
    await sending
    client.disconnect()
    assert len(event_ids(frames)) == 6000
    assert await asyncio.get_running_loop().run_in_executor(None, stalled.close_code) == 4008
    await reader.close()
