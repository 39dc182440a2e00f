"""NGSI-LD subscriptions: a consumer asks to be told, by HTTP, when entities it may see change.

Each subscription belongs to the user whose token made it: only its owner lists, reads, changes
and deletes it, and its notifications show what the owner's role and units show at the time
they are sent. The notifier (``notify/subscriptions.py``) hears of every change at once
(PostgreSQL ``NOTIFY``) and keeps each subscription's status: timesSent, lastSuccess,
lastFailure and the failure's reason.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from psycopg import AsyncConnection, errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ioc_api.deps import Db
from ioc_api.ngsild.protocol import (
    CONTEXT_REL,
    JSON,
    JSON_LD,
    MERGE_PATCH,
    NgsiError,
    ReadingCaller,
    bad_request,
    context_of,
    negotiate,
    not_found,
    read_body,
    vocabulary_of,
)
from ioc_api.routes.ngsild import _check_uri, _int
from ioc_core.ngsild.entities import iso
from ioc_core.ngsild.jsonld import CORE_URL, translation
from ioc_core.ngsild.subscriptions import SubscriptionError, check, new_id, parse_time, status_of
from ioc_core.topics import SUBSCRIPTIONS_CHANGED

router = APIRouter(prefix="/ngsi-ld/v1", tags=["ngsi-ld"])
MAX_PER_OWNER = 1000
_COLUMNS = (
    "id, tenant, body, context, active, expires_at, times_sent, times_failed, last_notification,"
    " last_success, last_failure, last_error, created_at, modified_at"
)


async def owner(caller: ReadingCaller) -> str:
    if caller.principal is None:
        raise NgsiError(401, "Unauthorized", "a subscription belongs to a user: send a bearer token")
    if caller.principal.role == "partner" and caller.tenant not in ("", caller.principal.tenant):
        raise NgsiError(403, "AccessDenied", f"this token subscribes in tenant {caller.principal.tenant!r} only")
    return caller.principal.username


Owner = Annotated[str, Depends(owner)]


async def _checked(request: Request, media: str, body: Any, partial: bool) -> tuple[dict, Any]:
    context = context_of(request, media, body)
    terms = translation(await vocabulary_of(context))
    try:
        return check(body, terms, datetime.now(UTC), partial=partial), context
    except SubscriptionError as exc:
        raise bad_request(str(exc)) from exc


async def _changed(db: AsyncConnection, subscription_id: str) -> None:
    """Tell the notifier, at commit."""
    await db.execute("SELECT pg_notify(%s, %s)", (SUBSCRIPTIONS_CHANGED, subscription_id))


def _columns(body: dict) -> dict[str, Any]:
    expires = body.get("expiresAt")
    return {
        "active": body.get("isActive", True),
        "expires_at": parse_time("expiresAt", expires) if expires else None,
    }


@router.post("/subscriptions", status_code=201, summary="Subscribe to changes (HTTP notifications)")
async def create_subscription(request: Request, caller: ReadingCaller, username: Owner, db: Db) -> Response:
    media, body = await read_body(request)
    kept, context = await _checked(request, media, body, partial=False)
    subscription_id = body.get("id") or new_id()
    count = await (await db.execute("SELECT count(*) FROM ngsi_subscriptions WHERE owner = %s", (username,))).fetchone()
    if count[0] >= MAX_PER_OWNER:
        raise NgsiError(403, "AccessDenied", f"a user holds {MAX_PER_OWNER} subscriptions at most")
    columns = _columns(kept)
    try:
        async with db.transaction():
            await db.execute(
                "INSERT INTO ngsi_subscriptions (id, tenant, owner, body, context, active, expires_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    subscription_id,
                    caller.tenant,
                    username,
                    Jsonb(kept),
                    Jsonb(context),
                    columns["active"],
                    columns["expires_at"],
                ),
            )
    except errors.UniqueViolation as exc:
        raise NgsiError(409, "AlreadyExists", f"subscription {subscription_id!r} exists") from exc
    await _changed(db, subscription_id)
    return Response(status_code=201, headers={"Location": f"/ngsi-ld/v1/subscriptions/{subscription_id}"})


def _shown(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A subscription as its owner gave it, with its status and its notifications' record."""
    body = dict(row["body"])
    notification = dict(body.get("notification", {}))
    failed_last = row["last_failure"] is not None and (
        row["last_success"] is None or row["last_failure"] > row["last_success"]
    )
    notification["status"] = "failed" if failed_last else "ok"
    notification["timesSent"] = row["times_sent"]
    notification["timesFailed"] = row["times_failed"]
    for field in ("last_notification", "last_success", "last_failure"):
        if row[field] is not None:
            name = "".join(w.capitalize() if i else w for i, w in enumerate(field.split("_")))
            notification[name] = iso(row[field])
    if failed_last and row["last_error"]:
        notification["lastFailureReason"] = row["last_error"]
    shown = {"id": row["id"], "type": "Subscription", **body, "notification": notification}
    shown["isActive"] = row["active"]
    shown["status"] = status_of(row["active"], row["expires_at"], now)
    shown["createdAt"], shown["modifiedAt"] = iso(row["created_at"]), iso(row["modified_at"])
    return shown


