"""One reading end to end: MQTT -> ingest -> TimescaleDB, and -> the API's WebSocket."""

import asyncio

import orjson
import psycopg
import websockets

from ioc_core import topics
from tests.support import Broker, Service, publish_all, publisher, wait_until


async def test_reading_is_stored_and_pushed_live(
    broker: Broker, ingest: Service, api: Service, db: psycopg.Connection, tokens: dict[str, str]
) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{api.port}/ws") as ws:
        await ws.send(orjson.dumps({"type": "auth", "token": tokens["city"]}).decode())
        assert orjson.loads(await ws.recv())["type"] == "welcome"
        await ws.send(orjson.dumps({"type": "subscribe", "units": None, "values": True}).decode())
        assert orjson.loads(await ws.recv())["type"] == "subscribed"

        client = publisher(broker.port)
        publish_all(client, [(topics.sensor_readings("e2e-air-1"), b'{"values": {"pm25": 42.5}}')])
        client.disconnect()

        stored = wait_until(
            lambda: db.execute("SELECT metric, value FROM readings WHERE sensor_id = 'e2e-air-1'").fetchall(),
            what="the reading in the hypertable",
        )
        assert stored == [("pm25", 42.5)]

        async with asyncio.timeout(10):
            while True:
                msg = orjson.loads(await ws.recv())
                if msg["type"] == "values" and any(v["sensor_id"] == "e2e-air-1" for v in msg["values"]):
                    break
        [value] = [v for v in msg["values"] if v["sensor_id"] == "e2e-air-1"]
        assert (value["metric"], value["value"]) == ("pm25", 42.5)
        # An unknown sensor is registered as unregistered and reported under the city.
        assert value["unit_id"] == "danang"
        assert db.execute("SELECT registered FROM sensors WHERE id = 'e2e-air-1'").fetchone() == (False,)
