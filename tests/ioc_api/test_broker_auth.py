"""Cluster mode's broker accounts: RabbitMQ's questions answered from the accounts table and the
ACL, as Mosquitto's files answer them (the same passwords, the same rights)."""

import threading
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import httpx
import psycopg
import pytest

from ioc_api import broker_accounts
from ioc_api.broker_auth import BrokerAuth, handler_for
from ioc_core import topics
from tests.support import free_port


@pytest.fixture(scope="module")
def ask(database_url: str) -> Iterator:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler_for(BrokerAuth(database_url)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/broker-auth"

    def ask(question: str, **form: str) -> str:
        return httpx.post(f"{base}/{question}", data=form, timeout=5).text

    yield ask
    server.shutdown()


@pytest.fixture(scope="module")
def accounts(database_url: str) -> dict[str, str]:
    """A device whose id has a dot (RabbitMQ keeps dots in routing keys), a gateway, a service."""
    suffix = uuid.uuid4().hex[:6]
    device, gateway = f"air.{suffix}", f"gw-{suffix}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sensors (id, kind, unit_id, registered) VALUES (%s, 'air', 'hai-chau', true)", (device,)
        )
        # The service's account as it is (its password is the session's services'), or a stand-in.
        conn.execute(
            "INSERT INTO broker_accounts (username, kind, password_hash) VALUES ('ioc-ingest', 'service', '')"
            " ON CONFLICT (username) DO NOTHING"
        )
        return {
            device: broker_accounts.issue(conn, device, "device"),
            gateway: broker_accounts.issue(conn, gateway, "gateway"),
        }


def key(topic: str) -> str:
    return topics.to_routing_key(topic)


def test_a_password_is_checked_against_its_stored_hash(ask, accounts: dict[str, str]) -> None:
    device = next(iter(accounts))
    assert ask("user", username=device, password=accounts[device]) == "allow"
    assert ask("user", username=device, password="wrong") == "deny"
    assert ask("user", username="nobody", password="x") == "deny"
    assert ask("vhost", username=device, vhost="/") == "allow"
    assert ask("vhost", username="nobody", vhost="/") == "deny"


def test_a_device_publishes_its_own_readings_and_nothing_else(ask, accounts: dict[str, str]) -> None:
    device, other = next(iter(accounts)), "air-other"

    def may(topic: str, permission: str = "write", user: str = device) -> str:
        return ask(
            "topic", username=user, vhost="/", resource="topic", name="amq.topic",
            permission=permission, routing_key=key(topic),
        )  # fmt: skip

    assert may(topics.sensor_readings(device)) == "allow"
    assert may(topics.device_status(device)) == "allow"
    assert may(topics.sensor_readings(other)) == "deny"
    assert may(topics.sensor_readings(device), "read") == "deny"  # devices read nothing
    assert may("ioc/v1/live/#", "read") == "deny"
    assert may(f"ioc/v1/sensors/{device}/x/readings") == "deny"  # not a v1 topic of its own


def test_gateways_and_services_have_the_rights_of_the_acl(ask, accounts: dict[str, str]) -> None:
    gateway = next(name for name in accounts if name.startswith("gw-"))

    def may(user: str, topic: str, permission: str) -> str:
        return ask(
            "topic", username=user, vhost="/", resource="topic", name="amq.topic",
            permission=permission, routing_key=key(topic),
        )  # fmt: skip

    assert may(gateway, topics.gateway_readings(gateway), "write") == "allow"
    assert may(gateway, topics.gateway_readings("gw-another"), "write") == "deny"
    assert may("ioc-ingest", "ioc/v1/sensors/#", "read") == "allow"
    assert may("ioc-ingest", "ioc/v1/live/hai-chau/alert.opened", "write") == "allow"
    assert may("ioc-ingest", "ioc/v1/sensors/x/readings", "write") == "deny"


def test_devices_declare_only_their_own_session_queue(ask, accounts: dict[str, str]) -> None:
    device = next(iter(accounts))

    def may(user: str, resource: str, name: str) -> str:
        return ask("resource", username=user, vhost="/", resource=resource, name=name, permission="configure")

    assert may(device, "queue", f"mqtt-subscription-{device}qos1") == "allow"
    assert may(device, "queue", "ioc.ingest.1") == "deny"
    assert may("ioc-ingest", "queue", "ioc.ingest.1") == "allow"
