"""Topics across brokers: RabbitMQ's routing keys (cluster mode) read back as MQTT topics."""

import pytest

from ioc_core import topics


@pytest.mark.parametrize(
    ("key", "topic"),
    [
        ("ioc.v1.sensors.air-1.readings", "ioc/v1/sensors/air-1/readings"),
        ("ioc.v1.sensors.air.hai-chau.1.readings", "ioc/v1/sensors/air.hai-chau.1/readings"),  # a dotted id
        ("ioc.v1.gateways.gw.7.readings", "ioc/v1/gateways/gw.7/readings"),
        ("ioc.v1.devices.cam.1.status", "ioc/v1/devices/cam.1/status"),
        ("ioc.v1.sensors.#", "ioc/v1/sensors/#"),
        ("ioc.v1.sensors.*.readings", "ioc/v1/sensors/+/readings"),
        ("ioc.v1.live.hai-chau.alert.opened", "ioc/v1/live/hai-chau/alert/opened"),
    ],
)
def test_a_routing_key_reads_back_as_its_topic(key: str, topic: str) -> None:
    assert topics.from_routing_key(key) == topic


def test_a_device_topic_goes_there_and_back() -> None:
    topic = topics.sensor_readings("water.cam-le.3")
    assert topics.from_routing_key(topics.to_routing_key(topic)) == topic
    assert topics.route(topics.from_routing_key(topics.to_routing_key(topic))) == topics.Route(
        "readings", "water.cam-le.3"
    )


def test_an_event_kind_reads_the_same_whether_its_dot_came_as_a_level_or_not() -> None:
    assert topics.live_of("ioc/v1/live/hai-chau/alert.opened") == ("hai-chau", "alert.opened")
    assert topics.live_of("ioc/v1/live/hai-chau/alert/opened") == ("hai-chau", "alert.opened")
    assert topics.live_of("ioc/v1/live/hai-chau/values") == ("hai-chau", "values")
    assert topics.live_of("ioc/v1/live/hai-chau") is None
