"""Every entity the NGSI-LD API serves, built from the registry, the latest values and the open
alerts, at most ``max_age_s`` old.

A request takes the snapshot as it stands and, when it has aged, has it rebuilt behind it (only the
first request ever waits). A rebuild reads the tables and remakes only the entities whose rows
changed, so queries stay fast however many entities there are and the API spends nothing on
NGSI-LD while no one asks. It runs in a thread on its own connection (about 0.2 s of work for
10,000 sensors): requests go on being answered meanwhile, instead of waiting behind it on the
event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import AsyncConnection

from ioc_core.loops import record_failure
from ioc_core.ngsild.entities import (
    Alert,
    Camera,
    Entity,
    Sensor,
    Unit,
    alert_entity,
    camera_entities,
    sensor_entities,
    unit_entity,
)

log = logging.getLogger(__name__)
APPLICATION_NAME = "ioc-ngsild-entities"  # the rebuilds' connection, as pg_stat_activity shows it

_SENSORS = (
    "SELECT s.id, s.kind, s.name, s.unit_id, s.lat, s.lon, s.interval_s, s.status, s.last_seen,"
    " s.created_at, s.exercise, coalesce(s.tenant, ''), e.id, e.type, e.attrs"
    " FROM sensors s LEFT JOIN ngsi_entities e ON e.sensor_id = s.id WHERE s.registered"
)
_LATEST = "SELECT sensor_id, metric, time, value FROM latest ORDER BY sensor_id, metric"
_SOME_SENSORS = _SENSORS + " AND s.id = ANY(%s)"
_SOME_LATEST = "SELECT sensor_id, metric, time, value FROM latest WHERE sensor_id = ANY(%s) ORDER BY sensor_id, metric"
_CAMERAS = "SELECT id, name, unit_id, lat, lon, status, last_seen, created_at, exercise FROM cameras"
_ALERTS = (
    "SELECT a.id, a.unit_id, a.source_type, a.source_id, s.kind, a.severity, a.state, a.title, a.lat, a.lon,"
    " a.opened_at, coalesce(r.public, false), a.exercise FROM alerts a"
    " LEFT JOIN rules r ON r.id = a.rule_id LEFT JOIN sensors s ON s.id = a.source_id WHERE a.state <> 'resolved'"
)
_UNITS = "SELECT id, name, kind, parent_id, centroid[0], centroid[1], population, area_km2 FROM units"


@dataclass
class Snapshot:
    """The entities of each tenant ('' is the city's own), in id order, by id and by type."""

    tenants: dict[str, list[Entity]] = field(default_factory=dict)
    by_id: dict[str, dict[str, Entity]] = field(default_factory=dict)
    by_type: dict[str, dict[str, list[Entity]]] = field(default_factory=dict)
    built: float = 0.0

    def entities(self, tenant: str, types: frozenset[str] | None = None) -> list[Entity]:
        if types is None:
            return self.tenants.get(tenant, [])
        by_type = self.by_type.get(tenant, {})
        if len(types) == 1:
            return by_type.get(next(iter(types)), [])
        return sorted((e for t in types for e in by_type.get(t, [])), key=lambda e: e.id)

    def get(self, tenant: str, entity_id: str) -> Entity | None:
        return self.by_id.get(tenant, {}).get(entity_id)


class EntityStore:
    def __init__(self, database_url: str, max_age_s: float):
        self._url = database_url
        self.max_age_s = max_age_s
        self._snapshot: Snapshot | None = None
        self._rebuild: asyncio.Future | None = None
        self._conn: psycopg.Connection | None = None  # the rebuilds', one at a time
        # What each entity was made from, so that a rebuild remakes only what changed.
        self._made: dict[tuple[str, str], tuple[Any, list[Entity]]] = {}

    async def snapshot(self, fresh: bool = False) -> Snapshot:
        """The entities as they stand; ``fresh``: rebuilt now (after a write by this API)."""
        current = self._snapshot
        if current is not None and not fresh and time.monotonic() - current.built < self.max_age_s:
            return current
        if fresh and self._rebuild is not None and not self._rebuild.done():
            # begun before the caller's write: it may not show it
            await asyncio.wait([self._rebuild])
        if self._rebuild is None or self._rebuild.done():
            self._rebuild = asyncio.ensure_future(asyncio.to_thread(self._build))
            self._rebuild.add_done_callback(_said)
        if current is None or fresh:
            return await asyncio.shield(self._rebuild)
        return current

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def _read(self) -> tuple[list, ...]:
        """Every table an entity is made of, in one transaction (as the role with every row: the
        requests decide who sees what). A connection the server ended (a restart) is made anew
        once before the error is the caller's."""
        for attempt in (1, 2):
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self._url, connect_timeout=5, application_name=APPLICATION_NAME)
            try:
                with self._conn.transaction():
                    return tuple(
                        self._conn.execute(q).fetchall() for q in (_SENSORS, _LATEST, _CAMERAS, _ALERTS, _UNITS)
                    )
            except psycopg.OperationalError:
                self._conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _build(self) -> Snapshot:
        started = time.monotonic()
        sensors, latest, cameras, alerts, unit_rows = self._read()
        values: dict[str, list[tuple]] = defaultdict(list)
        for sensor_id, metric, t, value in latest:
            values[sensor_id].append((metric, t, value))
        units = {row[0]: Unit(*row) for row in unit_rows}
        made: dict[tuple[str, str], tuple[Any, list[Entity]]] = {}

        def remake(key: tuple[str, str], signature: Any, build: Callable[[], list[Entity]]) -> None:
            held = self._made.get(key)
            made[key] = held if held is not None and held[0] == signature else (signature, build())

        names = tuple(u.name for u in units.values())
        for row in sensors:
            latest_rows = tuple(values.get(row[0], ()))
            remake(("sensor", row[0]), (row, latest_rows, names), lambda r=row, v=latest_rows: _sensor(r, v, units))
        for row in cameras:
            latest_rows = tuple(values.get(row[0], ()))
            remake(
                ("camera", row[0]),
                (row, latest_rows, names),
                lambda r=row, v=latest_rows: camera_entities(Camera(*r), _latest(v), units),
            )
        for row in alerts:
            remake(("alert", str(row[0])), (row, names), lambda r=row: [alert_entity(Alert(*r), units)])
        for unit in units.values():
            remake(("unit", unit.id), unit, lambda u=unit: [unit_entity(u)])
        self._made = made
        snapshot = Snapshot()
        for _, entities in made.values():
            for entity in entities:
                snapshot.tenants.setdefault(entity.tenant, []).append(entity)
        for tenant, entities in snapshot.tenants.items():
            entities.sort(key=lambda e: e.id)
            snapshot.by_id[tenant] = {e.id: e for e in entities}
            by_type: dict[str, list[Entity]] = defaultdict(list)
            for entity in entities:
                by_type[entity.type].append(entity)
            snapshot.by_type[tenant] = dict(by_type)
        snapshot.built = time.monotonic()
        self._snapshot = snapshot
        log.debug("NGSI-LD entities rebuilt in %.3f s", snapshot.built - started)
        return snapshot


