"""Partners provide data through NGSI-LD: create, replace, merge, append to and delete their
entities, one at a time or in batches, each partner in its own tenant (``NGSILD-Tenant``).

An entity is a sensor of the registry plus the attributes that are not numbers; its numbers are
published to the broker as the sensor's readings (QoS 1, answered once the broker has them), so
ingest validates, stores, rolls up, runs the rules on them and dead-letters what it refuses, as it
does for every reading. The answer comes once the registry is committed and the broker holds the
readings; a 503 says the readings were not taken and the request may simply be sent again.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import psycopg
from fastapi import APIRouter, Depends, Request, Response
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from ioc_api.bus import BrokerUnavailable
from ioc_api.deps import Db
from ioc_api.ngsild.protocol import (
    JSON,
    JSON_LD,
    MERGE_PATCH,
    NgsiError,
    bad_request,
    body_terms,
    not_found,
    optional_principal,
    problem_body,
    read_body,
)
from ioc_api.routes.ngsild import _check_uri
from ioc_api.security import Principal
from ioc_core import topics
from ioc_core.loops import record_failure
from ioc_core.ngsild.jsonld import Translation
from ioc_core.ngsild.writes import EntityError, Parsed, attribute_of, kind_of, parse, sensor_id_for

router = APIRouter(prefix="/ngsi-ld/v1", tags=["ngsi-ld"])
MAX_BATCH = 1000


async def partner(request: Request, principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    """Only a partner writes, and only in its own tenant."""
    if principal is None:
        raise NgsiError(
            401, "Unauthorized", "a partner's token is needed to provide data", {"WWW-Authenticate": "Bearer"}
        )
    if principal.role != "partner" or not principal.tenant:
        raise NgsiError(403, "AccessDenied", "entities are provided by partners, each in its own tenant")
    asked = request.headers.get("ngsild-tenant")
    if asked is not None and asked != principal.tenant:
        raise NgsiError(403, "AccessDenied", f"this token provides data in tenant {principal.tenant!r} only")
    return principal


Partner = Annotated[Principal, Depends(partner)]


async def _parse(request: Request, media: str, body: Any, **kwargs) -> Parsed:
    terms = await body_terms(request, media, body)
    try:
        return parse(body, terms, **kwargs)
    except EntityError as exc:
        raise bad_request(str(exc)) from exc


def _update_result(terms: Translation, updated: set[str], refused: list[str], reason: str) -> Response:
    """204 when every attribute was written; 207 naming those that were not."""
    if not refused:
        return Response(status_code=204)
    body = {
        "updated": sorted(terms.to_caller(n) for n in updated),
        "notUpdated": [{"attributeName": terms.to_caller(n), "reason": reason} for n in refused],
    }
    return Response(orjson.dumps(body), status_code=207, media_type=JSON)


async def _held(db: AsyncConnection, tenant: str, entity_id: str) -> tuple[str, str, dict] | None:
    """(sensor id, type, kept attributes) of a partner's entity, locked for this request."""
    cur = await db.execute(
        "SELECT sensor_id, type, attrs FROM ngsi_entities WHERE tenant = %s AND id = %s FOR UPDATE", (tenant, entity_id)
    )
    return await cur.fetchone()


# A new entity's sensor; or the row ingest registered itself when readings of a deleted entity of the
# same id were still under way: taken over. Another tenant's, or the city's, never.
_CLAIM_SENSOR = (
    "INSERT INTO sensors (id, kind, name, lat, lon, tenant, registered) VALUES (%s, %s, %s, %s, %s, %s, true)"
    " ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, name = EXCLUDED.name, lat = EXCLUDED.lat,"
    " lon = EXCLUDED.lon, unit_id = NULL, tenant = EXCLUDED.tenant, registered = true"
    " WHERE NOT sensors.registered AND sensors.tenant IS NULL RETURNING id"
)


