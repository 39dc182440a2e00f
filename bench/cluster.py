"""``python -m bench.cluster``: cluster mode against the single-node default, in one run.

1. Ingest from a backlog, the same work on both: ``--messages`` single-reading QoS 1 messages
   queued while two ingest workers are away, then the clock runs from the workers' first commit
   to their last (commit times from ``track_commit_timestamp``). Single node: Mosquitto (a shared
   subscription) and one PostgreSQL. Cluster: three RabbitMQ nodes (quorum queues, each message on
   a majority of nodes before its PUBACK) and PostgreSQL with a synchronous replica (each commit on
   two nodes). The publishing rate into each is printed too: what one publisher gets accepted.
2. Recovery at a steady 2,000 messages/s, each fault in turn (as the fault test): a broker node,
   the database primary and an ingest worker SIGKILLed; for each, the longest time
   without a new stored row after it, and for the primary the time until the replica took over;
   then each API node in turn, and the time until the screens it held were told their position
   by another node (resumed).
"""

import argparse
import shutil
import time
import uuid

import paho.mqtt.client as paho

from bench.ingest import ingest_drain, single_messages, stored_rate
from bench.scratch import scratch_stack
from ioc_core.settings import REPO_ROOT
from tests.cluster.failover import Cluster, Scenario, SteadyLoad, StoreWatch
from tests.support import publish_all, wait_until
from tests.test_faults_chain import Screen


def cluster_publisher(cluster: Cluster) -> paho.Client:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:6]}")
    client.username_pw_set("ioc-simulator", cluster.service_password("simulator"))
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", cluster.base)
    client.loop_start()
    return client


def timed_publish(client: paho.Client, messages) -> float:
    started = time.perf_counter()
    publish_all(client, messages, timeout=900)
    return len(messages) / (time.perf_counter() - started)


def single_node(messages: int) -> tuple[float, float]:
    """(published/s, stored/s) with Mosquitto and one PostgreSQL, two workers: the messages queued
    in the workers' persistent sessions while they are away (as bench.ingest does)."""
    with scratch_stack("ioc_bench_cluster") as (url, broker):
        env = {"IOC_DATABASE_URL": url, "IOC_MQTT_URL": broker.url_for("ingest"), "IOC_LOG_LEVEL": "WARNING"}
        drain = ingest_drain(env, broker, url, 2, single_messages(messages, "s2"), messages, "s2-%")
        return drain.published, drain.rate


def cluster_backlog(cluster: Cluster, messages: int) -> tuple[float, float]:
    """(published/s, stored/s) with the cluster's queues and replicated database, two workers."""
    cluster.supervisorctl("stop", "services:ingest-1", "services:ingest-2")
    client = cluster_publisher(cluster)
    publish_rate = timed_publish(client, single_messages(messages, "c2"))
    client.disconnect()
    cluster.supervisorctl("start", "services:ingest-1", "services:ingest-2")
    url = cluster.database_url
    wait_until(lambda: Scenario("c2", "", 0, 0).counts(url)["rows"] >= messages, timeout=900, what="all rows")
    return publish_rate, stored_rate(url, "c2-%", messages)


def recovery(cluster: Cluster, rate: int, seconds: int) -> dict[str, float]:
    url = cluster.database_url
    scenario = Scenario.create(url, 200, 60)
    screens = [Screen(cluster.base + 80, scenario.token) for _ in range(2)]
    for screen in screens:
        screen.start()
    watch = StoreWatch(url, scenario)
    watch.start()
    load = SteadyLoad(cluster.base, cluster.service_password("simulator"), scenario, rate * seconds, rate)
    load.start()
    figures: dict[str, float] = {}

    def at(share: float) -> None:
        wait_until(lambda: load.progress() >= share, timeout=600, what=f"{share:.0%} of the load")

    at(0.15)
    killed = cluster.kill("rabbit1")
    at(0.3)
    cluster.start("rabbit1")
    figures["broker node: longest pause in storing (s)"] = watch.stalled_after(killed)
    at(0.4)
    old = cluster.primary()
    killed = cluster.kill(old)
    wait_until(lambda: cluster.primary() not in (None, old), timeout=120, what="the replica to take over")
    figures["database primary: replica promoted after (s)"] = round(time.monotonic() - killed, 1)
    at(0.6)
    cluster.start(old)
    figures["database primary: longest pause in storing (s)"] = watch.stalled_after(killed)
    at(0.65)
    killed = cluster.kill("services:ingest-1")
    at(0.8)
    figures["ingest worker: longest pause in storing (s)"] = watch.stalled_after(killed)
    for node in (1, 2):  # each in turn: every screen loses its node once, wherever HAProxy put it
        wait_until(lambda n=node: cluster.api_answers(n), timeout=60, what="the API node up")
        before = {id(s): s.reconnects for s in screens}
        killed = cluster.kill(f"services:api{node}")

        def resumed(before: dict = before, killed: float = killed) -> bool:
            dropped = [s for s in screens if s.reconnects > before[id(s)]]
            return bool(dropped) and all(s.resumed_at > killed for s in dropped)

        wait_until(resumed, timeout=60, interval=0.05, what="the dropped screens to resume")
        last = max(s.resumed_at for s in screens if s.reconnects > before[id(s)])
        figures[f"API node {node}: its screens resumed after (s)"] = round(last - killed, 1)
    load.join(600)
    wait_until(lambda: scenario.counts(url)["rows"] >= load.sent, timeout=600, what="every reading stored")
    counts = scenario.counts(url)
    figures["readings sent"] = load.sent
    figures["readings stored"] = counts["rows"]
    figures["distinct readings stored"] = counts["distinct"]
    figures["alerts opened (of 60)"] = counts["alerts"]
    watch.stop.set()
    load.close()
    for screen in screens:
        screen.stop.set()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000, help="single-reading messages in each backlog")
    parser.add_argument("--rate", type=int, default=2_000, help="messages/s during the faults")
    parser.add_argument("--seconds", type=int, default=100, help="length of the steady load")
    parser.add_argument("--recovery-only", action="store_true", help="skip the backlogs")
    args = parser.parse_args()

    print(f"cluster benchmark: {args.messages:,} single-reading messages in each backlog, two ingest workers")
    if not args.recovery_only:
        single_publish, single_stored = single_node(args.messages)
    directory = REPO_ROOT / "var" / "bench-cluster"
    shutil.rmtree(directory, ignore_errors=True)
    cluster = Cluster.up(directory, 37000)
    try:
        if not args.recovery_only:
            cluster_publish, cluster_stored = cluster_backlog(cluster, args.messages)
            print(f"  published, one client:  single node {single_publish:9,.0f}/s   cluster {cluster_publish:9,.0f}/s"
                  f"   ratio {cluster_publish / single_publish:.2f}")  # fmt: skip
            print(f"  stored from a backlog:  single node {single_stored:9,.0f}/s   cluster {cluster_stored:9,.0f}/s"
                  f"   ratio {cluster_stored / single_stored:.2f}")  # fmt: skip
        print(f"recovery at {args.rate:,} messages/s:")
        for name, value in recovery(cluster, args.rate, args.seconds).items():
            print(f"  {name:50} {value:,}")
    finally:
        cluster.down()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
