"""``/ws``: live events and values, within the caller's units (protocol: docs/live-protocol.md)."""

import asyncio
import contextlib
import logging

import orjson
from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field

from ioc_api.deps import NO_UNIT, Db, Staff, scoped_connection
from ioc_api.feed import current_position, database_epoch
from ioc_api.live import FORBIDDEN, SCOPE_CHANGED, TOO_SLOW, UNAUTHORIZED, LiveClient
from ioc_api.problems import PROBLEM_RESPONSES
from ioc_api.security import Principal, principal_for
from ioc_core.events import SEVERITIES

router = APIRouter(tags=["live"])
rest = APIRouter(tags=["live"], responses=PROBLEM_RESPONSES)
log = logging.getLogger(__name__)

AUTH_TIMEOUT_S = 10


class LivePosition(BaseModel):
    position: str = Field(description="Pass as `since` when subscribing to /ws: nothing committed after it is missed.")


@rest.get("/live/position", summary="The live feed's position now: load state after it, then subscribe from it")
async def live_position(request: Request, db: Db, principal: Staff) -> LivePosition:
    feed = request.app.state.feed
    epoch = feed.epoch or await database_epoch(db)
    return LivePosition(position=str(await current_position(db, epoch)))


def _frame(obj: dict) -> str:
    return orjson.dumps(obj).decode()


async def _authenticate(ws: WebSocket) -> tuple[Principal, str] | None:
    """A token in the first frame (``{"type": "auth", "token": ...}``) or the ``token`` query."""
    token = ws.query_params.get("token")
    if token is None:
        try:
            async with asyncio.timeout(AUTH_TIMEOUT_S):
                first = orjson.loads(await ws.receive_text())
            token = first.get("token") if isinstance(first, dict) and first.get("type") == "auth" else None
        except (TimeoutError, orjson.JSONDecodeError):
            return None
    if not isinstance(token, str):
        return None
    async with scoped_connection(ws.app.state.pool, NO_UNIT) as conn:
        principal = await principal_for(conn, token)
    return (principal, token) if principal else None


async def _watch_token(ws: WebSocket, token: str, principal: Principal) -> None:
    """A token revoked or expired, or its user disabled, ends the connection within one period; a
    change of the user's role or units closes it with ``SCOPE_CHANGED``, so the screen reconnects
    and reloads with what the user may now see."""
    while True:
        await asyncio.sleep(ws.app.state.settings.live_token_recheck_s)
        try:
            async with scoped_connection(ws.app.state.pool, NO_UNIT) as conn:
                now = await principal_for(conn, token)
        except Exception as exc:  # the database is away: keep the screen live, ask again later
            log.warning("token not rechecked", extra={"error": repr(exc)})
            continue
        if now is None:
            await ws.close(UNAUTHORIZED, "the token was revoked or has expired")
            return
        if (now.role, now.scope) != (principal.role, principal.scope):
            await ws.close(SCOPE_CHANGED, "the user's role or units changed: reconnect")
            return


BATCH_MAX = 200


def _take_batch(client: LiveClient) -> str:
    """The next frame: one message, or all that wait (up to BATCH_MAX) as one batch. A client that
    fell behind catches up in a few frames instead of hundreds."""
    if len(client.events) == 1:
        return client.events.popleft().decode()
    taken = [client.events.popleft() for _ in range(min(BATCH_MAX, len(client.events)))]
    return (b'{"type":"batch","messages":[' + b",".join(taken) + b"]}").decode()


async def _send_outbox(ws: WebSocket, client: LiveClient) -> None:
    try:
        while True:
            await client.wake.wait()
            client.wake.clear()
            if client.too_slow:
                break
            while client.events:
                await ws.send_text(_take_batch(client))
            if client.values_message is not None:
                message, client.values_message = client.values_message, None
                await ws.send_text(message.decode())
            while client.events:  # any that came while the values went out precede the position
                await ws.send_text(_take_batch(client))
            if client.position_message is not None:
                message, client.position_message = client.position_message, None
                await ws.send_text(message.decode())
    finally:
        if client.too_slow:
            log.warning("closing a client that fell behind", extra={"queued_events": len(client.events)})
            try:
                async with asyncio.timeout(2):
                    await ws.close(TOO_SLOW, "too slow: reconnect with since")
            except Exception as exc:
                log.warning("close failed", extra={"error": repr(exc)})


def _apply_subscription(client: LiveClient, principal: Principal, request: dict) -> str | None:
    """Set the client's filters from a subscribe request; an error text if it is refused."""
    units = request.get("units")
    if units is not None:
        if not isinstance(units, list) or not all(isinstance(u, str) for u in units):
            return "units must be a list of unit ids or null"
        outside = [u for u in units if not principal.sees(u)]
        if outside:
            return f"units outside this token's scope: {', '.join(sorted(outside))}"
        client.units = frozenset(units)
    else:
        client.units = principal.scope
    kinds = request.get("kinds")
    if kinds is not None and (not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds)):
        return "kinds must be a list of event kinds or prefixes ending with a dot"
    client.kinds = tuple(kinds) if kinds is not None else None
    minimum = request.get("min_severity", "info")
    if minimum not in SEVERITIES:
        return f"min_severity must be one of {', '.join(SEVERITIES)}"
    client.min_rank = SEVERITIES.index(minimum)
    client.values = bool(request.get("values", True))
    return None


@router.websocket("/ws")
async def live_socket(ws: WebSocket) -> None:
    await ws.accept()
    authenticated = await _authenticate(ws)
    if authenticated is None:
        await ws.close(UNAUTHORIZED, "a valid token is required")
        return
    principal, token = authenticated
    if principal.role in ("public", "partner"):
        await ws.close(FORBIDDEN, f"the {principal.role} role has no live feed")
        return
    hub, feed = ws.app.state.hub, ws.app.state.feed
    client = LiveClient(units=principal.scope)
    await ws.send_text(
        _frame(
            {"type": "welcome", "username": principal.username, "role": principal.role, "units": principal.units_filter}
        )
    )
    sender = asyncio.create_task(_send_outbox(ws, client))
    watcher = asyncio.create_task(_watch_token(ws, token, principal))
    try:
        while True:
            try:
                request = orjson.loads(await ws.receive_text())
            except orjson.JSONDecodeError:
                client.events.append(b'{"type":"error","error":"frames must be JSON"}')
                client.wake.set()
                continue
            kind = request.get("type") if isinstance(request, dict) else None
            if kind == "ping":
                client.events.append(b'{"type":"pong"}')
                client.wake.set()
                continue
            if kind != "subscribe":
                client.events.append(b'{"type":"error","error":"unknown request type"}')
                client.wake.set()
                continue
            hub.remove(client)  # indexed by its units, which the request may change
            feed.leave(client)
            error = _apply_subscription(client, principal, request)
            if error is not None:
                await ws.send_text(_frame({"type": "error", "error": error}))
                await ws.close(FORBIDDEN if "scope" in error else 1008, error[:120])
                return
            since = request.get("since")
            client.events.append(
                orjson.dumps(
                    {
                        "type": "subscribed",
                        "units": sorted(client.units) if client.units is not None else None,
                        "kinds": client.kinds,
                        "min_severity": SEVERITIES[client.min_rank],
                        "values": client.values,
                        "since": since,
                    }
                )
            )
            client.wake.set()
            feed.join(client, since)  # held live events wait for what it missed, at the next look
            hub.add(client)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        hub.remove(client)
        feed.leave(client)
        for task in (sender, watcher):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
