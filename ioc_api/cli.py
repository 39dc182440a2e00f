"""``python -m ioc_api.cli``: users and tokens.

user create USERNAME --role ROLE [--units hai-chau,hoa-cuong]   (password read from stdin or prompted)
user create USERNAME --role partner --tenant TENANT             (a partner providing NGSI-LD entities)
user list
user disable USERNAME
user unlock USERNAME                                            (after failed logins locked it)
user email USERNAME ADDRESS                                     (where notifications reach the user)
token create USERNAME [--name NAME] [--days 365]                (prints the token once)
token revoke TOKEN_ID
bootstrap                                                       (first admin with a random password)

Broker accounts (each change rewrites Mosquitto's password and ACL files and reloads the broker):
mqtt device ID          a registered sensor's password (new or replaced; printed once)
mqtt gateway ID         a gateway's password: it publishes readings for the sensors bound to it
mqtt service NAME       a service's URL with a new password (ioc-ingest, ioc-api, ...)
mqtt revoke USERNAME    the account is removed and its connections are closed
mqtt list
mqtt sync               rewrite the files from the database (a new or rebuilt broker)
mqtt bootstrap --env-file FILE   every service account, with its URL in FILE (make run)

Citizens' reports and incidents: apikey, category, calendar and sop (ioc_api/report_cli.py says how).
"""

import argparse
import getpass
import secrets
import sys
from datetime import timedelta
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from ioc_api import broker_accounts, report_cli
from ioc_api.security import ROLES, digest, hash_password
from ioc_core.ngsild import TENANT
from ioc_core.settings import get_settings


def _connect() -> psycopg.Connection:
    return psycopg.connect(get_settings().database_url, autocommit=True)


def _audit(conn: psycopg.Connection, action: str, target: str, details: dict) -> None:
    conn.execute(
        "INSERT INTO audit_log (actor, action, target, details) VALUES (%s, %s, %s, %s)",
        (f"cli:{getpass.getuser()}", action, target, Jsonb(details)),
    )


def create_user(
    conn: psycopg.Connection,
    username: str,
    role: str,
    units: list[str],
    password: str | None,
    tenant: str | None = None,
) -> int:
    if role not in ROLES:
        raise SystemExit(f"role must be one of {', '.join(ROLES)}")
    if role == "ward_operator" and not units:
        raise SystemExit("a ward operator needs --units")
    if (role == "partner") != bool(tenant):
        raise SystemExit("a partner, and only a partner, has a --tenant")
    if tenant is not None and not TENANT.fullmatch(tenant):
        raise SystemExit("a tenant is 1 to 40 lower-case letters, digits and '-'")
    unknown = [u for u in units if not conn.execute("SELECT 1 FROM units WHERE id = %s", (u,)).fetchone()]
    if unknown:
        raise SystemExit(f"unknown units: {', '.join(unknown)}")
    row = conn.execute(
        "INSERT INTO users (username, password_hash, role, units, tenant) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (username) DO NOTHING RETURNING id",
        (username, hash_password(password) if password else None, role, units, tenant),
    ).fetchone()
    if row is None:
        raise SystemExit(f"user {username!r} exists")
    _audit(conn, "user.create", username, {"role": role, "units": units, "tenant": tenant})
    return row[0]


def create_token(conn: psycopg.Connection, username: str, name: str | None, days: float) -> str:
    row = conn.execute("SELECT id FROM users WHERE username = %s", (username,)).fetchone()
    if row is None:
        raise SystemExit(f"no user {username!r}")
    token = "ioc_" + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO api_tokens (user_id, digest, kind, name, expires_at) VALUES (%s, %s, 'service', %s, now() + %s)",
        (row[0], digest(token), name, timedelta(days=days)),
    )
    _audit(conn, "token.create", username, {"name": name, "days": days})
    return token


