"""``python -m bench.nodered``: ingest against the flow a small city team wires in Node-RED 4.

The same single-reading QoS 1 messages (500 sensors) go to a private Mosquitto, and into the same
database, through each in turn:

- the peer: Node-RED's MQTT in (a persistent session, MQTT 3.1.1), a function making each message
  its rows, a join of 1,000 rows (or 100 ms), and one multi-row ``INSERT ... ON CONFLICT DO
  NOTHING`` per join through node-postgres (``bench/nodered/flows.json``). It acknowledges on
  receipt: killed, it loses what it held;
- ingest with one worker, then two: acknowledging after the commit.

1. From a backlog: the messages queued while the consumer, running and subscribed, is paused
   (SIGSTOP; see ``nodered_backlog`` and ``bench.ingest.ingest_drain``), then the rate from its
   resumption to its last commit (``rate_since``) and its CPU per message over the same time.
2. From a live stream: the messages published at a steady rate while the consumer runs; its CPU
   per message, and whether it kept up (the last row's delay).

Node-RED and node-postgres are installed by npm into the cache (``IOC_CACHE``) on the first run.
"""

import argparse
import json
import os
import signal
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg

from bench.ingest import _session, cpu_seconds, ingest_drain, rows_written, start_workers
from bench.scratch import scratch_stack
from ioc_core.settings import REPO_ROOT
from tests.support import Broker, free_port, publish_all, publisher, service_password, wait_until

NODE_RED, NODE_POSTGRES = "4.1.15", "8.23.1"
SENSORS = 500
HERE = REPO_ROOT / "bench" / "nodered"


def install() -> Path:
    cache = Path(os.environ.get("IOC_CACHE", Path.home() / ".cache" / "ioc")) / f"nodered-{NODE_RED}-{NODE_POSTGRES}"
    if not (cache / ".complete").exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", cache, "--no-audit", "--no-fund", "--silent",
             f"node-red@{NODE_RED}", f"pg@{NODE_POSTGRES}"],
            check=True, timeout=600,
        )  # fmt: skip
        (cache / ".complete").touch()
    return cache


def messages(n: int, tag: str, start: datetime | None = None) -> list[tuple[str, bytes]]:
    start = start or datetime.now(UTC) - timedelta(minutes=5)
    return [
        (
            f"ioc/v1/sensors/{tag}-{i % SENSORS}/readings",
            orjson.dumps({"ts": (start + timedelta(microseconds=i)).isoformat(), "values": {"pm25": i % 500}}),
        )
        for i in range(n)
    ]


