"""Dependencies every route reuses: the database, the caller, and role and scope checks, so no
route can forget them."""

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection

from ioc_api.problems import Problem
from ioc_api.security import Principal, principal_for

_bearer = HTTPBearer(auto_error=False, description="A token from POST /api/v1/auth/login or the CLI.")


async def database(request: Request) -> AsyncIterator[AsyncConnection]:
    """One pooled connection per request, committed when the route returns, rolled back if it
    raises."""
    async with request.app.state.pool.connection() as conn:
        yield conn


# scope="function": the commit happens before the response leaves, so a client that acts on an
# answer (a new token, a registered sensor) always finds what it was told.
Db = Annotated[AsyncConnection, Depends(database, scope="function")]


async def current_principal(
    db: Db, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None:
        raise Problem(401, "a bearer token is required", {"WWW-Authenticate": "Bearer"})
    principal = await principal_for(db, credentials.credentials)
    if principal is None:
        raise Problem(401, "the token is unknown, expired or revoked", {"WWW-Authenticate": "Bearer"})
    return principal


def require(*roles: str) -> Callable:
    """A dependency that admits only the given roles."""

    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in roles:
            raise Problem(403, f"role {principal.role!r} may not do this")
        return principal

    return check


OPERATORS = ("admin", "city_operator", "ward_operator")
STAFF = ("admin", "engineer", "city_operator", "ward_operator")
ENGINEERS = ("admin", "engineer")

Staff = Annotated[Principal, Depends(require(*STAFF))]
Operator = Annotated[Principal, Depends(require(*OPERATORS))]
Engineer = Annotated[Principal, Depends(require(*ENGINEERS))]
Anyone = Annotated[Principal, Depends(current_principal)]


def check_unit(principal: Principal, unit_id: str | None) -> None:
    """A unit named in a request must be one the caller may see."""
    if unit_id is not None and not principal.sees(unit_id):
        raise Problem(403, f"unit {unit_id!r} is outside this token's scope")
