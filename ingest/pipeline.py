"""The write pipeline: a batch is stored, and judged by the rules, in one transaction; the rules'
conclusions are kept only once it is committed.

While the database is away (a lost connection, a restart, a deadlock: ``OperationalError``) the
same batch is tried again with exponential backoff, and nothing is acknowledged meanwhile. A batch
that fails for any other reason (a constraint, a data error, a bug in a rule) would fail again
however often it is tried, so it is narrowed down: split in halves, each written on its own, until
the messages that cause the failure are alone; those become dead letters with the error, the rest
is stored, and ingest goes on. A poison message costs a few extra writes, never a restart loop.
"""

import logging
import threading
import time
from dataclasses import dataclass, field

import psycopg
from tenacity import Retrying, retry_if_exception_type, stop_when_event_set, wait_exponential

from ingest import metrics
from ingest.alerting import apply_hits
from ingest.batching import Batch, Part, dead_letter
from ingest.payloads import Reading
from ingest.registry import RegistryCache
from ingest.rules import RuleEngine
from ingest.store import ReadingStore, Written
from ioc_core.events import Event

log = logging.getLogger(__name__)


class Stopped(Exception):
    """Asked to stop while the database was away: the batch is not stored (nor acknowledged)."""


@dataclass(slots=True)
class Outcome:
    """What the pipeline did with a batch."""

    inserted: int = 0
    events: list[Event] = field(default_factory=list)  # stored, to publish
    readings: list[Reading] = field(default_factory=list)  # the newest stored of each series (for the live digest)
    poisoned: int = 0  # messages that became dead letters because the database refused them

    def add(self, other: "Outcome") -> None:
        self.inserted += other.inserted
        self.events += other.events
        self.readings += other.readings
        self.poisoned += other.poisoned


class WritePipeline:
    def __init__(self, store: ReadingStore, rules: RuleEngine, registry: RegistryCache, stopping: threading.Event):
        self._store, self._rules, self._registry, self._stopping = store, rules, registry, stopping

    def commit(self, batch: Batch) -> Outcome:
        """Store the batch, all of it or, if the database refuses part of it, all but that part as
        dead letters. Raises ``Stopped`` only when asked to stop while the database is away."""
        started = time.perf_counter()
        outcome = self._commit(batch)
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(len(batch))
        return outcome

    def _commit(self, batch: Batch) -> Outcome:
        try:
            written = self._write_while_away(batch)
        except psycopg.OperationalError:
            raise Stopped from None
        except Exception as exc:  # refused by the database, or a rule that fails: narrow it down
            metrics.NARROWED.inc()
            return self._narrow(batch, exc)
        return Outcome(written.inserted, written.events, batch.newest())

    def _write_while_away(self, batch: Batch) -> Written:
        """Write until it succeeds, through any outage; other failures are raised at once."""
        retrying = Retrying(
            retry=retry_if_exception_type(psycopg.OperationalError),
            wait=wait_exponential(multiplier=0.2, max=2),
            stop=stop_when_event_set(self._stopping),
            before_sleep=_log_write_failure,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                written = self._write_once(batch)
        return written

    def _write_once(self, batch: Batch) -> Written:
        try:
            written = self._store.write(batch, lambda cur: self._judge(cur, batch))
        except BaseException:
            self._rules.discard()  # what the rules concluded from it was never stored
            raise
        self._rules.commit()
        metrics.DATABASE_UP.set(1)
        metrics.ROWS_WRITTEN.inc(written.inserted)
        metrics.DUPLICATES.inc(len(batch.readings) - written.inserted)
        for sensor_id, gateway_id in batch.new_sensors.items():
            self._registry.remember(sensor_id, gateway_id)
        return written

    def _judge(self, cur: psycopg.Cursor, batch: Batch) -> list[Event]:
        """The rules on this batch's readings and camera events: alerts and their events."""
        started = time.perf_counter()
        registry = self._registry
        hits = self._rules.judge(cur, batch.readings, batch.events, registry.kinds, registry.units)
        if not hits:
            metrics.RULES_SECONDS.observe(time.perf_counter() - started)
            return []
        applied = apply_hits(cur, hits, registry.units, registry.locations)
        if applied.unchanged:  # the alerts say otherwise: they are the truth
            self._rules.align(cur, applied.unchanged)
        metrics.RULES_SECONDS.observe(time.perf_counter() - started)
        return applied.events

    def _narrow(self, batch: Batch, error: Exception) -> Outcome:
        if len(batch.parts) == 1:
            return self._poisoned(batch.parts[0], error)
        outcome = Outcome()
        for half in batch.halves():
            outcome.add(self._commit(half))
        return outcome

    def _poisoned(self, part: Part, error: Exception) -> Outcome:
        """The one message the database refuses: its raw bytes as a dead letter with the error."""
        log.error(
            "message refused by the database: stored as a dead letter",
            exc_info=error,
            extra={"topic": part.received.message.topic},
        )
        message = part.received.message
        poisoned = Part(part.received)
        reason = f"refused_by_database: {type(error).__name__}: {error}".replace("\x00", "")[:1000]
        dead_letter(poisoned, message.payload, [reason], ["refused_by_database"])
        try:
            self._write_while_away(Batch([poisoned]))
        except psycopg.OperationalError:
            raise Stopped from None
        except Exception:  # not even its dead letter can be stored: say so loudly, and go on
            log.critical(
                "dead letter not stored", exc_info=True, extra={"topic": message.topic, "bytes": len(message.payload)}
            )
        return Outcome(poisoned=1)


def _log_write_failure(state) -> None:
    metrics.DATABASE_UP.set(0)
    log.warning(
        "batch not stored, retrying; messages stay unacknowledged",
        extra={"attempt": state.attempt_number, "error": str(state.outcome.exception())[:300]},
    )
