"""``/ws``: live events and value digests, pushed to each client through its own queue.

Protocol (JSON text frames), client to server:
``{"type": "subscribe", "units": ["hai-chau"] | null, "values": true}``.
Server to client: ``{"type": "subscribed", ...}``, ``{"type": "values", "unit_id", "values": [...]}``,
``{"type": "event", "event": {...}}``.
"""

import asyncio
import contextlib

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ioc_api.live import LiveClient

router = APIRouter(tags=["live"])


async def _send_queued(ws: WebSocket, client: LiveClient) -> None:
    while True:
        await ws.send_text((await client.queue.get()).decode())


@router.websocket("/ws")
async def live_socket(ws: WebSocket) -> None:
    await ws.accept()
    hub = ws.app.state.hub
    client = LiveClient()
    hub.add(client)
    sender = asyncio.create_task(_send_queued(ws, client))
    try:
        while True:
            try:
                request = orjson.loads(await ws.receive_text())
            except orjson.JSONDecodeError:
                await ws.send_text('{"type":"error","error":"frames must be JSON"}')
                continue
            if not isinstance(request, dict) or request.get("type") != "subscribe":
                await ws.send_text('{"type":"error","error":"unknown request type"}')
                continue
            units = request.get("units")
            client.units = frozenset(units) if isinstance(units, list) else None
            client.values = bool(request.get("values", True))
            await ws.send_text(
                orjson.dumps(
                    {
                        "type": "subscribed",
                        "units": sorted(client.units) if client.units else None,
                        "values": client.values,
                    }
                ).decode()
            )
    except WebSocketDisconnect:
        pass
    finally:
        hub.remove(client)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
