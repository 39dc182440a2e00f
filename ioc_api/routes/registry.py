"""Sensors and cameras: listed by anyone on staff within their units, changed by engineers."""

import re
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from ioc_api import audit
from ioc_api.deps import Db, Engineer, Staff, check_unit
from ioc_api.models import Camera, CameraIn, CameraPatch, Sensor, SensorIn, SensorPatch
from ioc_api.problems import PROBLEM_RESPONSES, Problem

router = APIRouter(tags=["registry"], responses=PROBLEM_RESPONSES)

_SENSOR = "id, kind, name, unit_id, lat, lon, metrics, interval_s, gateway_id, registered, status, last_seen"
_CAMERA = (
    "id, name, unit_id, lat, lon, stream_url, analytics, status, last_seen,"
    " (SELECT coalesce(json_object_agg(metric, value), '{}') FROM latest WHERE sensor_id = cameras.id) AS counts"
)
_SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}\.jpg$")


async def _check_unit_exists(db: Db, unit_id: str | None) -> None:
    if unit_id is not None and not await (await db.execute("SELECT 1 FROM units WHERE id = %s", (unit_id,))).fetchone():
        raise Problem(422, f"unit {unit_id!r} does not exist")


@router.get("/sensors", summary="Sensors, filtered by unit and kind")
async def list_sensors(
    db: Db,
    principal: Staff,
    unit: str | None = None,
    kind: str | None = None,
    registered: bool | None = Query(None, description="false: the sensors ingest registered on its own."),
    limit: Annotated[int, Query(ge=1, le=20000)] = 1000,
    after: str | None = Query(None, description="Cursor: the last id of the previous page."),
) -> list[Sensor]:
    check_unit(principal, unit)
    async with db.cursor(row_factory=class_row(Sensor)) as cur:
        await cur.execute(
            f"SELECT {_SENSOR} FROM sensors WHERE (%(unit)s::text IS NULL OR unit_id = %(unit)s)"
            " AND (%(kind)s::text IS NULL OR kind = %(kind)s)"
            " AND (%(reg)s::bool IS NULL OR registered = %(reg)s) AND (%(after)s::text IS NULL OR id > %(after)s)"
            " ORDER BY id LIMIT %(limit)s",
            {
                "unit": unit,
                "kind": kind,
                "reg": registered,
                "after": after,
                "limit": limit,
            },
        )
        return await cur.fetchall()


async def _sensor(db: Db, sensor_id: str) -> Sensor:
    """The sensor, if the caller's scope holds it (the database sees to that)."""
    async with db.cursor(row_factory=class_row(Sensor)) as cur:
        await cur.execute(f"SELECT {_SENSOR} FROM sensors WHERE id = %s", (sensor_id,))
        sensor = await cur.fetchone()
    if sensor is None:
        raise Problem(404, f"no sensor {sensor_id!r}")
    return sensor


@router.get("/sensors/{sensor_id}", summary="One sensor")
async def get_sensor(sensor_id: str, db: Db, principal: Staff) -> Sensor:
    return await _sensor(db, sensor_id)


@router.post("/sensors", status_code=201, summary="Register a sensor (or one ingest registered on its own)")
async def create_sensor(body: SensorIn, db: Db, principal: Engineer) -> Sensor:
    await _check_unit_exists(db, body.unit_id)
    metrics = Jsonb({k: v.model_dump(exclude_none=True) for k, v in body.metrics.items()})
    cur = await db.execute(
        "INSERT INTO sensors (id, kind, name, lat, lon, unit_id, metrics, interval_s, gateway_id, registered)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, true)"
        " ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, name = EXCLUDED.name, lat = EXCLUDED.lat,"
        " lon = EXCLUDED.lon, unit_id = EXCLUDED.unit_id, metrics = EXCLUDED.metrics,"
        " interval_s = EXCLUDED.interval_s, gateway_id = EXCLUDED.gateway_id, registered = true"
        " WHERE NOT sensors.registered RETURNING id",
        (body.id, body.kind, body.name, body.lat, body.lon, body.unit_id, metrics, body.interval_s, body.gateway_id),
    )
    if await cur.fetchone() is None:
        raise Problem(409, f"sensor {body.id!r} is already registered")
    await audit.record(db, principal.username, "sensor.create", body.id, body.model_dump(mode="json"))
    return await _sensor(db, body.id)


