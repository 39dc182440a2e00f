"""The ingest worker: MQTT in, batched writes, acknowledgement after commit, live digests out.

paho's network thread only queues messages. The main thread parses, batches by size or age,
writes the batch in one transaction and only then acknowledges its messages to the broker
(manual acknowledgement), so a crash or a database outage loses nothing: the broker redelivers
what was not acknowledged, and the unique index stores it once.
"""

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as paho
import psycopg
from tenacity import Retrying, retry_if_exception_type, stop_when_event_set, wait_exponential

from ingest import metrics
from ingest.alert_scheduler import AlertScheduler
from ingest.alerting import apply_hits
from ingest.digest import LiveDigest
from ingest.maintenance import Maintenance
from ingest.payloads import (
    CameraEvent,
    Limits,
    Parsed,
    Rejection,
    parse_camera_event,
    parse_gateway_message,
    parse_sensor_message,
    parse_status_message,
    route,
)
from ingest.registry import RegistryCache
from ingest.rules import RuleEngine
from ingest.store import Batch, DeadLetter, ReadingStore, Written
from ioc_core import topics
from ioc_core.events import Event, Location, Source
from ioc_core.mqtt import make_client
from ioc_core.settings import Settings
from ioc_core.units import CITY_ID

log = logging.getLogger(__name__)

# Whole subtrees, so that a wrong topic under them becomes a dead letter instead of vanishing.
SUBSCRIPTIONS = tuple(f"{topics.PREFIX}/{tree}/#" for tree in ("sensors", "gateways", "cameras", "devices"))
_MAX_REASONS = 10


@dataclass(slots=True)
class Received:
    generation: int  # which connection delivered it: a mid is only valid on its own connection
    message: paho.MQTTMessage
    at: datetime


