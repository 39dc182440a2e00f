"""Helpers for tests that run the real broker, database and services as processes."""

import base64
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import paho.mqtt.client as paho

from ioc_core import broker_files
from ioc_core.settings import REPO_ROOT

# What tests leave to look at (screenshots, traces): out of the tracked tree unless asked
# (``make screenshots`` points it at docs/screenshots).
ARTIFACTS = Path(os.environ.get("IOC_TEST_ARTIFACTS") or REPO_ROOT / "var" / "test-artifacts")


# Every process the tests start, in order: what a test started in its body and left running, even
# when it failed, is stopped after it (tests/conftest.py), and whatever is left at the end of the
# session.
STARTED: list["Broker | Service"] = []


def stop_started(since: int = 0, kept_too: bool = False) -> None:
    """Stop the processes first started since ``since`` (an index into STARTED) that are still
    running, but for those kept for later tests (``keep``)."""
    for process in STARTED[since:]:
        if kept_too or not process.kept:
            process.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(
    predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> object:
    """The predicate's first true answer. The bound is for a machine loaded by other work too: a
    wait ends as soon as its condition holds, so only a failure costs the whole of it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def service_password(username: str) -> str:
    """The password of a service account on a test broker (ioc-ingest: test-ingest)."""
    return "test-" + username.removeprefix("ioc-")


def login(client: paho.Client, service: str) -> None:
    client.username_pw_set(f"ioc-{service}", service_password(f"ioc-{service}"))


def pg_cluster(action: str) -> None:
    """``pg_ctlcluster`` on the project's PostgreSQL cluster: ``stop -m fast``, ``start``, ``restart``."""
    prefix = [] if os.geteuid() == 0 else ["sudo"]
    command = ["bash", "-c", f"source {REPO_ROOT}/ops/common.sh && pg_ctlcluster $PG_MAJOR $PG_CLUSTER {action}"]
    subprocess.run(prefix + command, check=True, timeout=60)


class Broker:
    """A private Mosquitto with the project's config, ACL and service accounts (passwords from
    ``service_password``), on its own port and state directory; with ``device_tls``, also the
    devices' TLS listener on ``device_port``."""

    def __init__(self, device_tls: bool = False) -> None:
        self.port = free_port()
        self.device_port = free_port() if device_tls else None
        self.state_dir = Path(tempfile.mkdtemp(prefix="ioc-broker-"))
        self.process: subprocess.Popen | None = None
        self.kept = False
        accounts = {u: broker_files.hash_password(service_password(u)) for u in broker_files.service_usernames()}
        broker_files.write_broker_files(self.state_dir, accounts, [])

    def url_for(self, service: str) -> str:
        """The URL a service connects with: ``ingest``, ``api``, ``vision``, ``simulator``, ``monitor``."""
        return f"mqtt://ioc-{service}:{service_password('ioc-' + service)}@127.0.0.1:{self.port}"

    def start(self) -> None:
        ports = [str(self.port)] + ([str(self.device_port)] if self.device_port else [])
        self.process = subprocess.Popen(
            [str(REPO_ROOT / "ops" / "broker.sh"), str(self.state_dir), *ports],
            stdout=open(self.state_dir.parent / f"{self.state_dir.name}.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        if self not in STARTED:  # a restart stays with whoever started it first
            STARTED.append(self)
        wait_until(lambda: port_open(self.port), what=f"broker on port {self.port}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)


class Service:
    """A project service (``python -m MODULE``) started with the test's settings."""

    def __init__(self, module: str, env: dict[str, str], *args: str, log_path: Path | None = None):
        self.module, self.args = module, args
        self.env = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}
        self.log_path = log_path or Path(tempfile.mkstemp(prefix=f"ioc-{module}-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None
        self.kept = False

    def keep(self) -> "Service":
        """Started in a test's body for the tests after it (a fixture's process restarted): not
        stopped when the test ends, but by the fixture that holds it."""
        self.kept = True
        return self

    def start(self) -> "Service":
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            env=self.env,
            cwd=REPO_ROOT,
            stdout=open(self.log_path, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        if self not in STARTED:
            STARTED.append(self)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode if self.process else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_api(env: dict[str, str], port: int | None = None, timeout: float = 30) -> Service:
    """The API with ``env`` on ``port`` (a free one by default: ``service.port``), once its
    /health answers 200: database and broker both up."""
    port = port or free_port()
    service = Service("ioc_api", {**env, "IOC_API_PORT": str(port)}).start()
    service.port = port  # type: ignore[attr-defined]

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, timeout=timeout, what=f"API health on port {port}")
    except TimeoutError:
        service.stop()
        raise
    return service


def as_(token: str) -> dict[str, str]:
    """Headers that authenticate a REST request with ``token``."""
    return {"Authorization": f"Bearer {token}"}


def publisher(url_port: int, client_id: str = "", account: str = "simulator") -> paho.Client:
    """A connected paho client for publishing test traffic at QoS 1: as the simulator (which may
    speak for any device) or, for live topics, as ``ingest``."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    login(client, account)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", url_port)
    client.loop_start()
    return client


def publish_all(client: paho.Client, messages: list[tuple[str, bytes]], qos: int = 1, timeout: float = 60) -> None:
    """Publish and wait until the broker has acknowledged every message.

    In windows of 10,000: a message id has 16 bits, so at most 65,535 can be outstanding."""
    deadline = time.monotonic() + timeout
    for start in range(0, len(messages), 10_000):
        infos = [client.publish(topic, payload, qos=qos) for topic, payload in messages[start : start + 10_000]]
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "broker did not acknowledge a publish in time"


class Collector:
    """A subscriber that keeps every message it receives: ``(topic, payload)``; as the monitor
    account, which reads everything."""

    def __init__(self, port: int, topic: str):
        self.messages: list[tuple[str, bytes]] = []
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        login(self.client, "monitor")
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        subscribed = []
        self.client.on_subscribe = lambda *args: subscribed.append(True)
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        wait_until(lambda: subscribed, what=f"subscription to {topic}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class StalledClient:
    """A WebSocket client on a raw socket that sends its requests and then reads nothing, with a
    small receive buffer, so the server's sends to it back up as they would to a frozen screen."""

    def __init__(self, port: int):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(1)
        assert response.startswith(b"HTTP/1.1 101")

    def send(self, obj: dict) -> None:
        payload, mask = orjson.dumps(obj), os.urandom(4)
        header = (
            bytes([0x81, 0x80 | 126]) + struct.pack("!H", len(payload))
            if len(payload) > 125
            else bytes([0x81, 0x80 | len(payload)])
        )
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def close_code(self, timeout: float = 20) -> int | None:
        """Read what was buffered, frame by frame, up to the server's close frame: its code."""
        self.sock.settimeout(timeout)
        data, at = b"", 0
        while True:
            while len(data) - at >= 2:
                opcode, length, start = data[at] & 0x0F, data[at + 1] & 0x7F, at + 2
                if length == 126:
                    length, start = struct.unpack("!H", data[at + 2 : at + 4])[0], at + 4
                elif length == 127:
                    length, start = struct.unpack("!Q", data[at + 2 : at + 10])[0], at + 10
                if len(data) < start + length:
                    break
                if opcode == 0x8:
                    return struct.unpack("!H", data[start : start + 2])[0]
                at = start + length
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                return None
            if not chunk:
                return None
            data += chunk
