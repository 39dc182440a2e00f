"""``/ws``: live events and values, within the caller's units (protocol: docs/live-protocol.md)."""

import asyncio
import contextlib
import logging
import time

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ioc_api.live import FORBIDDEN, TOO_SLOW, UNAUTHORIZED, LiveClient
from ioc_api.security import Principal, principal_for
from ioc_core.events import COLUMNS, SEVERITIES, from_row, severity_at_least

router = APIRouter(tags=["live"])
log = logging.getLogger(__name__)

AUTH_TIMEOUT_S = 10
REPLAY_LIMIT = 10_000


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
    async with ws.app.state.pool.connection() as conn:
        principal = await principal_for(conn, token)
    return (principal, token) if principal else None


async def _watch_token(ws: WebSocket, token: str) -> None:
    """A token revoked or expired, or its user disabled, ends the connection within one period."""
    while True:
        await asyncio.sleep(ws.app.state.settings.live_token_recheck_s)
        try:
            async with ws.app.state.pool.connection() as conn:
                valid = await principal_for(conn, token) is not None
        except Exception as exc:  # the database is away: keep the screen live, ask again later
            log.warning("token not rechecked", extra={"error": repr(exc)})
            continue
        if not valid:
            await ws.close(UNAUTHORIZED, "the token was revoked or has expired")
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
            if client.heartbeat:
                client.heartbeat = False
                await ws.send_text(_frame({"type": "heartbeat", "time": time.time()}))
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


async def _replay(ws: WebSocket, client: LiveClient, since: int) -> None:
    """Stored events after ``since``, then the live ones held meanwhile, with no gap at the seam and
    no duplicate: the client was registered (holding live events) before the query ran."""
    kinds = list(client.kinds) if client.kinds else None
    async with ws.app.state.pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {COLUMNS} FROM events WHERE id > %(since)s"
            " AND (%(units)s::text[] IS NULL OR unit_id = ANY(%(units)s)) AND severity = ANY(%(severities)s)"
            " AND (%(kinds)s::text[] IS NULL OR kind = ANY(%(kinds)s) OR EXISTS"
            " (SELECT 1 FROM unnest(%(kinds)s::text[]) k WHERE right(k, 1) = '.' AND starts_with(kind, k)))"
            " ORDER BY id LIMIT %(limit)s",
            {
                "since": since,
                "units": sorted(client.units) if client.units is not None else None,
                "severities": severity_at_least(SEVERITIES[client.min_rank]),
                "kinds": kinds,
                "limit": REPLAY_LIMIT + 1,
            },
        )
        rows = await cur.fetchall()
    if len(rows) > REPLAY_LIMIT:
        client.events.append(
            orjson.dumps({"type": "reset", "reason": f"more than {REPLAY_LIMIT} events missed: reload the state"})
        )
        client.end_replay(set())
        return
    replayed = set()
    for row in rows:
        event = from_row(row)
        replayed.add(event.id)
        client.events.append(b'{"type":"event","replay":true,"event":' + event.to_json() + b"}")
    client.end_replay(replayed)


@router.websocket("/ws")
async def live_socket(ws: WebSocket) -> None:
    await ws.accept()
    authenticated = await _authenticate(ws)
    if authenticated is None:
        await ws.close(UNAUTHORIZED, "a valid token is required")
        return
    principal, token = authenticated
    if principal.role == "public":
        await ws.close(FORBIDDEN, "the public role has no live feed")
        return
    hub = ws.app.state.hub
    client = LiveClient(units=principal.scope)
    await ws.send_text(
        _frame(
            {"type": "welcome", "username": principal.username, "role": principal.role, "units": principal.units_filter}
        )
    )
    sender = asyncio.create_task(_send_outbox(ws, client))
    watcher = asyncio.create_task(_watch_token(ws, token))
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
            if isinstance(since, int) and not isinstance(since, bool):
                client.replaying = True
                hub.add(client)
                await _replay(ws, client, since)
            else:
                hub.add(client)
                client.wake.set()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        hub.remove(client)
        for task in (sender, watcher):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