async def _store(db: AsyncConnection, tenant: str, entity: Parsed, static: dict, sensor_id: str | None) -> str:
    """Insert or update the sensor and the entity's row; the sensor's id."""
    name = static.get("name", {}).get("value")
    name = name if isinstance(name, str) else None
    lon, lat = entity.point if entity.point else (None, None)
    if sensor_id is None:
        sensor_id = sensor_id_for(tenant, entity.id)
        cur = await db.execute(_CLAIM_SENSOR, (sensor_id, kind_of(entity.type), name, lat, lon, tenant))
        if await cur.fetchone() is None:
            raise NgsiError(409, "AlreadyExists", f"the registry has a sensor {sensor_id!r} that is not this entity's")
        await db.execute(
            "INSERT INTO ngsi_entities (tenant, id, type, sensor_id, attrs) VALUES (%s, %s, %s, %s, %s)",
            (tenant, entity.id, entity.type, sensor_id, Jsonb(static)),
        )
        return sensor_id
    if entity.point is not None:  # placed anew: the database assigns the unit that holds it
        await db.execute("UPDATE sensors SET lat = %s, lon = %s, unit_id = NULL WHERE id = %s", (lat, lon, sensor_id))
    if name is not None:
        await db.execute("UPDATE sensors SET name = %s WHERE id = %s", (name, sensor_id))
    await db.execute(
        "UPDATE ngsi_entities SET attrs = %s, modified_at = now() WHERE sensor_id = %s", (Jsonb(static), sensor_id)
    )
    return sensor_id


async def _forget_values(db: AsyncConnection, sensor_id: str, metrics: set[str] | None) -> None:
    """Values taken off an entity (a replace, a deleted attribute) leave its latest values; their
    history stays."""
    if metrics is None:
        await db.execute("DELETE FROM latest WHERE sensor_id = %s", (sensor_id,))
    elif metrics:
        await db.execute("DELETE FROM latest WHERE sensor_id = %s AND metric = ANY(%s)", (sensor_id, list(metrics)))


async def _publish(request: Request, sensor_id: str, entity: Parsed) -> None:
    payloads = entity.payloads()
    if not payloads:
        return
    try:
        await request.app.state.bus.publish(topics.sensor_readings(sensor_id), orjson.dumps(payloads))
    except BrokerUnavailable as exc:
        raise NgsiError(503, "InternalError", f"{exc}; the readings were not taken: send them again") from exc


async def _written(request: Request) -> None:
    """A partner reads what it wrote from its next request on. The write is done whatever this
    rebuild meets: a failure is logged, and the next request's rebuild shows it."""
    try:
        await request.app.state.entities.snapshot(fresh=True)
    except Exception as exc:
        record_failure("ngsild-entities", exc)


class Write:
    """One entity's write in the request's transaction; the readings go out after the commit."""

    def __init__(self, request: Request, db: AsyncConnection, tenant: str):
        self.request, self.db, self.tenant = request, db, tenant
        self.pending: list[tuple[str, Parsed, bool]] = []  # (sensor, entity, created by this request)

    async def create(self, entity: Parsed) -> None:
        if await _held(self.db, self.tenant, entity.id) is not None:
            raise NgsiError(409, "AlreadyExists", f"entity {entity.id!r} exists")
        sensor_id = await _store(self.db, self.tenant, entity, entity.static, None)
        self.pending.append((sensor_id, entity, True))

    async def replace(self, entity: Parsed, held: tuple[str, str, dict]) -> None:
        sensor_id, entity_type, _ = held
        if entity.type is not None and entity.type != entity_type:
            raise bad_request(f"entity {entity.id!r} is a {entity_type}; its type does not change")
        await _forget_values(self.db, sensor_id, None)
        await _store(self.db, self.tenant, entity, entity.static, sensor_id)
        self.pending.append((sensor_id, entity, False))

    async def merge(self, entity: Parsed, held: tuple[str, str, dict], overwrite: bool = True) -> list[str]:
        """Attributes added or changed, those set to null removed; the names it left alone."""
        sensor_id, entity_type, static = held
        if entity.type is not None and entity.type != entity_type:
            raise bad_request(f"entity {entity.id!r} is a {entity_type}; its type does not change")
        kept = dict(static)
        skipped = []
        for name, attr in entity.static.items():
            if overwrite or name not in kept:
                kept[name] = attr
            else:
                skipped.append(name)
        for name in entity.deleted:
            kept.pop(name, None)
        await _forget_values(self.db, sensor_id, entity.deleted)
        await _store(self.db, self.tenant, entity, kept, sensor_id)
        self.pending.append((sensor_id, entity, False))
        return skipped

    async def delete(self, entity_id: str) -> None:
        held = await _held(self.db, self.tenant, entity_id)
        if held is None:
            raise not_found(f"no entity {entity_id!r} in tenant {self.tenant!r}")
        await _forget_values(self.db, held[0], None)
        await self.db.execute("DELETE FROM sensors WHERE id = %s", (held[0],))  # its row goes with it

    async def finish(self) -> None:
        """Commit, then publish the readings. If the broker does not take them, the entities this
        request created are undone, so that sending the request again creates them again."""
        await self.db.commit()
        for done, (sensor_id, entity, _) in enumerate(self.pending):
            try:
                await _publish(self.request, sensor_id, entity)
            except NgsiError:
                undone = [s for s, _, created in self.pending[done:] if created]
                if undone:
                    await self.db.execute("DELETE FROM sensors WHERE id = ANY(%s)", (undone,))
                    await self.db.commit()
                raise
        await _written(self.request)


