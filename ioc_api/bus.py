"""The API's one subscription to the broker: live events and value digests (DESIGN.md).

Every API node subscribes on its own, with its own client id, and reconnects with backoff. It is
the fast path: events it misses while away still reach the screens through the database feed
(``ioc_api/feed.py``); values resume when it is back.
"""

import asyncio
import logging
import uuid

import aiomqtt

from ioc_api.live import LiveHub
from ioc_core import topics
from ioc_core.events import Event
from ioc_core.loops import record_failure
from ioc_core.mqtt import parse_url
from ioc_core.units import CITY_ID

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0
PUBLISH_TIMEOUT_S = 5.0


class BrokerUnavailable(Exception):
    """A message the broker has not taken."""


class LiveBus:
    def __init__(self, url: str, hub: LiveHub):
        self._address = parse_url(url)
        self._hub = hub
        self.connected = asyncio.Event()
        self._client: aiomqtt.Client | None = None

    async def run(self) -> None:
        """Connected whenever the broker lets it be: a lost connection, or anything else that goes
        wrong (logged with its traceback and counted), is followed by a new one after a backoff."""
        delay = 0.5
        while True:
            try:
                await self._session()
            except aiomqtt.MqttError as exc:
                log.warning("broker connection lost, retrying", extra={"error": str(exc), "retry_in_s": delay})
            except Exception as exc:
                record_failure("live-bus", exc)
            else:
                delay = 0.5
            self._client = None
            self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    async def _session(self) -> None:
        async with aiomqtt.Client(
            self._address.host,
            self._address.port,
            username=self._address.username,
            password=self._address.password,
            identifier=f"ioc-api-{uuid.uuid4().hex[:12]}",
            protocol=aiomqtt.ProtocolVersion.V311,  # no MQTT 5 property decoding per message
            keepalive=15,
        ) as client:
            await client.subscribe(topics.LIVE_ALL, qos=1)
            self._client = client
            self.connected.set()
            log.info("subscribed to live topics")
            async for message in client.messages:
                try:
                    self._dispatch(message.topic.value, message.payload)
                except Exception as exc:  # one bad message never ends the subscription
                    record_failure("live-bus", exc)

    async def publish_event(self, event: Event) -> None:
        """Push a stored event to every API node's screens. If the broker is away, the event is
        still stored, and screens that reconnect with ``since`` receive it."""
        client = self._client
        if client is None:
            log.warning("event stored but not pushed: broker unreachable", extra={"event_id": event.id})
            return
        try:
            await client.publish(topics.live(event.unit_id or CITY_ID, event.kind), event.to_json(), qos=1)
        except aiomqtt.MqttError as exc:
            log.warning("event stored but not pushed", extra={"event_id": event.id, "error": str(exc)})

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1, returning once the broker has taken it (its PUBACK);
        ``BrokerUnavailable`` when it cannot, so that the caller can say so and be asked again."""
        client = self._client
        if client is None:
            raise BrokerUnavailable("the broker is unreachable")
        try:
            await asyncio.wait_for(client.publish(topic, payload, qos=1), PUBLISH_TIMEOUT_S)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            raise BrokerUnavailable(f"the broker did not take the message: {exc or 'no answer'}") from exc

    def _dispatch(self, topic: str, payload: bytes) -> None:
        where = topics.live_of(topic)
        if where is None:
            return
        unit_id, kind = where
        if kind == "values":
            self._hub.values(unit_id, payload)
        else:
            self._hub.event(unit_id, payload)
