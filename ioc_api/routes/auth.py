"""Log in for a bearer token, and see who a token belongs to."""

from datetime import timedelta

from fastapi import APIRouter, Request

from ioc_api.deps import Anyone, Db
from ioc_api.models import Login, TokenOut
from ioc_api.problems import PROBLEM_RESPONSES, Problem
from ioc_api.security import issue_token, verify_password

router = APIRouter(prefix="/auth", tags=["auth"], responses=PROBLEM_RESPONSES)


@router.post("/login", summary="Exchange a username and password for a bearer token")
async def login(body: Login, db: Db, request: Request) -> TokenOut:
    cur = await db.execute(
        "SELECT id, password_hash, role, units FROM users WHERE username = %s AND NOT disabled", (body.username,)
    )
    row = await cur.fetchone()
    if not verify_password(row[1] if row else None, body.password):
        raise Problem(401, "unknown user or wrong password", {"WWW-Authenticate": "Bearer"})
    user_id, _, role, units = row
    hours = request.app.state.settings.session_hours
    token = await issue_token(db, user_id, "session", timedelta(hours=hours), "login")
    return TokenOut(
        access_token=token,
        expires_in=int(hours * 3600),
        role=role,
        units=sorted(units) if role == "ward_operator" else None,
    )


@router.get("/me", summary="The user and scope behind the token")
async def me(principal: Anyone) -> dict:
    return {
        "username": principal.username,
        "role": principal.role,
        "units": principal.units_filter,
    }
