"""A cluster of the project's own on loopback (ops/cluster/cluster.sh), a steady load through it,
and its faults: shared by the cluster's fault test and its benchmark (bench/cluster.py)."""

import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import paho.mqtt.client as paho
import psycopg

from ioc_api.cli import create_token, create_user
from ioc_core.settings import REPO_ROOT
from tests.test_faults_chain import counts

SCRIPT = REPO_ROOT / "ops" / "cluster" / "cluster.sh"


@dataclass
class Cluster:
    directory: Path
    env: dict[str, str]

    @classmethod
    def up(cls, directory: Path, port_base: int) -> "Cluster":
        env = {**os.environ, "IOC_CLUSTER_DIR": str(directory), "IOC_CLUSTER_PORT_BASE": str(port_base)}
        env["IOC_CLUSTER_EXTRAS"] = "false"  # no simulated city, cameras or vision: the test is the load
        up = subprocess.run([SCRIPT, "up"], env=env, timeout=420, capture_output=True, text=True)
        if up.returncode:
            raise RuntimeError(f"the cluster did not come up:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}")
        lines = subprocess.run([SCRIPT, "env"], env=env, check=True, capture_output=True, text=True).stdout
        settings = dict(line.split("=", 1) for line in lines.splitlines())
        return cls(directory, {**env, **settings})

    def down(self) -> None:
        subprocess.run([SCRIPT, "down"], env={**os.environ, **self.env}, timeout=180, check=False)

    @property
    def database_url(self) -> str:
        return self.env["IOC_DATABASE_URL"]

    @property
    def base(self) -> int:
        return int(self.env["IOC_CLUSTER_PORT_BASE"])

    def service_password(self, name: str) -> str:
        for line in (self.directory / "secrets" / "mqtt.env").read_text().splitlines():
            if line.startswith(f"IOC_MQTT_URL_{name.upper()}="):
                return urlsplit(line.split("=", 1)[1]).password or ""
        raise KeyError(name)

    def supervisorctl(self, *args: str) -> str:
        conf = self.directory / "supervisord.conf"
        command = [REPO_ROOT / ".venv/bin/supervisorctl", "-c", conf, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120).stdout

    def pid(self, program: str) -> int:
        return int(self.supervisorctl("pid", program).strip())

    def start(self, program: str) -> None:
        """Start a node again (a dead machine back): it rejoins its cluster."""
        self.supervisorctl("start", program)

    def kill(self, program: str) -> float:
        """SIGKILL a program's whole process group (supervisord starts each in its own) and, for
        a database node, its postmaster's too: the machine died. A database or broker node stays
        down until ``start``; an API node is started again by supervisord. Returns when it was
        killed (monotonic)."""
        pid = self.pid(program)
        groups = {os.getpgid(pid)}
        if program.startswith("pg"):
            postmaster = self.directory / program / "data" / "postmaster.pid"
            if postmaster.exists():
                groups.add(os.getpgid(int(postmaster.read_text().split()[0])))
        killed = time.monotonic()
        for group in groups:
            os.killpg(group, signal.SIGKILL)
        return killed

    def api_answers(self, node: int) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.base + 80 + node}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def primary(self) -> str | None:
        """The database node that takes writes, as Patroni says (none during a failover)."""
        for node in (1, 2):
            try:
                if httpx.get(f"http://127.0.0.1:{self.base + 50 + node}/primary", timeout=2).status_code == 200:
                    return f"pg{node}"
            except httpx.HTTPError:
                continue
        return None


