"""Fixtures that give each test run the real parts: a fresh database on the project's
TimescaleDB cluster (dropped at the end) and a private Mosquitto with the project's config."""

import os
import re
import time
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from ioc_core.db import migrate
from ioc_core.settings import Settings
from ioc_core.sops import seed_sops
from ioc_core.units import seed_units
from tests import support
from tests.support import Broker, Service, free_port, start_api, wait_until

ADMIN_URL = os.environ.get("IOC_TEST_ADMIN_URL", "postgresql://ioc:ioc@127.0.0.1:5433/postgres")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """What a test's body starts and leaves running, passed or failed, stops with it: a leftover
    ingest worker would take the next test's messages."""
    since = len(support.STARTED)
    yield
    support.stop_started(since)


def pytest_sessionfinish(session: pytest.Session) -> None:
    support.stop_started(kept_too=True)


def _database_url(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    name = f"ioc_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _database_url(name)
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        seed_units(conn, Settings().shared_dir)
        seed_sops(conn)
    yield url
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    b = Broker()
    b.start()
    yield b
    b.remove()


@pytest.fixture
def own_broker() -> Iterator[Broker]:
    """A broker for one test: no session ingest takes its messages, no other test sees its faults."""
    b = Broker()
    b.start()
    yield b
    b.remove()


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def snapshot_dir(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("snapshots")


@pytest.fixture(scope="session")
def service_env(database_url: str, broker: Broker, snapshot_dir, tmp_path_factory) -> dict[str, str]:
    return {
        "IOC_SNAPSHOT_DIR": str(snapshot_dir),
        "IOC_PHOTO_DIR": str(tmp_path_factory.mktemp("photos")),
        "IOC_REPORTS_PER_MINUTE": "1000",  # the tests file many from one address; the limit has its own test
        "IOC_DATABASE_URL": database_url,
        "IOC_MQTT_URL": broker.url_for("ingest"),
        "IOC_LOG_LEVEL": "INFO",
        "IOC_INGEST_METRICS_PORT": str(free_port()),
        "IOC_LIVE_DIGEST_INTERVAL_S": "0.2",
        "IOC_INGEST_REGISTRY_REFRESH_S": "0.5",
        "IOC_ROLLUP_INTERVAL_S": "0.5",
        "IOC_RULES_REFRESH_S": "0.5",
        "IOC_ALERT_CHECK_S": "0.5",
        "IOC_ESCALATION_DEADLINES_S": '{"critical": [2, 4]}',
        "IOC_LIVE_TOKEN_RECHECK_S": "1",
    }


def ingest_subscribed(metrics_port: int) -> bool:
    """Ingest's metrics say it is connected and subscribed."""
    try:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=1).text
    except httpx.HTTPError:
        return False
    return "ioc_ingest_broker_connected 1.0" in text


def _last_success(metrics_port: int, loop: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    found = re.search(rf'^ioc_loop_last_success_timestamp_seconds{{loop="{loop}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def ingest_reloaded(metrics_port: int, state: str = "rules") -> None:
    """Wait until ingest has loaded its ``rules`` (or ``registry``) since this call: two loads end
    after it, so the second began after it."""
    since, loop = time.time(), f"{state}-refresh"
    first = wait_until(lambda: (t := _last_success(metrics_port, loop)) > since and t, what=f"ingest's {loop}")
    wait_until(lambda: _last_success(metrics_port, loop) > first, what=f"ingest's {loop} again")


def start_ingest(env: dict[str, str]) -> Service:
    """An ingest worker with ``env``, once it is subscribed."""
    service = Service("ingest", env).start()
    try:
        wait_until(lambda: ingest_subscribed(int(env["IOC_INGEST_METRICS_PORT"])), what="ingest subscribed")
    except TimeoutError:
        service.stop()
        raise
    return service


@pytest.fixture(scope="session")
def ingest(service_env: dict[str, str]) -> Iterator[Service]:
    service = start_ingest(service_env)
    yield service
    service.stop()


@pytest.fixture(scope="session")
def api(service_env: dict[str, str], broker: Broker) -> Iterator[Service]:
    service = start_api({**service_env, "IOC_MQTT_URL": broker.url_for("api")})
    yield service
    service.stop()


@pytest.fixture(scope="session")
def tokens(database_url: str) -> dict[str, str]:
    """A token per kind of caller; ward operators for Hải Châu and for Hòa Cường."""
    from ioc_api.cli import create_token, create_user

    people = {
        "admin": ("admin", []),
        "engineer": ("engineer", []),
        "city": ("city_operator", []),
        "hai_chau": ("ward_operator", ["hai-chau"]),
        "hoa_cuong": ("ward_operator", ["hoa-cuong"]),
        "public": ("public", []),
    }
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name, (role, units) in people.items():
            create_user(conn, f"t-{name}", role, units, f"pw-{name}")
        return {name: create_token(conn, f"t-{name}", "tests", 1) for name in people}


@pytest.fixture(scope="module")
def http(api: Service) -> Iterator[httpx.Client]:
    """The REST API's client, without credentials: pass ``headers=as_(token)``."""
    with httpx.Client(base_url=f"http://127.0.0.1:{api.port}/api/v1", timeout=10) as client:
        yield client
