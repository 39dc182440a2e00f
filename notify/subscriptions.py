"""NGSI-LD notifications: every subscription told, by HTTP, of the entities that changed.

Ingest says at each commit which sensors have new values (PostgreSQL ``NOTIFY``, see
``ingest/store.py``); this notifier gathers what came within ``GATHER_S``, rebuilds those
sensors' entities, and matches each against the subscriptions of its tenant (by type first),
with the owner's view (``Viewer``): a ward's subscription never shows another ward's entity.

Each subscription has its own outbox: a slow or failing endpoint holds up no one else; changes
that come while a notification is under way, or within the subscription's throttling, go in the
next one (an entity's newest state, once). A notification is tried ``IOC_NGSILD_NOTIFY_ATTEMPTS``
times; its outcome is kept on the subscription (timesSent, timesFailed, lastSuccess, lastFailure
and why), written once a second. One notifier delivers at a time (an advisory lock); after a lost
connection it catches up on what changed while it was away, so no change goes unsaid.

Run alone with ``python -m notify.subscriptions``; ``python -m notify`` runs it beside the
incident notifier.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
from prometheus_client import Counter
from psycopg import AsyncConnection

from ioc_core.loops import record_failure
from ioc_core.ngsild.access import Viewer
from ioc_core.ngsild.entities import Entity, Unit, iso
from ioc_core.ngsild.jsonld import ContextError, translation, vocabulary
from ioc_core.ngsild.store import entities_of_sensors, read_units
from ioc_core.ngsild.subscriptions import Compiled, SubscriptionError, compile_subscription
from ioc_core.settings import Settings
from ioc_core.topics import SUBSCRIPTIONS_CHANGED, VALUES_STORED

log = logging.getLogger(__name__)

ADVISORY_LOCK = 0x10C_0006  # one notifier delivers at a time
APPLICATION_NAME = "ioc-ngsild-notify"  # its connections, as pg_stat_activity shows them
GATHER_S = 0.02  # changes that come this close together go out together
RELOAD_S = 30.0  # subscriptions read again (expiry, the owners' rights) at least this often
UNITS_S = 300.0
STATUS_S = 1.0
MAX_CONNECTIONS = 1000  # endpoints notified at once: a slow one holds its own connection only
NOTIFICATIONS = Counter("ioc_ngsild_notifications_total", "NGSI-LD notifications by outcome", ["result"])
_SUBSCRIPTIONS = (
    "SELECT s.id, s.tenant, s.body, s.context, s.active, u.role, u.units, u.tenant"
    " FROM ngsi_subscriptions s JOIN users u ON u.username = s.owner"
    " WHERE s.active AND NOT u.disabled AND (s.expires_at IS NULL OR s.expires_at > now())"
)
_STATUS = (
    "UPDATE ngsi_subscriptions SET times_sent = times_sent + %(sent)s, times_failed = times_failed + %(failed)s,"
    " last_notification = greatest(last_notification, %(last)s), last_success = greatest(last_success, %(success)s),"
    " last_failure = greatest(last_failure, %(failure)s), last_error = coalesce(%(error)s, last_error)"
    " WHERE id = %(id)s"
)


@dataclass(slots=True)
class Outcome:
    """What happened to a subscription's notifications since the last write."""

    sent: int = 0
    failed: int = 0
    last: datetime | None = None
    success: datetime | None = None
    failure: datetime | None = None
    error: str | None = None


@dataclass(slots=True)
class Outbox:
    subscription: Compiled
    pending: dict[str, Entity] = field(default_factory=dict)
    task: asyncio.Task | None = None
    next_allowed: float = 0.0


