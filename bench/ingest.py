"""``python -m bench.ingest``: ingest throughput and latency against the local broker and database.

Each figure is printed beside a baseline measured in the same run on the same machine:
1. single-reading messages at QoS 1, stored per second, against as many bare paho subscriber
   processes as ingest has workers (one subscribing plainly, several sharing one group, as the
   workers do), which only count and acknowledge the same number of messages from the same broker;
2. gateway batches of 100 readings, readings stored per second, against a raw binary COPY of the
   same rows into the same hypertable;
3. latency from publish to committed row at a steady rate (commit times from PostgreSQL's
   ``track_commit_timestamp``).

Throughput is measured on a backlog: the messages are queued in the broker for the consumer's
persistent session while it is away, then the clock runs from its start until the last row (or
message) arrives, so the load generator's own CPU does not share the two cores with the consumer.
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import httpx
import orjson
import paho.mqtt.client as paho
import psycopg

from bench.scratch import scratch_stack
from ioc_core import topics
from ioc_core.settings import REPO_ROOT
from tests.conftest import ingest_subscribed
from tests.support import (
    Broker,
    Service,
    free_port,
    login,
    publish_all,
    publisher,
    service_password,
    wait_until,
)

SENSORS = 1000


def single_messages(n: int, tag: str) -> list[tuple[str, bytes]]:
    start = datetime.now(UTC) - timedelta(minutes=2)
    return [
        (
            f"ioc/v1/sensors/{tag}-{i % SENSORS}/readings",
            orjson.dumps({"ts": (start + timedelta(microseconds=i)).isoformat(), "values": {"pm25": i % 500}}),
        )
        for i in range(n)
    ]


def gateway_messages(n: int, tag: str) -> tuple[list[tuple[str, bytes]], list[tuple]]:
    """n messages of 100 readings, and the same readings as rows for the COPY baseline."""
    start = datetime.now(UTC) - timedelta(minutes=2)
    messages, rows = [], []
    for m in range(n):
        items = []
        for k in range(100):
            ts = start + timedelta(microseconds=m * 100 + k)
            sensor = f"{tag}-{(m * 100 + k) % SENSORS}"
            items.append({"sensor_id": sensor, "ts": ts.isoformat(), "values": {"pm25": k}})
            rows.append((ts, f"copy-{sensor}", "pm25", float(k)))
        # each block of 100 sensors behind a gateway of its own: a sensor speaks through one gateway
        messages.append((f"ioc/v1/gateways/gw-{m * 100 % SENSORS // 100}/readings", orjson.dumps(items)))
    return messages, rows


def _session(port: int, client_id: str, subscriptions: list[str] | None) -> None:
    """Create (with ``subscriptions``) or end (``None``) a persistent session of ingest's kind."""
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv311,
        clean_session=subscriptions is None,
    )
    login(client, "ingest")
    acked = threading.Event()
    client.on_subscribe = lambda *_: acked.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    for topic in subscriptions or []:
        acked.clear()
        client.subscribe(topic, qos=1)
        acked.wait(10)
    client.disconnect()
    client.loop_stop()


def bare_drain(broker: Broker, workers: int, messages: list[tuple[str, bytes]]) -> float:
    """The baseline: as many bare subscriber processes as ingest has workers, subscribed as the
    workers are (one plainly, several sharing one group), drain the same backlog. Messages per
    second between the first and the last message any of them received."""
    group = f"bare{uuid.uuid4().hex[:6]}"
    subscriptions = list(topics.INGEST_SUBSCRIPTIONS)
    if workers > 1:
        subscriptions = [topics.shared(t, group) for t in subscriptions]
    ids = [f"{group}-{w}" for w in range(1, workers + 1)]
    for client_id in ids:
        _session(broker.port, client_id, subscriptions)
    client = publisher(broker.port)
    publish_all(client, messages, timeout=600)
    client.disconnect()
    account = ["--username", "ioc-ingest", "--password", service_password("ioc-ingest")]
    command = [sys.executable, "-m", "bench.bare_subscriber", "--port", str(broker.port), *account]
    running = [
        subprocess.Popen([*command, "--client-id", c], stdout=subprocess.PIPE, cwd=REPO_ROOT, text=True) for c in ids
    ]
    results = [json.loads(p.communicate(timeout=900)[0]) for p in running]
    for client_id in ids:
        _session(broker.port, client_id, None)
    received = sum(r["messages"] for r in results)
    assert received == len(messages), f"the bare subscribers received {received} of {len(messages)}"
    first, last = min(r["first"] for r in results), max(r["last"] for r in results)
    return received / (last - first)


