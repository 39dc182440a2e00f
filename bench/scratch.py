"""The scratch database every benchmark runs in: created with the schema and units, then dropped."""

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from ioc_core.db import migrate
from ioc_core.settings import Settings
from ioc_core.sops import seed_sops
from ioc_core.units import seed_units
from tests.conftest import ADMIN_URL
from tests.support import Broker


def create_database(prefix: str) -> tuple[str, str]:
    """A fresh database with the project's schema and units on the project's cluster: (name, url)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        seed_units(conn, Settings().shared_dir)
        seed_sops(conn)
    return name, url


def drop_database(name: str) -> None:
    """Retried: TimescaleDB's scheduler, started as a superuser, may briefly hold a connection to
    the new database, and FORCE may not end another role's session."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        for attempt in range(30):
            try:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
                if attempt == 29:
                    raise
                time.sleep(1)


@contextmanager
def scratch_stack(prefix: str) -> Iterator[tuple[str, Broker]]:
    """A scratch database and a private broker for one run, both gone afterwards: (url, broker)."""
    name, url = create_database(prefix)
    broker = Broker()
    try:
        broker.start()
        yield url, broker
    finally:
        broker.remove()
        drop_database(name)