async def _own(db: AsyncConnection, username: str, subscription_id: str) -> dict[str, Any]:
    _check_uri(subscription_id)
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM ngsi_subscriptions WHERE id = %s AND owner = %s FOR UPDATE",
            (subscription_id, username),
        )
        row = await cur.fetchone()
    if row is None:
        raise not_found(f"no subscription {subscription_id!r} of yours")
    return row


@router.get("/subscriptions", summary="Your subscriptions, with their status")
async def list_subscriptions(request: Request, username: Owner, db: Db) -> Response:
    limit = _int(request, "limit", 20, 1, 1000)
    offset = _int(request, "offset", 0, 0)
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM ngsi_subscriptions WHERE owner = %s ORDER BY created_at, id LIMIT %s OFFSET %s",
            (username, limit, offset),
        )
        rows = await cur.fetchall()
    now = datetime.now(UTC)
    media = negotiate(request, (JSON, JSON_LD))
    if media == JSON_LD:
        body = [{**_shown(r, now), "@context": r["context"] or CORE_URL} for r in rows]
    else:
        body = [_shown(r, now) for r in rows]
    return Response(orjson.dumps(body), media_type=media)


@router.get("/subscriptions/{subscription_id:path}", summary="One of your subscriptions, with its status")
async def get_subscription(subscription_id: str, request: Request, username: Owner, db: Db) -> Response:
    row = await _own(db, username, subscription_id)
    shown = _shown(row, datetime.now(UTC))
    media = negotiate(request, (JSON, JSON_LD))
    if media == JSON_LD:
        return Response(orjson.dumps({**shown, "@context": row["context"] or CORE_URL}), media_type=media)
    headers = {}
    if isinstance(row["context"], str):
        headers["Link"] = f'<{row["context"]}>; rel="{CONTEXT_REL}"; type="{JSON_LD}"'
    return Response(orjson.dumps(shown), media_type=JSON, headers=headers)


@router.patch("/subscriptions/{subscription_id:path}", status_code=204, summary="Change a subscription")
async def update_subscription(subscription_id: str, request: Request, username: Owner, db: Db) -> Response:
    media, fragment = await read_body(request, (JSON, JSON_LD, MERGE_PATCH))
    row = await _own(db, username, subscription_id)
    if isinstance(fragment, dict) and fragment.get("id", subscription_id) != subscription_id:
        raise bad_request("a subscription's id does not change")
    changes, context = await _checked(request, JSON if media == MERGE_PATCH else media, fragment, partial=True)
    body = {**row["body"], **changes}
    terms = translation(await vocabulary_of(context if context is not None else row["context"]))
    try:  # the whole, once merged
        check({"type": "Subscription", **body}, terms, datetime.now(UTC))
    except SubscriptionError as exc:
        raise bad_request(str(exc)) from exc
    columns = _columns(body)
    await db.execute(
        "UPDATE ngsi_subscriptions SET body = %s, context = coalesce(%s, context), active = %s, expires_at = %s,"
        " modified_at = now() WHERE id = %s",
        (
            Jsonb(body),
            Jsonb(context) if context is not None else None,
            columns["active"],
            columns["expires_at"],
            subscription_id,
        ),
    )
    await _changed(db, subscription_id)
    return Response(status_code=204)


@router.delete("/subscriptions/{subscription_id:path}", status_code=204, summary="Delete a subscription")
async def delete_subscription(subscription_id: str, username: Owner, db: Db) -> Response:
    await _own(db, username, subscription_id)
    await db.execute("DELETE FROM ngsi_subscriptions WHERE id = %s", (subscription_id,))
    await _changed(db, subscription_id)
    return Response(status_code=204)