async def read_units(conn: AsyncConnection) -> dict[str, Unit]:
    return {row[0]: Unit(*row) for row in await (await conn.execute(_UNITS)).fetchall()}


async def entities_of_sensors(conn: AsyncConnection, sensor_ids: list[str], units: dict[str, Unit]) -> list[Entity]:
    """The entities of some sensors as they stand now: what the notifier of subscriptions sends
    when their values change."""
    sensors = await (await conn.execute(_SOME_SENSORS, (sensor_ids,))).fetchall()
    values: dict[str, list[tuple]] = defaultdict(list)
    for sensor_id, metric, t, value in await (await conn.execute(_SOME_LATEST, (sensor_ids,))).fetchall():
        values[sensor_id].append((metric, t, value))
    return [e for row in sensors for e in _sensor(row, tuple(values.get(row[0], ())), units)]


def _said(rebuild: asyncio.Future) -> None:
    """A failed rebuild is logged and counted, whether or not a request waited for it; the
    snapshot before it stands until the next one."""
    if not rebuild.cancelled() and rebuild.exception() is not None:
        record_failure("ngsild-entities", rebuild.exception())


def _latest(rows: tuple) -> dict:
    return {metric: (t, value) for metric, t, value in rows}


def _sensor(row: tuple, latest_rows: tuple, units: dict[str, Unit]) -> list[Entity]:
    *fields, entity_id, entity_type, static = row
    sensor = Sensor(*fields, entity_id=entity_id, entity_type=entity_type, static=static or {})
    return sensor_entities(sensor, _latest(latest_rows), units)
