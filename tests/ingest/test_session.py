"""The broker session's logic alone (paho's callbacks called as its network thread would): what
an earlier connection delivered, and the bound on what the worker holds."""

import threading
import time

import paho.mqtt.client as paho

from ingest import metrics
from ingest.session import BrokerSession
from ioc_core.settings import Settings
from tests.support import wait_until


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