async def _attributes(db: AsyncConnection, held: tuple[str, str, dict]) -> set[str]:
    """The attributes an entity has: those kept, and those its stored values show."""
    sensor_id, entity_type, static = held
    kind = kind_of(entity_type)
    cur = await db.execute("SELECT metric FROM latest WHERE sensor_id = %s", (sensor_id,))
    return set(static) | {attribute_of(kind, metric) for (metric,) in await cur.fetchall()}


async def _existing(db: AsyncConnection, tenant: str, entity_id: str) -> tuple[str, str, dict]:
    _check_uri(entity_id)
    held = await _held(db, tenant, entity_id)
    if held is None:
        raise not_found(f"no entity {entity_id!r} in tenant {tenant!r}")
    return held


@router.post("/entities", status_code=201, summary="Create an entity (partners, in their tenant)")
async def create_entity(request: Request, principal: Partner, db: Db) -> Response:
    media, body = await read_body(request)
    entity = await _parse(request, media, body)
    write = Write(request, db, principal.tenant)
    await write.create(entity)
    await write.finish()
    return Response(status_code=201, headers={"Location": f"/ngsi-ld/v1/entities/{entity.id}"})


@router.put("/entities/{entity_id:path}", status_code=204, summary="Replace an entity")
async def replace_entity(entity_id: str, request: Request, principal: Partner, db: Db) -> Response:
    media, body = await read_body(request)
    held = await _existing(db, principal.tenant, entity_id)
    entity = await _parse(request, media, {"id": entity_id, **body} if isinstance(body, dict) else body)
    if entity.id != entity_id:
        raise bad_request("the body's id is not the entity's")
    write = Write(request, db, principal.tenant)
    await write.replace(entity, held)
    await write.finish()
    return Response(status_code=204)


@router.patch("/entities/{entity_id:path}", status_code=204, summary="Merge into an entity (merge-patch)")
async def merge_entity(entity_id: str, request: Request, principal: Partner, db: Db) -> Response:
    if entity_id.endswith("/attrs"):
        return await update_attrs(entity_id.removesuffix("/attrs"), request, principal, db)
    media, body = await read_body(request, (JSON, JSON_LD, MERGE_PATCH))
    held = await _existing(db, principal.tenant, entity_id)
    entity = await _parse(request, JSON if media == MERGE_PATCH else media, body, whole=False, kind=kind_of(held[1]))
    entity.id = entity_id
    write = Write(request, db, principal.tenant)
    await write.merge(entity, held)
    await write.finish()
    return Response(status_code=204)


async def update_attrs(entity_id: str, request: Request, principal: Principal, db: AsyncConnection) -> Response:
    """Update only the attributes the entity has; a 207 names those it has not."""
    media, body = await read_body(request)
    held = await _existing(db, principal.tenant, entity_id)
    terms = await body_terms(request, media, body)
    has = await _attributes(db, held)
    if isinstance(body, dict):
        refused = sorted({terms.to_ioc(k) for k in body if k not in ("@context", "id", "type")} - has)
        body = {k: v for k, v in body.items() if terms.to_ioc(k) not in refused}
    entity = await _parse(request, media, body, whole=False, kind=kind_of(held[1]))
    entity.id = entity_id
    write = Write(request, db, principal.tenant)
    await write.merge(entity, held)
    await write.finish()
    return _update_result(terms, entity.names, refused, "the entity has no such attribute")


