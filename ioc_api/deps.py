"""Dependencies every route reuses: the database, the caller, and role and scope checks, so no
route can forget them.

A unit's scope is enforced by the database itself (row-level security, migration
``0009_row_scope.sql``): the policies on every table that carries a unit read the setting
``ioc.units`` of the connection, which the API sets from the caller for each request. A route's
query sees only the caller's units whatever it says, and a connection whose scope was not set
sees none (the pool sets the empty scope on each new connection and again on each one returned):

- a request's connection (``Db``) gets its caller's scope in ``current_principal``; a route
  without a caller reads open data through ``OpenDb`` (every unit);
- history (``HistoryDb``) is read on a connection of the read pool, with the caller's scope;
- anything else in the API that takes a pooled connection (``/latest``'s shared bodies,
  ``/health``, ``/units``, the live WebSocket) takes it from ``scoped_connection``, naming its scope.

The scope is a session setting, not a transaction's: a ``commit()`` in the middle of a route keeps
it (a rollback of the request's first transaction returns it to the empty scope). Ingest, the CLI
and vision connect as the same role without ever setting it, and see every row.
"""

import enum
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Final

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ioc_api.problems import Problem
from ioc_api.security import Principal, principal_for

_bearer = HTTPBearer(auto_error=False, description="A token from POST /api/v1/auth/login or the CLI.")


class EveryUnit(enum.Enum):
    """The scope of city roles and open data: every unit, and the rows of no unit."""

    EVERY_UNIT = "*"


EVERY_UNIT: Final = EveryUnit.EVERY_UNIT
NO_UNIT: Final[frozenset[str]] = frozenset()  # sees no row of any unit (tokens and users are not scoped)
Scope = frozenset[str] | EveryUnit


def scope_of(principal: Principal) -> Scope:
    """The rows a caller may see: a ward operator's units, or every unit."""
    return EVERY_UNIT if principal.scope is None else principal.scope


async def set_scope(conn: AsyncConnection, scope: Scope) -> None:
    """Hold ``conn`` to ``scope`` until it is set again or the connection goes back to the pool."""
    if scope is EVERY_UNIT:
        units = None
    elif isinstance(scope, frozenset):
        units = sorted(scope)
    else:  # None is not a scope: the caller says which one it means
        raise TypeError(f"a scope is a frozenset of unit ids or EVERY_UNIT, not {scope!r}")
    # PostgreSQL writes the array literal: no quoting here.
    await conn.execute("SELECT set_config('ioc.units', coalesce(%s::text[]::text, '*'), false)", (units,))


async def clear_scope(conn: AsyncConnection) -> None:
    """The pool's ``configure`` and ``reset``: a connection between requests sees no scoped row.
    In autocommit, so that it is one round trip and no transaction can undo it."""
    autocommit = conn.autocommit
    await conn.set_autocommit(True)
    try:
        await conn.execute("SELECT set_config('ioc.units', '', false)")
    finally:
        await conn.set_autocommit(autocommit)


@asynccontextmanager
async def scoped_connection(pool: AsyncConnectionPool, scope: Scope) -> AsyncIterator[AsyncConnection]:
    """A pooled connection held to ``scope``, for work outside a request's ``Db``; committed when
    the block ends, rolled back if it raises (as ``pool.connection()``). For example
    ``async with scoped_connection(app.state.pool, scope_of(principal)) as conn: ...``"""
    async with pool.connection() as conn:
        autocommit = conn.autocommit
        await conn.set_autocommit(True)  # outside any transaction: the block's rollbacks keep it
        try:
            await set_scope(conn, scope)
        finally:
            await conn.set_autocommit(autocommit)
        yield conn


async def database(request: Request) -> AsyncIterator[AsyncConnection]:
    """One pooled connection per request, committed when the route returns, rolled back if it
    raises. It sees no scoped row until ``current_principal`` (or ``OpenDb``) sets its scope."""
    async with request.app.state.pool.connection() as conn:
        yield conn


# scope="function": the commit happens before the response leaves, so a client that acts on an
# answer (a new token, a registered sensor) always finds what it was told.
Db = Annotated[AsyncConnection, Depends(database, scope="function")]


async def open_database(db: Db) -> AsyncConnection:
    """The request's connection for open data (no token): every unit."""
    await set_scope(db, EVERY_UNIT)
    return db


OpenDb = Annotated[AsyncConnection, Depends(open_database)]


async def current_principal(
    db: Db, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller, whose scope the request's connection takes from here on."""
    if credentials is None:
        raise Problem(401, "a bearer token is required", {"WWW-Authenticate": "Bearer"})
    principal = await principal_for(db, credentials.credentials)
    if principal is None:
        raise Problem(401, "the token is unknown, expired or revoked", {"WWW-Authenticate": "Bearer"})
    if principal.role == "partner":
        raise Problem(403, "a partner's token is for NGSI-LD (/ngsi-ld/v1) alone")
    await set_scope(db, scope_of(principal))
    return principal


async def history_database(
    request: Request, db: Db, principal: Annotated[Principal, Depends(current_principal)]
) -> AsyncIterator[AsyncConnection]:
    """A connection to read history from, held to the caller's scope: one of the read pool, a
    streaming replica's in cluster mode (``IOC_DATABASE_READ_URL``), else the request's own."""
    if request.app.state.read_pool is request.app.state.pool:
        yield db
        return
    async with scoped_connection(request.app.state.read_pool, scope_of(principal)) as conn:
        yield conn


HistoryDb = Annotated[AsyncConnection, Depends(history_database, scope="function")]


def open_data_only(principal: Principal) -> bool:
    """Roles that read the open subset alone: not partners' data, which the city shares with its
    staff."""
    return principal.role in ("public", "hotline_operator")


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
    """A unit named in a request must be one the caller may see: a 403 says so, where the rows
    alone (held to the caller's scope by the database) would only come back empty."""
    if unit_id is not None and not principal.sees(unit_id):
        raise Problem(403, f"unit {unit_id!r} is outside this token's scope")