def _password(args: argparse.Namespace) -> str | None:
    if args.no_password:
        return None
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n") or None
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise SystemExit("the passwords differ")
    return first


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ioc_api.cli", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    user = sub.add_parser("user").add_subparsers(dest="action", required=True)
    create = user.add_parser("create")
    create.add_argument("username")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--units", default="", help="comma-separated unit ids (ward operators)")
    create.add_argument("--tenant", help="a partner's NGSI-LD tenant (NGSILD-Tenant)")
    create.add_argument("--no-password", action="store_true", help="a service account: tokens only")
    user.add_parser("list")
    user.add_parser("disable").add_argument("username")
    user.add_parser("unlock").add_argument("username")
    email = user.add_parser("email")
    email.add_argument("username")
    email.add_argument("address")
    token = sub.add_parser("token").add_subparsers(dest="action", required=True)
    tcreate = token.add_parser("create")
    tcreate.add_argument("username")
    tcreate.add_argument("--name")
    tcreate.add_argument("--days", type=float, default=365)
    revoke = token.add_parser("revoke")
    revoke.add_argument("token_id", type=int)
    sub.add_parser("bootstrap")
    mqtt = sub.add_parser("mqtt").add_subparsers(dest="action", required=True)
    for kind in ("device", "gateway", "service"):
        mqtt.add_parser(kind).add_argument("username")
    mqtt.add_parser("revoke").add_argument("username")
    mqtt.add_parser("list")
    mqtt.add_parser("sync")
    mqtt.add_parser("bootstrap").add_argument("--env-file", type=Path, required=True)
    report_cli.add_parsers(sub)
    args = parser.parse_args()
    if args.what == "mqtt":
        try:
            _mqtt(args)
        except broker_accounts.AccountError as exc:
            raise SystemExit(str(exc)) from None
        return

    with _connect() as conn:
        if args.what in report_cli.COMMANDS:
            report_cli.run(conn, args, _audit)
            return
        match args.what, getattr(args, "action", None):
            case "user", "create":
                units = [u for u in args.units.split(",") if u]
                user_id = create_user(conn, args.username, args.role, units, _password(args), args.tenant)
                print(f"user {args.username} created (id {user_id})")
            case "user", "list":
                for row in conn.execute("SELECT id, username, role, units, disabled FROM users ORDER BY id"):
                    print(*row, sep="\t")
            case "user", "disable":
                conn.execute("UPDATE users SET disabled = true WHERE username = %s", (args.username,))
                _audit(conn, "user.disable", args.username, {})
            case "user", "email":
                if not conn.execute(
                    "UPDATE users SET email = %s WHERE username = %s RETURNING id", (args.address, args.username)
                ).fetchone():
                    raise SystemExit(f"no user {args.username!r}")
                _audit(conn, "user.email", args.username, {})
            case "user", "unlock":
                conn.execute(
                    "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE username = %s", (args.username,)
                )
                _audit(conn, "user.unlock", args.username, {})
            case "token", "create":
                print(create_token(conn, args.username, args.name, args.days))
            case "token", "revoke":
                conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE id = %s", (args.token_id,))
                _audit(conn, "token.revoke", str(args.token_id), {})
            case "bootstrap", _:
                if conn.execute("SELECT 1 FROM users LIMIT 1").fetchone():
                    return
                password = secrets.token_urlsafe(12)
                create_user(conn, "admin", "admin", [], password)
                print(f"  First start: user 'admin' created with password {password} (shown once).")


def _sync(conn: psycopg.Connection, broker_dir: Path) -> None:
    if not broker_accounts.sync(conn, broker_dir):
        print(f"files written to {broker_dir}; no broker runs from there to reload them", file=sys.stderr)


def _mqtt(args: argparse.Namespace) -> None:
    settings = get_settings()
    with _connect() as conn:
        match args.action:
            case "device" | "gateway" | "service":
                with conn.transaction():
                    password = broker_accounts.issue(conn, args.username, args.action)
                    _audit(conn, f"broker.{args.action}", args.username, {})
                _sync(conn, settings.broker_dir)
                if args.action == "service":
                    print(broker_accounts.service_url(settings.mqtt_url, args.username, password))
                else:
                    print(password)
            case "revoke":
                with conn.transaction():
                    broker_accounts.revoke(conn, args.username)
                    _audit(conn, "broker.revoke", args.username, {})
                _sync(conn, settings.broker_dir)
            case "list":
                for row in conn.execute(
                    "SELECT username, kind, rotated_at FROM broker_accounts ORDER BY kind, username"
                ):
                    print(*row, sep="\t")
            case "sync":
                _sync(conn, settings.broker_dir)
            case "bootstrap":
                with conn.transaction():
                    changed = broker_accounts.bootstrap_services(conn, args.env_file, settings.mqtt_url)
                    if changed:
                        _audit(conn, "broker.bootstrap", ",".join(changed), {})
                broker_accounts.sync(conn, settings.broker_dir)  # the broker may not be started yet


if __name__ == "__main__":
    main()
