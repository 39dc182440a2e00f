"""Cluster mode rides through the death of a broker node, of the database primary, of an ingest
worker and of each API node under a steady 2,000 readings a second: every reading stored once,
every alert opened once, every screen (through the load balancer) resumed with nothing missed;
and a backup taken afterwards restores with all of it.

Run by ``make test-cluster`` (CI runs it after ``make test``): the cluster takes a minute or two
to form on two cores.
"""

import shutil
import time
from collections.abc import Iterator

import pytest

from ioc_core.settings import REPO_ROOT
from tests.cluster.failover import Cluster, Scenario, SteadyLoad, restore
from tests.support import free_port, wait_until
from tests.test_faults_chain import Screen

pytestmark = pytest.mark.cluster

RATE = 2_000
MESSAGES = 160_000  # 80 s at 2,000 a second
SENSORS = 200
BREACHING = 60


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    base = 27000 + free_port() % 50 * 100  # away from make cluster's 17000 and from another run's
    # Under the checkout, not /tmp: PostgreSQL's own user must reach its data directory.
    directory = REPO_ROOT / "var" / f"test-cluster-{base}"
    try:
        cluster = Cluster.up(directory, base)
        yield cluster
    finally:
        Cluster(directory, {"IOC_CLUSTER_DIR": str(directory), "IOC_CLUSTER_PORT_BASE": str(base)}).down()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.timeout(900)
def test_nothing_is_lost_or_doubled_when_a_broker_node_the_primary_a_worker_and_api_nodes_die(cluster: Cluster) -> None:
    url = cluster.database_url
    scenario = Scenario.create(url, SENSORS, BREACHING)
    api_port = cluster.base + 80
    screens = [Screen(api_port, scenario.token) for _ in range(2)]
    for screen in screens:
        screen.start()
    for screen in screens:  # a screen sees what is committed after its first position
        wait_until(lambda s=screen: s.position is not None, timeout=60, what="the screens subscribed")
    load = SteadyLoad(cluster.base, cluster.service_password("simulator"), scenario, MESSAGES, RATE)
    load.start()

    def at(share: float) -> None:
        wait_until(lambda: load.progress() >= share, timeout=300, what=f"{share:.0%} of the load sent")

    at(0.2)
    cluster.kill("rabbit1")  # worker 1's node and the MQTT node of some clients, leader of some queues
    at(0.35)
    cluster.start("rabbit1")
    at(0.45)
    old_primary = cluster.primary()
    assert old_primary is not None
    cluster.kill(old_primary)
    wait_until(lambda: cluster.primary() not in (None, old_primary), timeout=60, what="the replica to take over")
    cluster.start(old_primary)  # it comes back as the replica (rewound), and replication is synchronous again
    at(0.55)
    cluster.kill("services:ingest-1")  # mid-batch; supervisord starts it again
    at(0.7)
    # Each API node in turn, so that every screen loses its node once, wherever HAProxy put it.
    cluster.kill("services:api1")
    wait_until(lambda: cluster.api_answers(1), timeout=60, what="the first API node back")
    at(0.85)
    cluster.kill("services:api2")
    load.join(300)
    assert load.sent == MESSAGES

    wait_until(lambda: scenario.counts(url)["rows"] >= MESSAGES, timeout=300, what="every reading stored")
    wait_until(lambda: scenario.counts(url)["alerts"] >= BREACHING, timeout=60, what="every alert opened")
    time.sleep(2)  # a window for anything doubled to arrive
    load.close()
    assert scenario.counts(url) == {
        "rows": MESSAGES,
        "distinct": MESSAGES,
        "alerts": BREACHING,
        "alerting_sensors": BREACHING,
    }
    opened = scenario.opened_events(url)
    assert len(opened) == BREACHING
    for screen in screens:
        wait_until(lambda s=screen: opened <= s.events.keys(), timeout=60, what="a screen to have every alert")
        screen.stop.set()
        screen.join(5)
        assert screen.resets == 0
        assert screen.reconnects >= 1  # its node died under it, and it resumed on the other

    # The backup of docs/cluster.md, restored on its own, holds all of it.
    server = restore(cluster, cluster.directory / "backup", cluster.base + 95)
    try:
        restored = f"postgresql://ioc:ioc@127.0.0.1:{cluster.base + 95}/ioc"
        wait_until(lambda: scenario.counts(restored)["rows"] >= 0, timeout=60, what="the restored copy to start")
        assert scenario.counts(restored) == scenario.counts(url)
    finally:
        server.terminate()
        server.wait(30)