@router.post("/entities/{entity_id:path}", status_code=204, summary="Append attributes to an entity")
async def append_attrs(entity_id: str, request: Request, principal: Partner, db: Db) -> Response:
    if not entity_id.endswith("/attrs"):
        raise NgsiError(405, "OperationNotSupported", "POST goes to /entities or /entities/{id}/attrs")
    entity_id = entity_id.removesuffix("/attrs")
    media, body = await read_body(request)
    held = await _existing(db, principal.tenant, entity_id)
    entity = await _parse(request, media, body, whole=False, kind=kind_of(held[1]))
    entity.id = entity_id
    options = {o for raw in request.query_params.getlist("options") for o in raw.split(",")}
    write = Write(request, db, principal.tenant)
    skipped = await write.merge(entity, held, overwrite="noOverwrite" not in options)
    await write.finish()
    terms = await body_terms(request, media, body)
    return _update_result(terms, entity.names - set(skipped), skipped, "noOverwrite: the entity has it")


@router.delete("/entities/{entity_id:path}", status_code=204, summary="Delete an entity, or one attribute")
async def delete_entity(entity_id: str, request: Request, principal: Partner, db: Db) -> Response:
    if "/attrs/" in entity_id:
        entity_id, name = entity_id.split("/attrs/", 1)
        held = await _existing(db, principal.tenant, entity_id)
        terms = await body_terms(request, JSON, None)
        entity = Parsed(entity_id, None, deleted={terms.to_ioc(name)})
        if terms.to_ioc(name) not in await _attributes(db, held):
            raise not_found(f"entity {entity_id!r} has no attribute {name!r}")
        write = Write(request, db, principal.tenant)
        await write.merge(entity, held)
        await write.finish()
        return Response(status_code=204)
    _check_uri(entity_id)
    write = Write(request, db, principal.tenant)
    await write.delete(entity_id)
    await write.finish()
    return Response(status_code=204)


async def _batch(request: Request) -> tuple[str, list]:
    media, body = await read_body(request)
    if not isinstance(body, list) or not body:
        raise bad_request("a batch is a non-empty JSON array")
    if len(body) > MAX_BATCH:
        raise bad_request(f"a batch holds {MAX_BATCH} entities at most")
    return media, body


def _error_of(entity: Any, exc: NgsiError) -> dict[str, Any]:
    entity_id = entity.get("id") if isinstance(entity, dict) else entity
    return {
        "entityId": entity_id if isinstance(entity_id, str) else None,
        "error": problem_body(exc.status, exc.kind, exc.detail),
    }


async def _each(request: Request, db: AsyncConnection, items: list, operation) -> tuple[list[str], list[dict]]:
    """Each entity in its own savepoint: one refused leaves the others written."""
    done, errors = [], []
    for item in items:
        try:
            async with db.transaction():
                done.append(await operation(item))
        except NgsiError as exc:
            errors.append(_error_of(item, exc))
        except (psycopg.DataError, psycopg.IntegrityError) as exc:  # what the database refuses of this one
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            errors.append(_error_of(item, bad_request(f"the database refused it: {reason}")))
    return done, errors


def _batch_answer(done: list[str], errors: list[dict], created: bool) -> Response:
    if errors:
        return Response(orjson.dumps({"success": done, "errors": errors}), status_code=207, media_type=JSON)
    if created:
        return Response(orjson.dumps(done), status_code=201, media_type=JSON)
    return Response(status_code=204)


@router.post("/entityOperations/{operation}", summary="Batch create, upsert, update or delete (207 names the refused)")
async def batch(operation: str, request: Request, principal: Partner, db: Db) -> Response:
    if operation not in ("create", "upsert", "update", "delete"):
        raise not_found(f"no entity operation {operation!r}")
    media, items = await _batch(request)
    write = Write(request, db, principal.tenant)
    options = {o for raw in request.query_params.getlist("options") for o in raw.split(",")}
    created = False

    async def one(item: Any) -> str:
        nonlocal created
        if operation == "delete":
            if not isinstance(item, str):
                raise bad_request("a batch delete lists entity ids")
            _check_uri(item)
            await write.delete(item)
            return item
        entity = await _parse(request, media, item)
        held = await _held(db, principal.tenant, entity.id)
        if operation == "create" or (operation == "upsert" and held is None):
            await write.create(entity)
            created = True
        elif held is None:
            raise not_found(f"no entity {entity.id!r} in tenant {principal.tenant!r}")
        elif operation == "upsert" and "update" not in options:
            await write.replace(entity, held)
        else:
            await write.merge(entity, held, overwrite="noOverwrite" not in options)
        return entity.id

    done, errors = await _each(request, db, items, one)
    await write.finish()
    return _batch_answer(done, errors, created or operation == "create")
