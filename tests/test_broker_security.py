"""The broker lets in only its accounts, and a device only on its own topics: accounts are made
and revoked through the CLI, which rewrites Mosquitto's files and reloads it without a restart."""

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as paho
import psycopg
import pytest

from ioc_api.broker_accounts import bootstrap_services
from ioc_core import broker_files
from ioc_core.settings import REPO_ROOT
from tests.support import Broker, service_password, wait_until


@dataclass
class Seen:
    connack: list[str] = field(default_factory=list)
    pubacks: dict[int, str] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    subacks: list[int] = field(default_factory=list)
    disconnects: int = 0


def connect(
    port: int, username: str | None, password: str | None, client_id: str = "", ca: Path | None = None
) -> tuple[paho.Client, Seen]:
    """An MQTT 5 client (its PUBACKs carry a reason) once the broker has answered its CONNECT."""
    seen = Seen()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.reconnect_delay_set(0.2, 0.5)
    if username:
        client.username_pw_set(username, password)
    if ca:
        client.tls_set(ca_certs=str(ca))  # the server's name (127.0.0.1) is checked too
    client.on_connect = lambda c, u, f, rc, p: seen.connack.append(str(rc))
    client.on_publish = lambda c, u, mid, rc, p: seen.pubacks.__setitem__(mid, str(rc))
    client.on_message = lambda c, u, m: seen.messages.append(m.topic)
    client.on_subscribe = lambda c, u, mid, codes, p: seen.subacks.append(mid)

    def on_disconnect(*_) -> None:
        seen.disconnects += 1

    client.on_disconnect = on_disconnect
    client.connect("127.0.0.1", port)
    client.loop_start()
    wait_until(lambda: seen.connack, what="the broker's answer")
    return client, seen


def subscribe(client: paho.Client, seen: Seen, topic: str) -> None:
    """Subscribe, once the broker has answered (whether it grants it or not)."""
    mid = client.subscribe(topic, qos=1)[1]
    wait_until(lambda: mid in seen.subacks, what="SUBACK")


def puback(client: paho.Client, seen: Seen, topic: str) -> str:
    mid = client.publish(topic, b'{"values": {"pm25": 1}}', qos=1).mid
    return str(wait_until(lambda: seen.pubacks.get(mid), what="PUBACK"))


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ioc_api.cli", "mqtt", *args],
        env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture(scope="module")
