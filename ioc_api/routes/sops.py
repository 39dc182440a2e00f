"""SOPs through the API: read by the staff, a new version imported (YAML or JSON) by engineers and
admins, any version exported as YAML. An incident keeps the version it opened with."""

from typing import Annotated

import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from psycopg.rows import dict_row
from pydantic import ValidationError

from ioc_api import audit
from ioc_api.deps import Db, Engineer, Staff
from ioc_api.problems import PROBLEM_RESPONSES, Problem
from ioc_core.sops import Sop

router = APIRouter(tags=["SOPs"], responses=PROBLEM_RESPONSES)
_COLUMNS = "type, version, name_vi, name_en, source, match, steps"
_MAX_BYTES = 200_000


def _sop(row: dict) -> Sop:
    return Sop(**row)


@router.get("/sops", summary="Each type's current SOP")
async def list_sops(db: Db, principal: Staff) -> list[Sop]:
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT DISTINCT ON (type) {_COLUMNS} FROM sops ORDER BY type, version DESC")
        return [_sop(r) for r in await cur.fetchall()]


async def _one(db: Db, sop_type: str, version: int | None) -> Sop:
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM sops WHERE type = %s AND (%s::int IS NULL OR version = %s)"
            " ORDER BY version DESC LIMIT 1",
            (sop_type, version, version),
        )
        row = await cur.fetchone()
    if row is None:
        raise Problem(404, f"no SOP {sop_type!r}" + (f" version {version}" if version else ""))
    return _sop(row)


@router.get("/sops/{sop_type}", summary="An SOP: its current version, or the one asked for")
async def get_sop(
    sop_type: str, db: Db, principal: Staff, version: Annotated[int | None, Query(ge=1, le=100_000)] = None
) -> Sop:
    return await _one(db, sop_type, version)


@router.get("/sops/{sop_type}/yaml", summary="An SOP as YAML, for editing and importing again")
async def export_sop(
    sop_type: str, db: Db, principal: Staff, version: Annotated[int | None, Query(ge=1, le=100_000)] = None
) -> Response:
    sop = await _one(db, sop_type, version)
    return Response(sop.to_yaml(), media_type="application/yaml")


@router.post(
    "/sops",
    status_code=201,
    summary="Import an SOP (YAML or JSON): a new version of its type",
    openapi_extra={"requestBody": {"required": True, "content": {"application/yaml": {"schema": {"type": "string"}}}}},
)
async def import_sop(request: Request, db: Db, principal: Engineer) -> Sop:
    body = await request.body()
    if len(body) > _MAX_BYTES:
        raise Problem(413, f"an SOP is {_MAX_BYTES:,} bytes at most")
    try:
        sop = Sop.model_validate(yaml.safe_load(body))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise Problem(422, f"not YAML: {str(exc).splitlines()[0]}") from None
    except ValidationError as exc:
        raise Problem(422, f"not an SOP: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
    cur = await db.execute(
        "INSERT INTO sops (type, version, name_vi, name_en, source, match, steps, created_by)"
        " SELECT %s, coalesce(max(version), 0) + 1, %s, %s, %s, %s, %s, %s FROM sops WHERE type = %s RETURNING version",
        (
            sop.type,
            sop.name_vi,
            sop.name_en,
            sop.source,
            sop.match.model_dump_json(),
            "[" + ",".join(s.model_dump_json() for s in sop.steps) + "]",
            principal.username,
            sop.type,
        ),
    )
    version = (await cur.fetchone())[0]
    await audit.record(db, principal.username, "sop.import", f"{sop.type} v{version}", {"steps": len(sop.steps)})
    return sop.model_copy(update={"version": version})