@router.patch("/sensors/{sensor_id}", summary="Change a sensor")
async def update_sensor(sensor_id: str, body: SensorPatch, db: Db, principal: Engineer) -> Sensor:
    await _sensor(db, sensor_id)
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        return await _sensor(db, sensor_id)
    await _check_unit_exists(db, changes.get("unit_id"))
    if "metrics" in changes:
        changes["metrics"] = Jsonb(
            {k: {f: x for f, x in v.items() if x is not None} for k, v in changes["metrics"].items()}
        )
    if ("lat" in changes or "lon" in changes) and "unit_id" not in changes:
        changes["unit_id"] = None  # placed anew: the database assigns the unit that holds it
    assignments = ", ".join(f"{k} = %({k})s" for k in changes)
    await db.execute(
        f"UPDATE sensors SET {assignments}, registered = true WHERE id = %(id)s",
        {**changes, "id": sensor_id},
    )
    await audit.record(
        db, principal.username, "sensor.update", sensor_id, body.model_dump(mode="json", exclude_unset=True)
    )
    return await _sensor(db, sensor_id)


@router.delete("/sensors/{sensor_id}", status_code=204, summary="Remove a sensor from the registry (its readings stay)")
async def delete_sensor(sensor_id: str, db: Db, principal: Engineer) -> Response:
    await _sensor(db, sensor_id)
    await db.execute("DELETE FROM sensors WHERE id = %s", (sensor_id,))
    await audit.record(db, principal.username, "sensor.delete", sensor_id, {})
    return Response(status_code=204)


@router.get("/cameras", summary="Cameras, filtered by unit")
async def list_cameras(db: Db, principal: Staff, unit: str | None = None) -> list[Camera]:
    check_unit(principal, unit)
    async with db.cursor(row_factory=class_row(Camera)) as cur:
        await cur.execute(
            f"SELECT {_CAMERA} FROM cameras WHERE (%(unit)s::text IS NULL OR unit_id = %(unit)s) ORDER BY id",
            {"unit": unit},
        )
        return await cur.fetchall()


async def _camera(db: Db, camera_id: str) -> Camera:
    """The camera, if the caller's scope holds it (the database sees to that)."""
    async with db.cursor(row_factory=class_row(Camera)) as cur:
        await cur.execute(f"SELECT {_CAMERA} FROM cameras WHERE id = %s", (camera_id,))
        camera = await cur.fetchone()
    if camera is None:
        raise Problem(404, f"no camera {camera_id!r}")
    return camera


@router.get("/cameras/{camera_id}", summary="One camera")
async def get_camera(camera_id: str, db: Db, principal: Staff) -> Camera:
    return await _camera(db, camera_id)


@router.post("/cameras", status_code=201, summary="Register a camera")
async def create_camera(body: CameraIn, db: Db, principal: Engineer) -> Camera:
    await _check_unit_exists(db, body.unit_id)
    analytics = Jsonb(body.analytics.model_dump(mode="json"))
    cur = await db.execute(
        "INSERT INTO cameras (id, name, lat, lon, unit_id, stream_url, analytics) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (id) DO NOTHING RETURNING id",
        (body.id, body.name, body.lat, body.lon, body.unit_id, body.stream_url, analytics),
    )
    if await cur.fetchone() is None:
        raise Problem(409, f"camera {body.id!r} already exists")
    await audit.record(db, principal.username, "camera.create", body.id, body.model_dump(mode="json"))
    return await _camera(db, body.id)


@router.patch("/cameras/{camera_id}", summary="Change a camera")
async def update_camera(camera_id: str, body: CameraPatch, db: Db, principal: Engineer) -> Camera:
    await _camera(db, camera_id)
    changes = body.model_dump(exclude_unset=True)
    if changes:
        await _check_unit_exists(db, changes.get("unit_id"))
        if "analytics" in changes:
            changes["analytics"] = Jsonb(body.analytics.model_dump(mode="json"))
        if ("lat" in changes or "lon" in changes) and "unit_id" not in changes:
            changes["unit_id"] = None
        assignments = ", ".join(f"{k} = %({k})s" for k in changes)
        await db.execute(f"UPDATE cameras SET {assignments} WHERE id = %(id)s", {**changes, "id": camera_id})
        await audit.record(
            db, principal.username, "camera.update", camera_id, body.model_dump(mode="json", exclude_unset=True)
        )
    return await _camera(db, camera_id)


@router.delete("/cameras/{camera_id}", status_code=204, summary="Remove a camera")
async def delete_camera(camera_id: str, db: Db, principal: Engineer) -> Response:
    await _camera(db, camera_id)
    await db.execute("DELETE FROM cameras WHERE id = %s", (camera_id,))
    await audit.record(db, principal.username, "camera.delete", camera_id, {})
    return Response(status_code=204)


@router.get(
    "/cameras/{camera_id}/snapshots/{name}",
    summary="A camera snapshot (latest.jpg, or one named by a camera event)",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}}}},
)
async def snapshot(camera_id: str, name: str, db: Db, principal: Staff, request: Request) -> FileResponse:
    await _camera(db, camera_id)
    if not _SNAPSHOT_NAME.match(name):
        raise Problem(404, f"no snapshot {name!r}")
    path = request.app.state.settings.snapshot_dir / camera_id / name
    if not path.is_file():
        raise Problem(404, f"no snapshot {name!r} for camera {camera_id!r}")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})
