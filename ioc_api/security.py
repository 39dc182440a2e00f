"""Passwords, bearer tokens and the principal behind a request.

Tokens are random and opaque; only their SHA-256 digest is stored, so a copy of the database
gives nobody a way in. A login gets a session token; services get long-lived service tokens from
the CLI. Both can expire and be revoked.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from psycopg import AsyncConnection

ROLES = ("admin", "engineer", "city_operator", "ward_operator", "hotline_operator", "public", "partner")
_hasher = PasswordHasher()
# Verifying against this keeps the time of a login for an unknown user like that of a known one.
_DUMMY_HASH = _hasher.hash("not a password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    username: str
    role: str
    scope: frozenset[str] | None  # the units a ward operator may see; None: every unit
    token_id: int | None = None  # the token of this request
    tenant: str | None = None  # a partner's NGSI-LD tenant

    def sees(self, unit_id: str | None) -> bool:
        return self.scope is None or unit_id in self.scope

    @property
    def units_filter(self) -> list[str] | None:
        """The units as a sorted list, None for every unit: for answers (the database holds the rows
        of a request to its scope by itself, ``ioc_api/deps.py``)."""
        return None if self.scope is None else sorted(self.scope)


async def issue_token(conn: AsyncConnection, user_id: int, kind: str, lifetime: timedelta, name: str | None) -> str:
    token = "ioc_" + secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO api_tokens (user_id, digest, kind, name, expires_at) VALUES (%s, %s, %s, %s, now() + %s)",
        (user_id, digest(token), kind, name, lifetime),
    )
    return token


async def principal_for(conn: AsyncConnection, token: str) -> Principal | None:
    cur = await conn.execute(
        "SELECT u.id, u.username, u.role, u.units, t.id, u.tenant FROM api_tokens t JOIN users u ON u.id = t.user_id"
        " WHERE t.digest = %s AND t.revoked_at IS NULL AND t.expires_at > now() AND NOT u.disabled",
        (digest(token),),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    user_id, username, role, units, token_id, tenant = row
    scope = frozenset(units) if role == "ward_operator" else None
    return Principal(user_id, username, role, scope, token_id, tenant)
