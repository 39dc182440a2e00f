"""Dead letters: what ingest refused, with the reason, for engineers."""

from typing import Annotated

from fastapi import APIRouter, Query
from psycopg.rows import dict_row

from ioc_api.deps import Db, Engineer
from ioc_api.models import DeadLetter
from ioc_api.problems import PROBLEM_RESPONSES

router = APIRouter(tags=["dead letters"], responses=PROBLEM_RESPONSES)


@router.get("/dead-letters", summary="Refused messages, newest first")
async def list_dead_letters(
    db: Db,
    principal: Engineer,
    reason: Annotated[str | None, Query(description="A reason code, such as out_of_range.")] = None,
    topic: str | None = None,
    before: Annotated[int | None, Query(description="Cursor: the last id of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeadLetter]:
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT id, received_at, topic, reason, length(payload) AS payload_size,"
            " substring(payload FROM 1 FOR 4096) AS head"
            " FROM dead_letters WHERE (%(reason)s::text IS NULL OR starts_with(reason, %(reason)s || ':'))"
            " AND (%(topic)s::text IS NULL OR topic = %(topic)s) AND (%(before)s::bigint IS NULL OR id < %(before)s)"
            " ORDER BY id DESC LIMIT %(limit)s",
            {"reason": reason, "topic": topic, "before": before, "limit": limit},
        )
        rows = await cur.fetchall()
    return [_dead_letter(r) for r in rows]


def _dead_letter(row: dict) -> DeadLetter:
    head = bytes(row.pop("head"))
    return DeadLetter(**row, payload_text=head.decode("utf-8", "replace"))