def rows_written(ports: list[int]) -> float:
    """Rows the workers report stored: cheap to poll, unlike a count over the table."""
    total = 0.0
    for port in ports:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        total += float(re.search(r"^ioc_ingest_rows_written_total (\S+)$", text, re.M).group(1))
    return total


def stored_rate(url: str, like: str, expected: int) -> float:
    """Rows per second between the first and the last commit (``track_commit_timestamp``), not
    counting the rows of the first commit: process start-up is not part of the rate."""
    with psycopg.connect(url) as conn:
        commits = conn.execute(
            "SELECT pg_xact_commit_timestamp(xmin) AS t, count(*) FROM readings WHERE sensor_id LIKE %s"
            " GROUP BY t ORDER BY t",
            (like,),
        ).fetchall()
    count = sum(n for _, n in commits)
    assert count == expected, f"{count} rows stored, {expected} expected"
    if len(commits) < 2:
        raise SystemExit(f"all {count} rows came in one commit: no rate to measure, publish more messages")
    return (count - commits[0][1]) / (commits[-1][0] - commits[0][0]).total_seconds()


def start_workers(env: dict[str, str], workers: int) -> list[tuple[Service, int]]:
    base = free_port()
    started = []
    for w in range(1, workers + 1):
        started.append(
            (
                Service(
                    "ingest",
                    {**env, "IOC_INGEST_METRICS_PORT": str(base), "IOC_INGEST_WORKERS": str(workers)},
                    "--worker",
                    str(w),
                ).start(),
                base + w - 1,
            )
        )
    for _, port in started:
        wait_until(lambda p=port: ingest_subscribed(p), timeout=30, what="ingest subscribed")
    return started


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Drain(NamedTuple):
    rate: float  # rows stored a second, first commit to last
    cpu_us: float  # the workers' CPU a message, from their resumption to the last row
    published: float  # messages a second the broker took from one publisher into the sessions
    resumed_at: datetime  # the backlog queued, the workers let go


def ingest_drain(env: dict[str, str], broker: Broker, url: str, workers: int, messages, rows: int, like: str) -> Drain:
    """Start the workers, pause them (SIGSTOP: subscribed, their sessions held) while the messages
    are queued, then let them go and time them storing all of it: the same start for every consumer
    (``bench.nodered`` pauses Node-RED so), and no start-up in the CPU."""
    running = start_workers(env, workers)
    pids = [service.process.pid for service, _ in running]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    client = publisher(broker.port)
    started = time.perf_counter()
    publish_all(client, messages, timeout=600)
    published = len(messages) / (time.perf_counter() - started)
    client.disconnect()
    idle = sum(cpu_seconds(pid) for pid in pids)
    resumed_at = datetime.now(UTC)
    for pid in pids:
        os.kill(pid, signal.SIGCONT)
    ports = [port for _, port in running]
    wait_until(lambda: rows_written(ports) >= rows, timeout=600, interval=0.5, what="all rows")
    cpu_us = (sum(cpu_seconds(pid) for pid in pids) - idle) * 1e6 / len(messages)
    for service, _ in running:
        service.stop()
    for w in range(1, workers + 1):  # no absent member keeps a share of the stream
        _session(broker.port, f"ioc-ingest-{w}", None)
    return Drain(stored_rate(url, like, rows), cpu_us, published, resumed_at)


