"""The broker session's logic alone (paho's callbacks called as its network thread would): what
an earlier connection delivered, and the bound on what the worker holds."""

import threading
import time

import paho.mqtt.client as paho

from ingest import metrics
from ingest.session import BrokerSession, IngestClient
from ioc_core.settings import Settings
from tests.support import Broker, publisher, wait_until


def session(inbox: int = 10, publish_queue: int = 10) -> BrokerSession:
    settings = Settings(ingest_inbox_messages=inbox, ingest_publish_queue=publish_queue)
    return BrokerSession(settings, "ioc-ingest-test", threading.Event())


def delivered(s: BrokerSession, mid: int, qos: int) -> None:
    m = paho.MQTTMessage(mid=mid, topic=b"ioc/v1/sensors/s/readings")
    m.qos = qos
    s._on_message(s.client, None, m)


def test_a_qos0_message_of_an_earlier_connection_is_kept_and_a_qos1_one_is_left_for_redelivery() -> None:
    s = session()
    s._generation = 1
    delivered(s, 1, qos=1)
    delivered(s, 2, qos=0)
    s._generation = 2  # reconnected: the broker sends the QoS 1 message again on this connection
    delivered(s, 1, qos=1)
    stale = metrics.STALE._value.get()
    assert [(m.message.mid, m.generation) for m in (s.next(0.1), s.next(0.1))] == [(2, 1), (1, 2)]
    assert metrics.STALE._value.get() == stale + 1


def test_a_full_inbox_stops_reading_until_the_worker_takes_from_it() -> None:
    s = session(inbox=3)
    network = threading.Thread(target=lambda: [delivered(s, i, 1) for i in range(1, 6)], daemon=True)
    network.start()
    wait_until(lambda: s.backlog() == 3, what="a full inbox")
    time.sleep(0.3)  # were it still reading, a fourth would be in by now
    assert s.backlog() == 3 and network.is_alive()  # the network thread waits: it reads no more
    assert [s.next(1).message.mid for _ in range(5)] == [1, 2, 3, 4, 5]
    network.join(2)
    assert not network.is_alive()


def test_a_stopping_worker_is_not_held_by_a_full_inbox() -> None:
    s = session(inbox=1)
    delivered(s, 1, 1)
    network = threading.Thread(target=delivered, args=(s, 2, 1), daemon=True)
    network.start()
    s._stopping.set()
    network.join(2)
    assert not network.is_alive()


def test_events_to_publish_are_held_up_to_a_bound_and_the_rest_counted_not_kept() -> None:
    """The network thread held by a full inbox (or the broker away) cannot send: what waits for it
    is bounded, so an alert storm during a backlog does not grow the worker."""
    s = session(publish_queue=3)
    unpublished = metrics.UNPUBLISHED._value.get()
    for i in range(5):
        s.publish("ioc/v1/live/hai-chau/alert.opened", b"{}" + bytes([i]), qos=1)
    assert len(s.client._out_messages) == 3
    assert metrics.UNPUBLISHED._value.get() == unpublished + 2


def test_the_lean_receive_path_hands_over_what_was_published_and_acknowledges_it_in_one_write(
    own_broker: Broker,
) -> None:
    """Against the real broker: topics (a dotted id, a non-ASCII level), an empty payload and one
    that spans several reads, QoS 0 and 1, many packets per read; then the batch's PUBACKs in one
    write, after which a new connection of the same session receives nothing again."""
    settings = Settings(mqtt_url=own_broker.url_for("ingest"), ingest_inbox_messages=10_000)
    s = BrokerSession(settings, "ioc-ingest-lean", threading.Event())
    assert isinstance(s.client, IngestClient)
    s.start()
    assert s.connected.wait(10)
    sent = [("ioc/v1/sensors/air.hai-chau.1/readings", b'{"v": 1}', 1), ("ioc/v1/sensors/x/readings", b"", 0)]
    sent += [("ioc/v1/devices/cầu-rồng/status", b"online", 1), ("ioc/v1/gateways/gw/readings", bytes(200_000), 1)]
    sent += [(f"ioc/v1/sensors/s-{i}/readings", f'{{"i": {i}}}'.encode(), 1) for i in range(2_000)]
    client = publisher(own_broker.port)
    for topic, payload, qos in sent:
        client.publish(topic, payload, qos=qos)
    received = [s.next(10) for _ in sent]
    assert [(r.message.topic, r.message.payload, r.message.qos) for r in received] == sent
    s.acknowledge(received)
    time.sleep(0.5)  # the PUBACKs written
    s.close()

    again = BrokerSession(settings, "ioc-ingest-lean", threading.Event())
    again.start()
    assert again.connected.wait(10)
    client.publish("ioc/v1/sensors/after/readings", b"1", qos=1)
    assert again.next(10).message.topic == "ioc/v1/sensors/after/readings"  # nothing redelivered before it
    again.close()
    client.disconnect()
