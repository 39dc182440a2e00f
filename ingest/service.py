"""The ingest worker: MQTT in, batched writes, acknowledgement after commit, live digests out.

One reading, in the order its files are best read:
1. ``session.py``: the broker session hands each message to a bounded inbox;
2. ``batching.py`` (with ``payloads.py`` and ``admission.py``): the main thread turns messages
   into the parts of a batch, by size or age;
3. ``pipeline.py`` (with ``store.py``, ``rules.py``, ``alerting.py``): the batch is written and
   judged in one transaction, retried while the database is away, narrowed down when it refuses;
4. ``session.py`` again: only then are its messages acknowledged, so a crash or an outage loses
   nothing (the broker redelivers, the unique index stores once);
5. ``publishing.py``: its events and, once a second, the value digests go out.

Background loops (refreshes, escalations, incidents, rollups and retention, digests) run through
``ioc_core.loops``: none of them stops quietly.
"""

import logging
import queue
import threading
import time
from datetime import timedelta

from ingest import metrics
from ingest.alert_scheduler import AlertScheduler
from ingest.amqp_session import AmqpSession
from ingest.batching import Batch, Intake
from ingest.digest import LiveDigest
from ingest.incidents import group_once
from ingest.maintenance import Maintenance
from ingest.pipeline import Stopped, WritePipeline
from ingest.publishing import Publishing
from ingest.registry import RegistryCache
from ingest.rules import RuleEngine
from ingest.session import BrokerSession
from ingest.source import Received, Source
from ingest.store import ReadingStore
from ioc_core.clock import clock_now
from ioc_core.loops import Loop
from ioc_core.settings import Settings

log = logging.getLogger(__name__)

# While a batch fills from a thin stream, the inbox is looked at this often rather than woken for
# every message: at a few thousand messages a second, a wake-up each cost more than the message.
_GATHER_TICK_S = 0.005


class IngestService:
    def __init__(self, settings: Settings, worker: int = 1):
        self.settings = settings
        self.stopping = threading.Event()
        client_id = f"{settings.ingest_client_id_prefix}-{worker}"
        self.session: Source = (
            AmqpSession(settings, worker, self.stopping)
            if settings.ingest_source == "amqp"
            else BrokerSession(settings, client_id, self.stopping)
        )
        self.connected = self.session.connected
        self.registry = RegistryCache(settings.database_url, settings.ingest_registry_refresh_s)
        self.rules = RuleEngine(settings.database_url, settings.rules_refresh_s)
        self.store = ReadingStore(settings.database_url)
        self.intake = Intake(settings, self.registry)
        self.pipeline = WritePipeline(self.store, self.rules, self.registry, self.stopping)
        self.digest = LiveDigest(self.registry.unit_of)
        self.publishing = Publishing(self.session, self.digest)
        self._batches = Loop("batches", 1.0)

    def run(self, retire: bool = False) -> None:
        """Consume until stopped; ``retire``: drain this worker's share, then end its session."""
        self.registry.refresh_if_due()
        self.session.start()
        self._start_loops()
        log.info("ingest started", extra={"broker": self.session.describe()})
        drained = False
        try:
            if retire:
                drained = self._drain_and_leave()
            while not self.stopping.is_set():
                self._step()
        finally:
            self.session.close()
            self.store.close()
            self.registry.close()
            if drained:
                self.session.end()
            log.info("ingest stopped", extra={"retired": drained})

    def stop(self) -> None:
        self.stopping.set()

    def _start_loops(self) -> None:
        s = self.settings
        maintenance = Maintenance(s.database_url, timedelta(days=s.retention_days), s.rollup_interval_s)
        scheduler = AlertScheduler(s, self.publishing.events)
        Loop("digests", s.live_digest_interval_s).start_thread(self.publishing.digests, self.stopping)
        Loop("maintenance", s.rollup_interval_s).start_thread(maintenance.run_once, self.stopping)
        Loop("alert-scheduler", s.alert_check_s).start_thread(scheduler.run_once, self.stopping)
        Loop("incidents", s.incident_check_s).start_thread(
            lambda: group_once(s, lambda conn: clock_now(conn, s), self.publishing.events), self.stopping
        )

    def _step(self) -> None:
        """One batch. Whatever goes wrong outside the pipeline's own handling is logged and
        counted, and the connection is made again so that the broker sends the batch's messages
        once more: nothing is lost, and the worker goes on."""
        try:
            self._process_one_batch()
        except Exception as exc:
            time.sleep(self._batches.failed(exc))
            self.session.redeliver()
        else:
            self._batches.succeeded()

    def _drain_and_leave(self) -> bool:
        """Mosquitto keeps giving an absent member of a share group its share, so a worker that
        will not come back leaves the group: it stores what it holds, unsubscribes, stores what
        was still on its way, and then its session can end without losing a message."""
        if not self.connected.wait(30):
            return False
        self._process_until_idle(3.0)
        if not self.session.leave():
            return False
        self._process_until_idle(2.0)
        self.stopping.set()
        return True

    def _process_until_idle(self, idle_s: float) -> None:
        while not self.stopping.is_set() and time.monotonic() - self.session.last_received < idle_s:
            self._step()

    def _process_one_batch(self) -> None:
        self.registry.refresh_if_due()
        self.rules.refresh_if_due()
        try:
            first = self.session.next(0.2)
        except queue.Empty:
            return
        self.intake.new_batch()
        received: list[Received] = [first]
        parts = [self.intake.part(first)]
        rows = len(parts[0].readings) + 1
        deadline = time.monotonic() + self.settings.ingest_batch_max_age_ms / 1000
        while rows < self.settings.ingest_batch_size:
            try:
                item = self.session.next(0)
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(_GATHER_TICK_S, left))  # a few messages a wake-up, not one
                continue
            received.append(item)
            part = self.intake.part(item)
            parts.append(part)
            rows += len(part.readings) + 1
        metrics.BACKLOG.set(self.session.backlog() + len(received))
        batch = Batch(parts)
        try:
            outcome = self.pipeline.commit(batch)
        except Stopped:
            return  # unacknowledged: the broker sends them again to whoever takes over
        self.session.acknowledge(received)
        self.digest.add(outcome.readings)
        self.publishing.events(outcome.events)
