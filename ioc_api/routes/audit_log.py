"""The audit log, for admins: every state change made through the API or the CLI."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from psycopg.rows import dict_row

from ioc_api.deps import Db, require
from ioc_api.models import AuditEntry, AuditPage
from ioc_api.problems import PROBLEM_RESPONSES

router = APIRouter(tags=["audit"], responses=PROBLEM_RESPONSES, dependencies=[Depends(require("admin"))])


@router.get("/audit", summary="Who changed what, and when: newest first (admins)")
async def audit_log(
    db: Db,
    actor: Annotated[str | None, Query(max_length=200, description="Exactly this actor.")] = None,
    action: Annotated[str | None, Query(max_length=100, description="An action, or its prefix: `alert.`.")] = None,
    target: Annotated[str | None, Query(max_length=200)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="Entries with a smaller id.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    cur = db.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT id, time, actor, action, target, details FROM audit_log"
        " WHERE (%(actor)s::text IS NULL OR actor = %(actor)s)"
        " AND (%(action)s::text IS NULL OR action = %(action)s"
        "      OR (right(%(action)s, 1) = '.' AND starts_with(action, %(action)s)))"
        " AND (%(target)s::text IS NULL OR target = %(target)s)"
        " AND (%(since)s::timestamptz IS NULL OR time >= %(since)s)"
        " AND (%(until)s::timestamptz IS NULL OR time < %(until)s)"
        " AND (%(before)s::bigint IS NULL OR id < %(before)s)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {"actor": actor, "action": action, "target": target, "since": since, "until": until, "before": before}
        | {"limit": limit},
    )
    entries = [AuditEntry(**row) for row in await cur.fetchall()]
    return AuditPage(entries=entries, next=entries[-1].id if len(entries) == limit else None)