class IngestService:
    def __init__(self, settings: Settings, worker: int = 1):
        self.settings = settings
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self._inbox: queue.SimpleQueue[Received] = queue.SimpleQueue()
        self._generation = 0
        self._last_received = time.monotonic()
        self._leaving = False
        self.store = ReadingStore(settings.database_url)
        self.registry = RegistryCache(settings.database_url, settings.ingest_registry_refresh_s)
        self.rules = RuleEngine(settings.database_url, settings.rules_refresh_s)
        self.digest = LiveDigest(self.registry.unit_of)
        self.client_id = f"{settings.ingest_client_id_prefix}-{worker}"
        self.client, self._address = make_client(settings.mqtt_url, self.client_id, manual_ack=True)
        # One worker subscribes plainly: Mosquitto 2.0 keeps a persistent session's plain
        # subscriptions through its own restart, but forgets shared ones until the worker is back.
        shared, plain = [topics.shared(t) for t in SUBSCRIPTIONS], list(SUBSCRIPTIONS)
        self._topics, self._other_topics = (shared, plain) if settings.ingest_workers > 1 else (plain, shared)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # paho's network thread: hand over, nothing more.
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection", extra={"reason": str(reason_code)})
            return
        self._generation += 1
        if self._leaving:
            return
        client.subscribe([(t, 1) for t in self._topics])
        client.unsubscribe(self._other_topics)  # the other form, if the session had it from before
        log.info("connected to broker", extra={"session_present": flags.session_present})

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            log.error("broker refused a subscription", extra={"reasons": [str(rc) for rc in reason_codes]})
            return
        self.connected.set()
        metrics.BROKER_UP.set(1)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        metrics.BROKER_UP.set(0)
        if not self.stopping.is_set():
            log.warning("disconnected from broker", extra={"reason": str(reason_code)})

    def _on_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        self._last_received = time.monotonic()
        self._inbox.put(Received(self._generation, message, datetime.now(UTC)))

    # The main thread.
    def run(self, retire: bool = False) -> None:
        """Consume until stopped; ``retire``: drain this worker's share, then end its session."""
        self.registry.refresh_if_due()
        self.client.connect_async(self._address.host, self._address.port, keepalive=30)
        self.client.loop_start()
        threading.Thread(target=self._publish_digests, name="digest", daemon=True).start()
        maintenance = Maintenance(
            self.settings.database_url,
            timedelta(days=self.settings.retention_days),
            self.settings.rollup_interval_s,
            self.stopping,
        )
        threading.Thread(target=maintenance.run, name="maintenance", daemon=True).start()
        scheduler = AlertScheduler(self.settings, self.stopping, self._publish_events)
        threading.Thread(target=scheduler.run, name="alert-scheduler", daemon=True).start()
        log.info("ingest started", extra={"broker": f"{self._address.host}:{self._address.port}"})
        drained = False
        try:
            if retire:
                drained = self._drain_and_leave()
            while not self.stopping.is_set():
                self._process_one_batch()
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            self.store.close()
            if drained:
                self._end_session()
            log.info("ingest stopped", extra={"retired": drained})

    def _drain_and_leave(self) -> bool:
        """Mosquitto keeps giving an absent member of a share group its share, so a worker that
        will not come back leaves the group: it stores what it holds, unsubscribes, stores what
        was still on its way, and then its session can end without losing a message."""
        if not self.connected.wait(30):
            return False
        self._process_until_idle(3.0)
        self._leaving = True
        unsubscribed = threading.Event()
        self.client.on_unsubscribe = lambda *args: unsubscribed.set()
        self.client.unsubscribe(self._topics)
        if not unsubscribed.wait(10):
            return False
        self._process_until_idle(2.0)
        self.stopping.set()
        return True

    def _process_until_idle(self, idle_s: float) -> None:
        while not self.stopping.is_set() and time.monotonic() - self._last_received < idle_s:
            self._process_one_batch()

    def _end_session(self) -> None:
        client, _ = make_client(self.settings.mqtt_url, self.client_id, clean_session=True)
        client.connect(self._address.host, self._address.port)
        client.loop_start()
        deadline = time.monotonic() + 5
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        client.disconnect()
        client.loop_stop()

    def stop(self) -> None:
        self.stopping.set()

    def _limits(self) -> Limits:
        return Limits(
            max_future=timedelta(seconds=self.settings.ingest_max_future_s),
            max_age=timedelta(days=self.settings.retention_days),
            ranges=self.registry.ranges,
        )

    def _process_one_batch(self) -> None:
        try:
            first = self._next(0.2)
        except queue.Empty:
            self.registry.refresh_if_due()
            self.rules.refresh_if_due()
            return
        self.registry.refresh_if_due()
        self.rules.refresh_if_due()
        limits = self._limits()
        batch, received = Batch(), [first]
        self._add(first, batch, limits)
        deadline = time.monotonic() + self.settings.ingest_batch_max_age_ms / 1000
        while len(batch) < self.settings.ingest_batch_size:
            remaining = deadline - time.monotonic()
            try:
                item = self._next(remaining)
            except queue.Empty:
                break
            received.append(item)
            self._add(item, batch, limits)
        metrics.BACKLOG.set(self._inbox.qsize() + len(received))
        written = self._commit(batch)
        if written is not None:
            self._acknowledge(received)
            self.digest.add(batch.readings)
            self._publish_events(written.events)

    def _next(self, timeout: float) -> Received:
        """The next message of the current connection. One an earlier connection delivered is
        dropped unread: its id is void, and the broker sends it again on this connection (the
        session is persistent), so storing it now would only do the work twice. Behind a slow
        database, every reconnection would otherwise add its whole in-flight window again."""
        while True:
            item = self._inbox.get(timeout=timeout) if timeout > 0 else self._inbox.get_nowait()
            if item.generation == self._generation:
                return item
            metrics.STALE.inc()

    def _add(self, item: Received, batch: Batch, limits: Limits) -> None:
        """Parse one message into the batch: its readings, and a dead letter for what was refused."""
        msg = item.message
        topic, payload = msg.topic, msg.payload
        where = route(topic)
        metrics.MESSAGES_BY_ROUTE[where.kind if where else "unknown"].inc()
        if where is None:
            self._dead_letter(batch, item, payload, ["unknown_topic: no v1 route takes this topic"])
            return
        if len(payload) > self.settings.ingest_max_message_bytes:
            reason = f"oversized: {len(payload)} bytes, limit {self.settings.ingest_max_message_bytes}"
            self._dead_letter(batch, item, payload[: self.settings.ingest_max_message_bytes], [reason])
            return
        if where.kind in ("status", "camera_event"):
            self._add_device_message(where.kind, where.device_id, item, batch, limits)
            return
        if where.kind == "gateway":
            parsed = parse_gateway_message(payload, item.at, limits)
            self._hold_to_gateway(parsed, where.device_id)
            self._admit_devices(parsed, batch, where.device_id)
        else:
            parsed = parse_sensor_message(where.device_id, payload, item.at, limits)
            self._admit_devices(parsed, batch)
        batch.readings.extend(parsed.readings)
        if parsed.rejections:
            reasons = [str(r) for r in parsed.rejections]
            self._dead_letter(batch, item, payload, reasons, [r.code for r in parsed.rejections])

    def _add_device_message(self, kind: str, device_id: str, item: Received, batch: Batch, limits: Limits) -> None:
        """A device's status (registry and a device event) or a camera event (an event)."""
        if kind == "status":
            result = parse_status_message(device_id, item.message.payload, item.at)
        else:
            result = parse_camera_event(device_id, item.message.payload, item.at, limits)
        if isinstance(result, Rejection):
            self._dead_letter(batch, item, item.message.payload, [str(result)], [result.code])
            return
        if not self.registry.is_known(device_id):
            if self.settings.ingest_unknown_sensors == "reject":
                reason = f"unknown_sensor: device {device_id!r} is not registered"
                self._dead_letter(batch, item, item.message.payload, [reason], ["unknown_sensor"])
                return
            batch.new_sensors.setdefault(device_id, None)
        if isinstance(result, CameraEvent):
            batch.events.append(self._camera_event(result))
        else:
            batch.status_changes.append(result)

    def _camera_event(self, e: CameraEvent) -> Event:
        lat_lon = self.registry.locations.get(e.camera_id)
        return Event(
            time=e.time,
            kind=f"camera.{e.event}",
            severity=e.severity,
            unit_id=self.registry.unit_of(e.camera_id),
            source=Source(type="camera", id=e.camera_id),
            location=Location(lat=lat_lon[0], lon=lat_lon[1]) if lat_lon else None,
            title=e.title,
            data=e.data,
        )

    def _hold_to_gateway(self, parsed: Parsed, gateway_id: str) -> None:
        """A gateway speaks only for the sensors bound to it (or not yet known): another gateway's
        sensor, or one that reports on its own, is refused, so no gateway passes as any sensor."""
        wrong = {
            r.sensor_id
            for r in parsed.readings
            if self.registry.is_known(r.sensor_id) and self.registry.gateways.get(r.sensor_id) != gateway_id
        }
        for sensor_id in sorted(wrong):
            parsed.rejections.append(
                Rejection("wrong_gateway", f"sensor {sensor_id!r} is not bound to gateway {gateway_id!r}")
            )
        parsed.readings[:] = [r for r in parsed.readings if r.sensor_id not in wrong]

    def _admit_devices(self, parsed: Parsed, batch: Batch, gateway_id: str | None = None) -> None:
        """Unknown sensors are registered as unregistered (bound to the gateway they came
        through), or refused, as the settings say."""
        unknown = {r.sensor_id for r in parsed.readings if not self.registry.is_known(r.sensor_id)}
        if not unknown:
            return
        if self.settings.ingest_unknown_sensors == "accept":
            for sensor_id in unknown:
                batch.new_sensors.setdefault(sensor_id, gateway_id)
            return
        for sensor_id in sorted(unknown):
            parsed.rejections.append(Rejection("unknown_sensor", f"sensor {sensor_id!r} is not registered"))
        parsed.readings[:] = [r for r in parsed.readings if r.sensor_id not in unknown]

    @staticmethod
    def _dead_letter(
        batch: Batch, item: Received, payload: bytes, reasons: list[str], codes: list[str] | None = None
    ) -> None:
        for code in codes or [reasons[0].split(":", 1)[0]]:
            metrics.DEAD_LETTERS.labels(code).inc()
        text = "; ".join(reasons[:_MAX_REASONS])
        if len(reasons) > _MAX_REASONS:
            text += f"; and {len(reasons) - _MAX_REASONS} more"
        batch.dead_letters.append(DeadLetter(item.at, item.message.topic, payload, text))

    def _commit(self, batch: Batch) -> Written | None:
        """Write until it succeeds; None only when asked to stop before it could."""
        started = time.perf_counter()
        retrying = Retrying(
            retry=retry_if_exception_type(psycopg.OperationalError),
            wait=wait_exponential(multiplier=0.2, max=10),
            stop=stop_when_event_set(self.stopping),
            before_sleep=self._log_write_failure,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    try:
                        written = self.store.write(batch, lambda cur: self._judge(cur, batch))
                    except psycopg.Error:
                        self.rules.forget()  # its state may be ahead of what was rolled back
                        raise
        except psycopg.OperationalError:
            return None
        metrics.DATABASE_UP.set(1)
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(len(batch))
        metrics.ROWS_WRITTEN.inc(written.inserted)
        metrics.DUPLICATES.inc(len(batch.readings) - written.inserted)
        for sensor_id, gateway_id in batch.new_sensors.items():
            self.registry.remember(sensor_id, gateway_id)
        return written

    def _judge(self, cur: psycopg.Cursor, batch: Batch) -> list[Event]:
        """The rules on this batch's readings and camera events: alerts and their events."""
        started = time.perf_counter()
        hits = self.rules.judge_readings(cur, batch.readings, self.registry.kinds, self.registry.units)
        hits += self.rules.judge_camera_events(batch.events)
        events = apply_hits(cur, hits, self.registry.units, self.registry.locations) if hits else []
        metrics.RULES_SECONDS.observe(time.perf_counter() - started)
        return events

    @staticmethod
    def _log_write_failure(state) -> None:
        metrics.DATABASE_UP.set(0)
        log.warning(
            "batch not stored, retrying; messages stay unacknowledged",
            extra={"attempt": state.attempt_number, "error": str(state.outcome.exception())[:300]},
        )

    def _acknowledge(self, received: list[Received]) -> None:
        """Acknowledge in arrival order; mids of an earlier connection are left for redelivery."""
        for item in received:
            if item.generation == self._generation and item.message.qos > 0:
                self.client.ack(item.message.mid, item.message.qos)

    def _publish_events(self, events: list[Event]) -> None:
        """Stored events go out on their unit's live topic; a screen that misses one asks by id."""
        for event in events:
            self.client.publish(topics.live(event.unit_id or CITY_ID, event.kind), event.to_json(), qos=1)

    def _publish_digests(self) -> None:
        interval = self.settings.live_digest_interval_s
        while not self.stopping.wait(interval):
            for unit_id, payload in self.digest.drain().items():
                self.client.publish(topics.live(unit_id, "values"), payload, qos=0)
