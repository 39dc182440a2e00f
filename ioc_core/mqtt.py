"""Broker address parsing and paho client construction shared by the services."""

from dataclasses import dataclass
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = None


def parse_url(url: str) -> BrokerAddress:
    """``mqtt://[user:password@]host[:port]``; the port defaults to 1883."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp"):
        raise ValueError(f"unsupported broker URL scheme {parts.scheme!r} in {url!r}")
    return BrokerAddress(parts.hostname or "127.0.0.1", parts.port or 1883, parts.username, parts.password)


def make_client(
    url: str,
    client_id: str,
    *,
    persistent: bool = False,
    manual_ack: bool = False,
    receive_maximum: int = 20000,
) -> tuple[paho.Client, BrokerAddress, Properties]:
    """An MQTT 5 paho client and the CONNECT properties to pass to ``connect``.

    ``persistent``: the broker keeps the session (subscriptions and queued QoS 1 messages) for a
    week while the client is away, so a restart loses nothing.
    """
    address = parse_url(url)
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv5,
        manual_ack=manual_ack,
    )
    if address.username:
        client.username_pw_set(address.username, address.password)
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    props = Properties(PacketTypes.CONNECT)
    props.ReceiveMaximum = receive_maximum
    if persistent:
        props.SessionExpiryInterval = 7 * 24 * 3600
    return client, address, props
