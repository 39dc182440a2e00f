"""Log in for a bearer token, see who a token belongs to, log out, and list or revoke tokens.

Logins are limited per client address (``IOC_LOGIN_ATTEMPTS_PER_MINUTE``), and an account is
locked for ``IOC_LOGIN_LOCKOUT_MINUTES`` after ``IOC_LOGIN_MAX_FAILURES`` failures in a row, so a
password cannot be guessed by trying; every login, lockout and revocation is in the audit log.
"""

import asyncio
import math
import time
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from psycopg.rows import dict_row

from ioc_api import audit
from ioc_api.deps import Anyone, Db
from ioc_api.models import Login, TokenInfo, TokenOut
from ioc_api.problems import PROBLEM_RESPONSES, Problem
from ioc_api.security import issue_token, verify_password

router = APIRouter(prefix="/auth", tags=["auth"], responses=PROBLEM_RESPONSES)
_attempts = MovingWindowRateLimiter(MemoryStorage())


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _limit_attempts(request: Request) -> None:
    item = RateLimitItemPerMinute(request.app.state.settings.login_attempts_per_minute)
    address = _address(request)
    if not _attempts.hit(item, "login", address):
        wait = max(1, math.ceil(_attempts.get_window_stats(item, "login", address).reset_time - time.time()))
        raise Problem(
            429, f"too many login attempts from this address; try again in {wait} s", {"Retry-After": str(wait)}
        )


@router.post(
    "/login",
    summary="Exchange a username and password for a bearer token",
    responses={429: {"description": "Too many attempts, or the account is locked (see Retry-After)"}},
)
async def login(body: Login, db: Db, request: Request) -> TokenOut:
    _limit_attempts(request)
    settings = request.app.state.settings
    # The attempt is counted before the password is checked, under the row's lock: guesses sent
    # at once are counted one after another, and none is checked once the account is locked.
    cur = await db.execute(
        "UPDATE users SET failed_logins = failed_logins + 1"
        " WHERE username = %s AND NOT disabled AND (locked_until IS NULL OR locked_until <= now())"
        " RETURNING id, password_hash, role, units, failed_logins",
        (body.username,),
    )
    row = await cur.fetchone()
    if row is None:
        cur = await db.execute(
            "SELECT ceil(extract(epoch FROM locked_until - now()))::int FROM users"
            " WHERE username = %s AND NOT disabled AND locked_until > now()",
            (body.username,),
        )
        if locked := await cur.fetchone():
            wait = str(max(1, locked[0]))
            detail = f"the account is locked after failed logins; try again in {wait} s"
            raise Problem(429, detail, {"Retry-After": wait})
    # Argon2 takes tens of milliseconds of CPU: off the event loop.
    if not await asyncio.to_thread(verify_password, row[1] if row else None, body.password):
        if row and row[4] >= settings.login_max_failures:
            await _lock(db, row[0], body.username, _address(request), settings)
        await db.commit()  # the count stands, although the refusal rolls the request back
        raise Problem(401, "unknown user or wrong password", {"WWW-Authenticate": "Bearer"})
    user_id, _, role, units, _ = row
    await db.execute("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = %s", (user_id,))
    hours = settings.session_hours
    token = await issue_token(db, user_id, "session", timedelta(hours=hours), "login")
    await audit.record(db, body.username, "auth.login", body.username, {"address": _address(request)})
    return TokenOut(
        access_token=token,
        expires_in=int(hours * 3600),
        role=role,
        units=sorted(units) if role == "ward_operator" else None,
    )


async def _lock(db: Db, user_id: int, username: str, address: str, settings) -> None:
    await db.execute(
        "UPDATE users SET failed_logins = 0, locked_until = now() + %s WHERE id = %s",
        (timedelta(minutes=settings.login_lockout_minutes), user_id),
    )
    details = {"address": address, "failures": settings.login_max_failures}
    await audit.record(db, f"address:{address}", "user.lock", username, details)


@router.get("/me", summary="The user and scope behind the token")
async def me(principal: Anyone) -> dict:
    return {
        "username": principal.username,
        "role": principal.role,
        "units": principal.units_filter,
    }


@router.post("/logout", status_code=204, summary="Revoke the token of this request")
async def logout(principal: Anyone, db: Db) -> Response:
    await db.execute("UPDATE api_tokens SET revoked_at = now() WHERE id = %s", (principal.token_id,))
    await audit.record(db, principal.username, "token.revoke", str(principal.token_id), {"logout": True})
    return Response(status_code=204)


@router.get("/tokens", summary="Tokens: one's own, or (admins) everyone's")
async def tokens(
    principal: Anyone,
    db: Db,
    active: Annotated[bool, Query(description="Only tokens neither expired nor revoked.")] = True,
) -> list[TokenInfo]:
    cur = db.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT t.id, u.username, t.kind, t.name, t.created_at, t.expires_at, t.revoked_at"
        " FROM api_tokens t JOIN users u ON u.id = t.user_id"
        " WHERE (%(all)s OR t.user_id = %(me)s) AND (NOT %(active)s OR (t.revoked_at IS NULL AND t.expires_at > now()))"
        " ORDER BY t.id DESC LIMIT 1000",
        {"all": principal.role == "admin", "me": principal.user_id, "active": active},
    )
    return [TokenInfo(**row) for row in await cur.fetchall()]


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke a token (one's own; admins: anyone's)")
async def revoke(token_id: int, principal: Anyone, db: Db) -> Response:
    cur = await db.execute(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())"
        " WHERE id = %(id)s AND (%(all)s OR user_id = %(me)s) RETURNING id",
        {"id": token_id, "all": principal.role == "admin", "me": principal.user_id},
    )
    if await cur.fetchone() is None:
        raise Problem(404, f"no token {token_id} of yours")
    await audit.record(db, principal.username, "token.revoke", str(token_id), {})
    return Response(status_code=204)
