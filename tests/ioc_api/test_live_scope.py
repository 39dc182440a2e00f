"""A change of a user's units or role reaches their open screens: the socket is closed with 4205
within the recheck interval, and the screen that connects again sees its new scope."""

import asyncio

import orjson
import psycopg
import pytest
import websockets

from ioc_api.cli import create_token, create_user
from tests.support import Service

RECHECK_BOUND_S = 30  # IOC_LIVE_TOKEN_RECHECK_S is 1 s in tests; generous for a loaded machine


async def connect(api: Service, token: str) -> tuple[websockets.ClientConnection, dict]:
    ws = await websockets.connect(f"ws://127.0.0.1:{api.port}/ws")
    await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
    welcome = orjson.loads(await ws.recv())
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


async def closed_code(ws: websockets.ClientConnection) -> int:
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(RECHECK_BOUND_S):
            while True:
                await ws.recv()
    return closed.value.rcvd.code


@pytest.mark.parametrize(
    ("change", "role", "units"),
    [
        ("UPDATE users SET units = '{hoa-cuong}' WHERE username = %s", "ward_operator", ["hoa-cuong"]),
        ("UPDATE users SET role = 'city_operator', units = '{}' WHERE username = %s", "city_operator", None),
    ],
    ids=["units", "role"],
)
async def test_a_changed_scope_closes_the_open_socket_and_the_next_one_has_the_new_scope(
    api: Service, database_url: str, change: str, role: str, units: list[str] | None
) -> None:
    name = f"t-scope-{role}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_user(conn, name, "ward_operator", ["hai-chau"], None)
        token = create_token(conn, name, "tests", 1)
    screen, welcome = await connect(api, token)
    try:
        assert welcome["units"] == ["hai-chau"]
        await asyncio.sleep(2.5)  # rechecks with nothing changed leave the socket open
        await asyncio.wait_for(await screen.ping(), RECHECK_BOUND_S)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(change, (name,))
        assert await closed_code(screen) == 4205
    finally:
        await screen.close()
    again, welcome = await connect(api, token)
    await again.close()
    assert (welcome["role"], welcome["units"]) == (role, units)