def raw_copy(url: str, rows: list[tuple]) -> float:
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy("COPY readings (time, sensor_id, metric, value) FROM STDIN (FORMAT BINARY)") as cp,
        ):
            cp.set_types(["timestamptz", "text", "text", "float8"])
            for row in rows:
                cp.write_row(row)
        conn.commit()
        return len(rows) / (time.perf_counter() - started)


def latency(env: dict[str, str], broker: Broker, url: str, rate: int, seconds: float) -> tuple[float, float, int]:
    """p50 and p99 (ms) from publish to commit at a steady rate."""
    running = start_workers(env, 1)
    client = publisher(broker.port)
    n = int(rate * seconds)
    started = time.perf_counter()
    for i in range(n):
        while time.perf_counter() < started + i / rate:
            time.sleep(0.0005)
        payload = orjson.dumps({"ts": datetime.now(UTC).isoformat(), "values": {"level": i}})
        client.publish(f"ioc/v1/sensors/lat-{i % SENSORS}/readings", payload, qos=1)
    wait_until(lambda: rows_written([running[0][1]]) >= n, timeout=120, interval=0.2, what="latency rows")
    client.disconnect()
    running[0][0].stop()
    with psycopg.connect(url) as conn:
        delays = [
            r[0]
            for r in conn.execute(
                "SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - time) * 1000"
                " FROM readings WHERE sensor_id LIKE 'lat-%'"
            )
        ]
    q = statistics.quantiles(delays, n=100)
    return q[49], q[98], len(delays)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000, help="single-reading messages")
    parser.add_argument("--gateway-messages", type=int, default=2_000, help="gateway messages of 100 readings")
    parser.add_argument("--rate", type=int, default=2_000, help="messages/s for the latency run")
    parser.add_argument("--seconds", type=float, default=15, help="duration of the latency run")
    parser.add_argument("--workers", type=int, default=2, help="ingest workers for the throughput runs")
    args = parser.parse_args()

    with scratch_stack("ioc_bench_ingest") as (url, broker):
        env = {
            "IOC_DATABASE_URL": url,
            "IOC_MQTT_URL": broker.url_for("ingest"),
            "IOC_LOG_LEVEL": "WARNING",
            "IOC_ROLLUP_INTERVAL_S": "15",
        }
        print(
            f"ingest benchmark: {args.messages:,} single-reading messages, {args.gateway_messages:,} gateway messages"
        )

        for workers in sorted({1, args.workers}):
            bare_rate = bare_drain(broker, workers, single_messages(args.messages, f"b{workers}"))
            rate, cpu_us, _, _ = ingest_drain(
                env, broker, url, workers, single_messages(args.messages, f"w{workers}"), args.messages, f"w{workers}-%"
            )
            print(
                f"  {workers} process(es): bare subscribers {bare_rate:10,.0f} messages/s;"
                f" ingest stored {rate:10,.0f} messages/s   ratio {rate / bare_rate:.2f};"
                f" ingest CPU {cpu_us:.1f} us/message"
            )

        for workers in sorted({1, args.workers}):
            # the baseline before and after, so that neither gains from a smaller table
            _, rows = gateway_messages(args.gateway_messages, f"c{workers}a")
            before = raw_copy(url, rows)
            gateway, _ = gateway_messages(args.gateway_messages, f"g{workers}")
            rate, cpu_us, _, _ = ingest_drain(env, broker, url, workers, gateway, len(rows), f"g{workers}-%")
            after = raw_copy(url, gateway_messages(args.gateway_messages, f"c{workers}b")[1])
            copy_rate = (before + after) / 2
            print(
                f"  gateway batches: raw binary COPY {copy_rate:10,.0f} readings/s;"
                f" ingest, {workers} worker(s) {rate:10,.0f} readings/s"
                f"   ratio {rate / copy_rate:.2f}; ingest CPU {cpu_us / 100:.1f} us/reading"
            )

        p50, p99, n = latency(env, broker, url, args.rate, args.seconds)
        print(
            f"  latency publish -> commit at {args.rate:,} msg/s ({n:,} messages): p50 {p50:.0f} ms, p99 {p99:.0f} ms"
        )


if __name__ == "__main__":
    main()
