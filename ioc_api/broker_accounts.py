"""The broker's accounts, kept in the database and written to Mosquitto's files on every change.

A sensor's username is its registry id: the ACL lets it publish its own readings and status and
read nothing; a gateway also publishes readings for the sensors bound to it. Services have one
account each. Passwords are shown once and stored only as Mosquitto's hash, so the files can be
rewritten (or a new broker node given them) at any time.
"""

import re
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from ioc_core import broker_files

# What Mosquitto's password file (no ":") and ACL (no "+", "#", "/" or spaces) can name.
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# Any number: serialises rewrites of the broker's files by CLIs run at once.
_FILES_LOCK = 0x10C_0002


class AccountError(ValueError):
    """A request the CLI refuses, with the reason."""


def sync(conn: psycopg.Connection, broker_dir: Path) -> bool:
    """Rewrite the password and ACL files from the table and make the broker reread them."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_FILES_LOCK,))
        rows = conn.execute("SELECT username, kind, password_hash FROM broker_accounts").fetchall()
        accounts = {username: password_hash for username, _, password_hash in rows}
        gateways = [username for username, kind, _ in rows if kind == "gateway"]
        broker_files.write_broker_files(broker_dir, accounts, gateways)
    return broker_files.reload_broker(broker_dir)


def _store(conn: psycopg.Connection, username: str, kind: str, password: str) -> None:
    conn.execute(
        "INSERT INTO broker_accounts (username, kind, password_hash) VALUES (%s, %s, %s)"
        " ON CONFLICT (username) DO UPDATE SET kind = excluded.kind, password_hash = excluded.password_hash,"
        " rotated_at = now()",
        (username, kind, broker_files.hash_password(password)),
    )


def issue(conn: psycopg.Connection, username: str, kind: str) -> str:
    """A new password for a sensor, gateway or service (replacing any earlier one): shown once."""
    services = broker_files.service_usernames()
    if kind == "service":
        if username not in services:
            raise AccountError(f"no service {username!r}: the ACL names {', '.join(services)}")
    elif username.startswith("ioc-"):
        # On the devices' listener the username is the client id: it must not be a service's.
        raise AccountError(f"{username!r}: names starting with 'ioc-' are the services'")
    elif not USERNAME.fullmatch(username):
        raise AccountError(f"{username!r} cannot be a broker username: letters, digits, '_', '.', '-' only")
    if (
        kind == "device"
        and not conn.execute("SELECT 1 FROM sensors WHERE id = %s AND registered", (username,)).fetchone()
    ):
        raise AccountError(f"no registered sensor {username!r}: register it first")
    password = broker_files.new_password()
    _store(conn, username, kind, password)
    return password


def revoke(conn: psycopg.Connection, username: str) -> None:
    if conn.execute("DELETE FROM broker_accounts WHERE username = %s RETURNING 1", (username,)).fetchone() is None:
        raise AccountError(f"no broker account {username!r}")


def service_url(base_url: str, username: str, password: str) -> str:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{username}:{password}@{parts.hostname}:{parts.port or 1883}"


def bootstrap_services(conn: psycopg.Connection, env_file: Path, base_url: str) -> list[str]:
    """Every service account exists and ``env_file`` holds its URL (``IOC_MQTT_URL_INGEST=...``).

    Idempotent: a password in the file that the database knows is kept, and one the database has
    no account for is stored again (a new database), so restarting changes nothing. Where the
    database holds another password (``mqtt service`` replaced it), a new one is made for both.
    Returns the accounts made or changed.
    """
    known: dict[str, str] = {}
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            name, _, url = line.partition("=")
            password = urlsplit(url).password
            if password:
                known[name] = password
    changed, lines = [], []
    for username in broker_files.service_usernames():
        variable = "IOC_MQTT_URL_" + username.removeprefix("ioc-").upper()
        password = known.get(variable)
        row = conn.execute("SELECT password_hash FROM broker_accounts WHERE username = %s", (username,)).fetchone()
        if password is None or row is None or not broker_files.verify_password(row[0], password):
            if password is None or row is not None:
                password = broker_files.new_password()
            _store(conn, username, "service", password)
            changed.append(username)
        lines.append(f"{variable}={service_url(base_url, username, password)}\n")
    env_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    env_file.touch(mode=0o600)
    env_file.chmod(0o600)
    env_file.write_text("".join(lines))
    return changed