class NodeRed:
    """Node-RED with the benchmark's flow, logged in to the broker as the ingest service."""

    def __init__(self, cache: Path, broker: Broker, url: str) -> None:
        self.cache, self.url = cache, url
        self.user_dir = Path(tempfile.mkdtemp(prefix="ioc-nodered-"))
        flows = (HERE / "flows.json").read_text().replace("@PORT@", str(broker.port))
        (self.user_dir / "flows.json").write_text(flows)
        credentials = {"broker": {"user": "ioc-ingest", "password": service_password("ioc-ingest")}}
        (self.user_dir / "flows_cred.json").write_text(json.dumps(credentials))
        self.log = self.user_dir / "node-red.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "NODERED_PORT": str(free_port()),
            "NODERED_USER_DIR": str(self.user_dir),
            "NODERED_MODULES": str(self.cache / "node_modules"),
            "NODERED_DATABASE_URL": self.url,
        }
        red = self.cache / "node_modules" / "node-red" / "red.js"
        self.log.write_text("")
        self.process = subprocess.Popen(
            ["node", red, "--settings", HERE / "settings.js"],
            env=env, stdout=self.log.open("a"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_until(lambda: "Connected to broker" in self.log.read_text(), timeout=60, what="Node-RED connected")
        time.sleep(1)  # its subscription follows the connection

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)


def stored(url: str, like: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM readings WHERE sensor_id LIKE %s", (like,)).fetchone()[0]


def rate_since(url: str, like: str, n: int, since: datetime) -> float:
    """Messages a second from ``since`` (the consumer ready, the backlog waiting) to the last commit:
    over the commits alone Node-RED would be flattered, as it receives for most of a second before
    its first one."""
    with psycopg.connect(url) as conn:
        count, last = conn.execute(
            "SELECT count(*), max(pg_xact_commit_timestamp(xmin)) FROM readings WHERE sensor_id LIKE %s", (like,)
        ).fetchone()
    assert count == n, f"{count} rows stored, {n} expected"
    return n / (last - since).total_seconds()


def nodered_backlog(red: NodeRed, broker: Broker, url: str, n: int, tag: str) -> tuple[float, float]:
    """Node-RED is paused (SIGSTOP), not stopped, while the backlog is queued: restarted, it would
    get the queued messages before its flow subscribes again, and drop them (acknowledged). Its
    database pool is opened first by a thousand messages of warm-up."""
    red.start()
    client = publisher(broker.port)
    publish_all(client, messages(1_000, f"{tag}w"))
    wait_until(lambda: stored(url, f"{tag}w-%") >= 1_000, timeout=60, what="Node-RED warmed up")
    start_up = red.cpu()
    os.kill(red.process.pid, signal.SIGSTOP)
    publish_all(client, messages(n, tag), timeout=600)
    client.disconnect()
    since = datetime.now(UTC)
    os.kill(red.process.pid, signal.SIGCONT)
    wait_until(lambda: stored(url, f"{tag}-%") >= n, timeout=600, interval=0.5, what="Node-RED's rows")
    cpu_us = (red.cpu() - start_up) * 1e6 / n
    red.stop()
    _session(broker.port, "nodered-bench", None)  # its session would keep the others' messages
    return rate_since(url, f"{tag}-%", n, since), cpu_us


def steady(client, n: int, rate: int, tag: str) -> float:
    """Publish n messages at ``rate`` a second, each stamped with its own sending time."""
    started = time.perf_counter()
    for i in range(n):
        while time.perf_counter() < started + i / rate:
            time.sleep(0.0005)
        payload = orjson.dumps({"ts": datetime.now(UTC).isoformat(), "values": {"pm25": i % 500}})
        client.publish(f"ioc/v1/sensors/{tag}-{i % SENSORS}/readings", payload, qos=1)
    return time.perf_counter() - started


def last_delay_ms(url: str, like: str) -> float:
    """How long after its sending the last reading was committed."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT max(extract(epoch FROM pg_xact_commit_timestamp(xmin) - time)) * 1000 FROM readings"
            " WHERE sensor_id LIKE %s",
            (like,),
        ).fetchone()[0]


def nodered_live(red: NodeRed, broker: Broker, url: str, n: int, rate: int, tag: str) -> tuple[float, float]:
    red.start()
    cpu_before = red.cpu()
    client = publisher(broker.port)
    steady(client, n, rate, tag)
    wait_until(lambda: stored(url, f"{tag}-%") >= n, timeout=300, interval=0.5, what="Node-RED's rows")
    cpu_us = (red.cpu() - cpu_before) * 1e6 / n
    client.disconnect()
    red.stop()
    _session(broker.port, "nodered-bench", None)
    return cpu_us, last_delay_ms(url, f"{tag}-%")


def ingest_live(env: dict[str, str], broker: Broker, url: str, n: int, rate: int, tag: str) -> tuple[float, float]:
    running = start_workers(env, 1)
    (service, port), pid = running[0], running[0][0].process.pid
    cpu_before = cpu_seconds(pid)
    client = publisher(broker.port)
    steady(client, n, rate, tag)
    wait_until(lambda: rows_written([port]) >= n, timeout=300, interval=0.5, what="ingest's rows")
    cpu_us = (cpu_seconds(pid) - cpu_before) * 1e6 / n
    client.disconnect()
    service.stop()
    _session(broker.port, "ioc-ingest-1", None)
    return cpu_us, last_delay_ms(url, f"{tag}-%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50_000, help="single-reading messages in each backlog")
    parser.add_argument("--rate", type=int, default=4_000, help="messages/s of the live stream")
    parser.add_argument("--seconds", type=int, default=15, help="length of the live stream")
    args = parser.parse_args()
    cache = install()
    live_n = args.rate * args.seconds
    with scratch_stack("ioc_bench_nodered") as (url, broker):
        env = {"IOC_DATABASE_URL": url, "IOC_MQTT_URL": broker.url_for("ingest"), "IOC_LOG_LEVEL": "WARNING"}
        red = NodeRed(cache, broker, url)
        print(f"ingest against Node-RED {NODE_RED}: {args.messages:,} single-reading messages from {SENSORS} sensors")
        peer_rate, peer_cpu = nodered_backlog(red, broker, url, args.messages, "nr")
        print(f"  backlog: Node-RED (1 process)   {peer_rate:9,.0f} messages/s   {peer_cpu:6.1f} us CPU a message")
        for workers in (1, 2):
            env["IOC_INGEST_WORKERS"] = str(workers)
            drain = ingest_drain(
                env, broker, url, workers, messages(args.messages, f"i{workers}"), args.messages, f"i{workers}-%"
            )
            rate, cpu_us = rate_since(url, f"i{workers}-%", args.messages, drain.resumed_at), drain.cpu_us
            print(
                f"  backlog: ingest, {workers} worker(s)    {rate:9,.0f} messages/s   {cpu_us:6.1f} us CPU a message"
                f"   {rate / peer_rate:.2f}x Node-RED"
            )
        env["IOC_INGEST_WORKERS"] = "1"
        print(f"  live stream at {args.rate:,} messages/s for {args.seconds} s:")
        peer_cpu, peer_delay = nodered_live(red, broker, url, live_n, args.rate, "nl")
        print(
            f"    Node-RED:         {peer_cpu:6.1f} us CPU a message; last row {peer_delay:7.0f} ms after its sending"
        )
        cpu_us, delay = ingest_live(env, broker, url, live_n, args.rate, "il")
        print(
            f"    ingest, 1 worker: {cpu_us:6.1f} us CPU a message; last row {delay:7.0f} ms after sending"
            f"   ({cpu_us / peer_cpu:.2f} of Node-RED's CPU)"
        )


if __name__ == "__main__":
    main()
