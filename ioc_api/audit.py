"""The audit log: who changed what, and when, for every state change made through the API."""

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb


async def record(db: AsyncConnection, actor: str, action: str, target: str, details: dict) -> None:
    """Written in the caller's transaction, so a change and its record stand or fall together."""
    await db.execute(
        "INSERT INTO audit_log (actor, action, target, details) VALUES (%s, %s, %s, %s)",
        (actor, action, target, Jsonb(details)),
    )