def secured(database_url: str) -> Iterator[tuple[Broker, dict[str, str], list[str]]]:
    """A broker with the devices' TLS listener, whose accounts the CLI manages from the test
    database; two registered sensors. Yields (broker, the CLI's environment, sensor ids)."""
    broker = Broker(device_tls=True)
    broker.start()
    sensors = [f"sec-{uuid.uuid4().hex[:6]}-{n}" for n in "ab"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        for sensor in sensors:
            conn.execute("INSERT INTO sensors (id, unit_id) VALUES (%s, 'hai-chau')", (sensor,))
        for username in broker_files.service_usernames():
            conn.execute(
                "INSERT INTO broker_accounts (username, kind, password_hash) VALUES (%s, 'service', %s)"
                " ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash",
                (username, broker_files.hash_password(service_password(username))),
            )
    env = {"IOC_DATABASE_URL": database_url, "IOC_BROKER_DIR": str(broker.state_dir), "IOC_LOG_LEVEL": "WARNING"}
    yield broker, env, sensors
    broker.remove()


def test_clients_without_a_valid_account_are_refused_on_both_listeners(secured) -> None:
    broker, _, _ = secured
    ca = broker.state_dir / "tls" / "ca.crt"
    for port, tls in ((broker.port, None), (broker.device_port, ca)):
        for username, password in ((None, None), ("nobody", "guess"), ("ioc-ingest", "wrong")):
            client, seen = connect(port, username, password, ca=tls)
            assert seen.connack[0] == "Not authorized", (port, username)
            client.loop_stop()


def test_a_device_publishes_only_as_itself_and_reads_nothing(secured) -> None:
    broker, env, (mine, other) = secured
    made = cli(env, "device", mine)
    assert made.returncode == 0, made.stderr
    password = made.stdout.strip()
    ca = broker.state_dir / "tls" / "ca.crt"
    monitor, watched = connect(broker.port, "ioc-monitor", service_password("ioc-monitor"))
    subscribe(monitor, watched, "ioc/v1/#")
    device, seen = connect(broker.device_port, mine, password, client_id="anything", ca=ca)
    assert seen.connack == ["Success"]
    subscribe(device, seen, "ioc/v1/#")

    assert puback(device, seen, f"ioc/v1/sensors/{mine}/readings") == "Success"
    assert puback(device, seen, f"ioc/v1/sensors/{other}/readings") == "Not authorized"
    assert puback(device, seen, f"ioc/v1/gateways/{mine}/readings") == "Not authorized"  # not a gateway
    assert puback(device, seen, f"ioc/v1/cameras/{mine}/events") == "Not authorized"
    assert puback(device, seen, "ioc/v1/live/hai-chau/alert.opened") == "Not authorized"
    wait_until(lambda: f"ioc/v1/sensors/{mine}/readings" in watched.messages, what="the device's own reading")
    time.sleep(0.3)
    assert watched.messages == [f"ioc/v1/sensors/{mine}/readings"]  # nothing else got through
    assert seen.messages == []  # and the device read nothing, not even its own message
    for client in (monitor, device):
        client.loop_stop()


def test_a_device_cannot_take_over_a_services_session(secured) -> None:
    broker, env, (_, other) = secured
    password = cli(env, "device", other).stdout.strip()
    ingest, ingest_seen = connect(broker.port, "ioc-ingest", service_password("ioc-ingest"), client_id="ioc-ingest-1")
    device, seen = connect(
        broker.device_port, other, password, client_id="ioc-ingest-1", ca=broker.state_dir / "tls" / "ca.crt"
    )
    assert seen.connack == ["Success"]  # connected, but under its own id
    time.sleep(0.5)
    assert ingest_seen.disconnects == 0 and ingest.is_connected()
    for client in (ingest, device):
        client.loop_stop()


def test_revoking_or_replacing_a_password_takes_effect_at_once_without_a_restart(secured) -> None:
    broker, env, (mine, _) = secured
    ca = broker.state_dir / "tls" / "ca.crt"
    pid = broker.process.pid
    first = cli(env, "device", mine).stdout.strip()
    device, seen = connect(broker.device_port, mine, first, ca=ca)
    assert seen.connack == ["Success"]

    second = cli(env, "device", mine).stdout.strip()  # a new password: the old one stops working
    wait_until(lambda: seen.disconnects, what="the old password's connection closed")
    device.loop_stop()
    assert connect(broker.device_port, mine, first, ca=ca)[1].connack == ["Not authorized"]
    device, seen = connect(broker.device_port, mine, second, ca=ca)
    assert seen.connack == ["Success"]

    assert cli(env, "revoke", mine).returncode == 0
    wait_until(lambda: seen.disconnects, what="the revoked device's connection closed")
    device.loop_stop()
    assert connect(broker.device_port, mine, second, ca=ca)[1].connack == ["Not authorized"]
    assert broker.process.pid == pid and broker.process.poll() is None  # reloaded, not restarted


def test_a_gateway_publishes_on_its_own_topic_only(secured) -> None:
    broker, env, _ = secured
    gateway = f"gw-{uuid.uuid4().hex[:6]}"
    password = cli(env, "gateway", gateway).stdout.strip()
    client, seen = connect(broker.device_port, gateway, password, ca=broker.state_dir / "tls" / "ca.crt")
    assert puback(client, seen, f"ioc/v1/gateways/{gateway}/readings") in ("Success", "No matching subscribers")
    assert puback(client, seen, "ioc/v1/gateways/gw-other/readings") == "Not authorized"
    client.loop_stop()


def test_the_cli_refuses_what_it_should_with_a_reason(secured) -> None:
    _, env, _ = secured
    unknown = cli(env, "device", "never-registered")
    assert unknown.returncode != 0 and "register it first" in unknown.stderr
    assert "are the services'" in cli(env, "gateway", "ioc-ingest").stderr
    assert "are the services'" in cli(env, "gateway", "ioc-ingest-9").stderr  # a service's client id
    assert "cannot be a broker username" in cli(env, "gateway", "gw:1").stderr  # ":" ends a passwd name
    assert "no service" in cli(env, "service", "ioc-root").stderr
    assert "no broker account" in cli(env, "revoke", "nobody-here").stderr


def test_every_service_gets_an_account_and_a_url_once(secured, tmp_path: Path) -> None:
    broker, env, _ = secured
    env_file = tmp_path / "secrets" / "mqtt.env"
    with psycopg.connect(env["IOC_DATABASE_URL"], autocommit=True) as conn:
        assert set(bootstrap_services(conn, env_file, broker.url_for("monitor"))) == set(
            broker_files.service_usernames()
        )
        first = env_file.read_text()
        assert bootstrap_services(conn, env_file, broker.url_for("monitor")) == []  # a restart changes nothing
        assert env_file.read_text() == first and env_file.stat().st_mode & 0o077 == 0
    assert cli(env, "sync").returncode == 0
    url = urlsplit(dict(line.split("=", 1) for line in first.splitlines())["IOC_MQTT_URL_INGEST"])
    client, seen = connect(broker.port, url.username, url.password)
    assert seen.connack == ["Success"]
    client.loop_stop()
    # The bootstrap replaced the test's password of each service.
    assert connect(broker.port, "ioc-ingest", service_password("ioc-ingest"))[1].connack == ["Not authorized"]