def restore(cluster: Cluster, backup: Path, port: int) -> subprocess.Popen:
    """``ops/cluster/backup.sh`` into ``backup``, then PostgreSQL started on that copy alone, as a
    new primary on ``port``: the restore docs/cluster.md describes."""
    env = {**os.environ, **cluster.env}
    subprocess.run([SCRIPT.parent / "backup.sh", backup], env=env, check=True, timeout=300, capture_output=True)
    for signal_file in ("standby.signal", "recovery.signal"):  # a copy of the replica: now a primary
        (backup / signal_file).unlink(missing_ok=True)
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    server = subprocess.Popen(
        [*as_postgres, "/usr/lib/postgresql/15/bin/postgres", "-D", backup, "-p", str(port),
         "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={backup}",
         "-c", "synchronous_standby_names=", "-c", "hot_standby=on"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return server


@dataclass
class Scenario:
    """Sensors of a kind of their own, a threshold rule on them, a city operator's token."""

    prefix: str
    token: str
    sensors: int
    breaching: int

    @classmethod
    def create(cls, database_url: str, sensors: int, breaching: int) -> "Scenario":
        prefix = f"cl-{uuid.uuid4().hex[:6]}"
        with psycopg.connect(database_url, autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO sensors (id, kind, unit_id, lat, lon) VALUES (%s, %s, 'hai-chau', 16.06, 108.22)",
                    [(f"{prefix}-{i}", prefix) for i in range(sensors)],
                )
            conn.execute(
                "INSERT INTO rules (name, type, sensor_kind, metric, severity, params)"
                " VALUES (%s, 'threshold', %s, 'level_m', 'major', '{\"op\": \"above\", \"value\": 10}')",
                (prefix, prefix),
            )
            create_user(conn, prefix, "city_operator", [], None)
            token = create_token(conn, prefix, "screen", 1)
        return cls(prefix, token, sensors, breaching)

    def counts(self, database_url: str) -> dict[str, int]:
        return counts(database_url, self.prefix)

    def opened_events(self, database_url: str) -> set[int]:
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT id FROM events WHERE kind = 'alert.opened' AND source_id LIKE %s", (self.prefix + "-%",)
            )
            return {r[0] for r in rows}


class SteadyLoad(threading.Thread):
    """``messages`` single readings at ``rate`` a second through the cluster's MQTT address, with a
    persistent session, so that paho sends again what a dead node never acknowledged."""

    def __init__(self, port: int, password: str, scenario: Scenario, messages: int, rate: int) -> None:
        super().__init__(daemon=True)
        self.scenario, self.messages, self.rate = scenario, messages, rate
        self.sent = self.acked = 0
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"load-{scenario.prefix}",
            protocol=paho.MQTTv311,
            clean_session=False,
        )
        self.client.username_pw_set("ioc-simulator", password)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.start_time = datetime.now(UTC) - timedelta(minutes=10)
        self.breach_every = messages // scenario.breaching

    def _on_publish(self, *_) -> None:
        self.acked += 1

    def message(self, i: int) -> tuple[str, bytes]:
        sensor = i % self.scenario.sensors
        # Message sensor * breach_every raises sensor (< breaching) above the threshold for good.
        breached = sensor < self.scenario.breaching and i >= sensor * self.breach_every
        value = 5.0 + (i % 7) / 10 + (10.0 if breached else 0.0)
        ts = (self.start_time + timedelta(milliseconds=i)).isoformat()
        topic = f"ioc/v1/sensors/{self.scenario.prefix}-{sensor}/readings"
        return topic, orjson.dumps({"ts": ts, "values": {"level_m": value}})

    def run(self) -> None:
        started = time.monotonic()
        for i in range(self.messages):
            while time.monotonic() < started + i / self.rate:
                time.sleep(0.001)
            self.client.publish(*self.message(i), qos=1)
            self.sent += 1

    def progress(self) -> float:
        return self.sent / self.messages

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass(eq=False)  # a thread: hashed by identity
class StoreWatch(threading.Thread):
    """Counts the scenario's stored readings every 0.2 s, to tell how long each fault stopped
    storing: the longest stretch without a new row after it."""

    database_url: str
    scenario: Scenario
    samples: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            rows = self.scenario.counts(self.database_url)["rows"]
            if rows >= 0:
                self.samples.append((time.monotonic(), rows))
            self.stop.wait(0.2)

    def stalled_after(self, moment: float) -> float:
        """Seconds from ``moment`` until the stored count moved again after its longest pause."""
        after = [(t, n) for t, n in self.samples if t >= moment]
        longest, last_t, last_n = 0.0, moment, after[0][1] if after else 0
        for t, n in after:
            if n != last_n:
                longest = max(longest, t - last_t)
                last_t, last_n = t, n
            if t - moment > 120:
                break
        return round(longest, 1)