class SubscriptionNotifier:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.by_type: dict[tuple[str, str], list[Compiled]] = defaultdict(list)
        self.untyped: dict[str, list[Compiled]] = defaultdict(list)  # subscriptions by attributes alone
        self.count = 0
        self.units: dict[str, Unit] = {}
        self.seen: dict[tuple[str, str], dict[str, str]] = {}  # (tenant, entity id) -> attribute -> observedAt
        self.primed = False
        self.outboxes: dict[str, Outbox] = {}
        self.outcomes: dict[str, Outcome] = defaultdict(Outcome)
        self.http: httpx.AsyncClient | None = None

    def run(self, stop: threading.Event) -> None:
        asyncio.run(self._run(stop))

    async def _run(self, stop: threading.Event) -> None:
        # Each endpoint has its time to answer; waiting for a free connection is not its time.
        timeout = httpx.Timeout(self.settings.ngsild_notify_timeout_s, pool=None)
        limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=100)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
            self.http = http
            tasks = [asyncio.create_task(self._serve()), asyncio.create_task(self._write_outcomes())]
            await asyncio.to_thread(stop.wait)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._flush_outcomes()

    async def _serve(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._session()
                delay = 0.5
            except (psycopg.Error, OSError) as exc:
                log.warning("database lost, reconnecting", extra={"error": str(exc), "retry_in_s": delay})
            except Exception as exc:
                record_failure("ngsild-notify", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _session(self) -> None:
        url = self.settings.database_url
        connect = {"autocommit": True, "connect_timeout": 5, "application_name": APPLICATION_NAME}
        async with await AsyncConnection.connect(url, **connect) as listener:
            if not (await (await listener.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK,))).fetchone())[0]:
                await asyncio.sleep(5)  # another notifier delivers; this one waits its turn
                return
            await listener.execute(f"LISTEN {VALUES_STORED}")
            await listener.execute(f"LISTEN {SUBSCRIPTIONS_CHANGED}")
            async with await AsyncConnection.connect(url, **connect) as reader:
                self.units = await read_units(reader)
                await self._load(reader)
                everything = [r[0] for r in await (await reader.execute("SELECT id FROM sensors")).fetchall()]
                await self._changed(reader, everything, notify=self.primed)  # what changed while away
                self.primed = True
                log.info("NGSI-LD notifier listening", extra={"subscriptions": self.count})
                await self._listen(listener, reader)

    async def _listen(self, listener: AsyncConnection, reader: AsyncConnection) -> None:
        loaded = units_read = time.monotonic()
        while True:
            sensors: set[str] = set()
            reload = False
            async for note in listener.notifies(timeout=RELOAD_S, stop_after=1):
                reload |= self._take(note, sensors)
            async for note in listener.notifies(timeout=GATHER_S):
                reload |= self._take(note, sensors)
            now = time.monotonic()
            if now - units_read > UNITS_S:
                self.units, units_read = await read_units(reader), now
            if reload or now - loaded > RELOAD_S:
                await self._load(reader)
                loaded = now
            if sensors:
                await self._changed(reader, sorted(sensors))

    @staticmethod
    def _take(note: Any, sensors: set[str]) -> bool:
        if note.channel == VALUES_STORED:
            sensors.update(note.payload.split(","))
            return False
        return True

    async def _load(self, reader: AsyncConnection) -> None:
        """The live subscriptions, compiled in their owners' terms; one that no longer compiles
        (its remote context gone) is logged and left out until it does."""
        by_type: dict[tuple[str, str], list[Compiled]] = defaultdict(list)
        untyped: dict[str, list[Compiled]] = defaultdict(list)
        count = 0
        for sub_id, tenant, body, context, active, role, units, user_tenant in await (
            await reader.execute(_SUBSCRIPTIONS)
        ).fetchall():
            viewer = Viewer(role, frozenset(units) if role == "ward_operator" else None, user_tenant)
            try:
                terms = translation(await asyncio.to_thread(vocabulary, context))
                compiled = compile_subscription(sub_id, tenant, viewer, body, terms, context, active)
            except (ContextError, SubscriptionError) as exc:
                log.warning("subscription left out", extra={"subscription": sub_id, "error": str(exc)})
                continue
            count += 1
            types = {t for s in compiled.selectors if s.types for t in s.types}
            if any(s.types is None for s in compiled.selectors):
                untyped[tenant].append(compiled)
            for entity_type in types:
                by_type[(tenant, entity_type)].append(compiled)
        self.by_type, self.untyped, self.count = by_type, untyped, count
        live = {c.id: c for subs in (*by_type.values(), *untyped.values()) for c in subs}
        for sub_id, outbox in list(self.outboxes.items()):
            if sub_id in live:  # a changed subscription sends its next notification as it is now
                outbox.subscription = live[sub_id]
            else:  # deleted, paused or expired: what waited is not sent
                outbox.pending.clear()
                del self.outboxes[sub_id]

    def _changed_attributes(self, entity: Entity) -> frozenset[str]:
        """The attributes whose observation is new since this notifier last saw the entity; all of
        them for an entity without observations (a device) whose modification is new."""
        marks = {n: a["observedAt"] for n, a in entity.attrs.items() if isinstance(a, dict) and "observedAt" in a}
        if not marks and entity.modified is not None:
            marks = {"*": iso(entity.modified)}
        key = (entity.tenant, entity.id)
        before = self.seen.get(key, {})
        self.seen[key] = marks
        changed = {n for n, t in marks.items() if before.get(n) != t}
        return frozenset(entity.attrs) if "*" in changed else frozenset(changed)

    async def _changed(self, reader: AsyncConnection, sensor_ids: list[str], notify: bool = True) -> None:
        entities = await entities_of_sensors(reader, sensor_ids, self.units)
        now = datetime.now(UTC)
        for entity in entities:
            changed = self._changed_attributes(entity)
            if not changed or not notify:
                continue
            for sub in (*self.by_type.get((entity.tenant, entity.type), ()), *self.untyped.get(entity.tenant, ())):
                try:
                    matched = sub.live(now) and sub.matches(entity, changed)
                except Exception as exc:  # one subscription's fault is never the others'
                    log.warning("subscription not matched", extra={"subscription": sub.id, "error": repr(exc)})
                    continue
                if matched:
                    self._queue(sub, entity)

    def _queue(self, sub: Compiled, entity: Entity) -> None:
        outbox = self.outboxes.get(sub.id)
        if outbox is None:
            outbox = self.outboxes[sub.id] = Outbox(sub)
        outbox.pending[entity.id] = entity
        if outbox.task is None or outbox.task.done():
            outbox.task = asyncio.create_task(self._drain(outbox))

    async def _drain(self, outbox: Outbox) -> None:
        while outbox.pending:
            wait = outbox.next_allowed - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            entities, outbox.pending = list(outbox.pending.values()), {}
            sub = outbox.subscription
            try:
                ok, error = await self._post(sub, entities)
            except Exception as exc:  # never the end of the outbox
                record_failure("ngsild-notify-post", exc)
                ok, error = False, f"{type(exc).__name__}: {exc}"
            outbox.next_allowed = time.monotonic() + sub.throttling_s
            self._record(sub.id, ok, error)

    async def _post(self, sub: Compiled, entities: list[Entity]) -> tuple[bool, str | None]:
        assert self.http is not None
        body, headers = sub.notification(entities, datetime.now(UTC))
        attempts = self.settings.ngsild_notify_attempts
        error = None
        for attempt in range(attempts):
            try:
                response = await self.http.post(sub.endpoint.uri, content=body, headers=headers)
                if response.status_code < 300:
                    return True, None
                error = f"the endpoint answered {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                    break  # refused, not failing: the same notification would be refused again
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if attempt + 1 < attempts:
                await asyncio.sleep(0.5 * 2**attempt)
        return False, error

    def _record(self, sub_id: str, ok: bool, error: str | None) -> None:
        now = datetime.now(UTC)
        outcome = self.outcomes[sub_id]
        outcome.sent += 1
        outcome.last = now
        if ok:
            outcome.success = now
            NOTIFICATIONS.labels("sent").inc()
        else:
            outcome.failed += 1
            outcome.failure, outcome.error = now, error
            NOTIFICATIONS.labels("failed").inc()
            log.warning("notification failed", extra={"subscription": sub_id, "error": error})

    async def _write_outcomes(self) -> None:
        while True:
            await asyncio.sleep(STATUS_S)
            try:
                await self._flush_outcomes()
            except (psycopg.Error, OSError) as exc:
                log.warning("subscription status not written yet", extra={"error": str(exc)})

    async def _flush_outcomes(self) -> None:
        if not self.outcomes:
            return
        outcomes, self.outcomes = self.outcomes, defaultdict(Outcome)
        try:
            url = self.settings.database_url
            async with await AsyncConnection.connect(url, connect_timeout=5) as conn, conn.cursor() as cur:
                await cur.executemany(_STATUS, [{"id": i, **vars_of(o)} for i, o in outcomes.items()])
        except BaseException:
            for sub_id, outcome in outcomes.items():  # kept for the next write
                self.outcomes[sub_id] = merge(outcome, self.outcomes.get(sub_id))
            raise


def vars_of(outcome: Outcome) -> dict[str, Any]:
    return {
        "sent": outcome.sent,
        "failed": outcome.failed,
        "last": outcome.last,
        "success": outcome.success,
        "failure": outcome.failure,
        "error": outcome.error,
    }


def merge(older: Outcome, newer: Outcome | None) -> Outcome:
    if newer is None:
        return older
    return Outcome(
        older.sent + newer.sent,
        older.failed + newer.failed,
        newer.last or older.last,
        newer.success or older.success,
        newer.failure or older.failure,
        newer.error or older.error,
    )


def main() -> None:
    from ioc_core.logs import setup_logging
    from ioc_core.settings import get_settings

    settings = get_settings()
    setup_logging(settings, "notify.subscriptions")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    SubscriptionNotifier(settings).run(stop)


if __name__ == "__main__":
    main()
