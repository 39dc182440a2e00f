"""The CLI's commands for citizens' reports (``python -m ioc_api.cli``):

apikey create NAME [--channel app|zalo|partner|web|simulated] [--per-minute 120] [--replace]   (prints it once)
apikey list
apikey revoke NAME
category list
category set CODE [--deadline-days 3] [--emergency/--no-emergency] [--name-vi ..] [--name-en ..] [--active/--inactive]
calendar set DAY --working|--off [--note ..]     (a make-up Saturday, or an extra day off)
calendar unset DAY
calendar show YEAR
sop list
sop import FILE [FILE ...]                        (each a new version of its type)
sop export TYPE [--version N]                     (YAML on stdout)
"""

import argparse
import secrets
from datetime import date
from pathlib import Path

import psycopg

from ioc_api.security import digest
from ioc_core import sops
from ioc_core.working_days import public_holidays

COMMANDS = ("apikey", "category", "calendar", "sop")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    apikey = sub.add_parser("apikey", help="Open311 keys of apps").add_subparsers(dest="action", required=True)
    create = apikey.add_parser("create")
    create.add_argument("name")
    create.add_argument("--channel", choices=("app", "zalo", "partner", "web", "simulated"), default="app")
    create.add_argument("--replace", action="store_true", help="revoke the app's key first, if it has one")
    create.add_argument("--per-minute", type=int, default=120)
    apikey.add_parser("list")
    apikey.add_parser("revoke").add_argument("name")
    category = sub.add_parser("category", help="categories of citizens' reports").add_subparsers(
        dest="action", required=True
    )
    category.add_parser("list")
    cset = category.add_parser("set")
    cset.add_argument("code")
    cset.add_argument("--deadline-days", type=float)
    cset.add_argument("--emergency", action=argparse.BooleanOptionalAction)
    cset.add_argument("--active", action=argparse.BooleanOptionalAction)
    cset.add_argument("--name-vi")
    cset.add_argument("--name-en")
    calendar = sub.add_parser("calendar", help="the city's own working days").add_subparsers(
        dest="action", required=True
    )
    day = calendar.add_parser("set")
    day.add_argument("day", type=date.fromisoformat)
    kind = day.add_mutually_exclusive_group(required=True)
    kind.add_argument("--working", action="store_true", help="worked (a make-up Saturday)")
    kind.add_argument("--off", action="store_true", help="an extra day off")
    day.add_argument("--note", default="")
    calendar.add_parser("unset").add_argument("day", type=date.fromisoformat)
    calendar.add_parser("show").add_argument("year", type=int)
    sop = sub.add_parser("sop", help="standard operating procedures").add_subparsers(dest="action", required=True)
    sop.add_parser("list")
    sop.add_parser("import").add_argument("files", nargs="+", type=Path)
    export = sop.add_parser("export")
    export.add_argument("type")
    export.add_argument("--version", type=int)


def create_api_key(conn: psycopg.Connection, name: str, channel: str, per_minute: int) -> str:
    key = "o311_" + secrets.token_urlsafe(24)
    row = conn.execute(
        "INSERT INTO api_clients (name, channel, digest, requests_per_minute) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (name) DO NOTHING RETURNING id",
        (name, channel, digest(key), per_minute),
    ).fetchone()
    if row is None:
        raise SystemExit(f"an app named {name!r} has a key: revoke it first")
    return key


def revoke_api_key(conn: psycopg.Connection, name: str) -> bool:
    """Revoke the app's key; its name is freed for a new one, and the old row keeps the reports it filed."""
    renamed = f"{name} (revoked {secrets.token_hex(3)})"
    return bool(
        conn.execute(
            "UPDATE api_clients SET revoked_at = now(), name = %s WHERE name = %s AND revoked_at IS NULL RETURNING id",
            (renamed, name),
        ).fetchone()
    )


def run(conn: psycopg.Connection, args: argparse.Namespace, audit) -> None:
    match args.what, args.action:
        case "apikey", "create":
            if args.replace:
                revoke_api_key(conn, args.name)
            print(create_api_key(conn, args.name, args.channel, args.per_minute))
            audit(conn, "apikey.create", args.name, {"channel": args.channel})
        case "apikey", "list":
            for row in conn.execute(
                "SELECT name, channel, requests_per_minute, created_at, revoked_at FROM api_clients ORDER BY name"
            ):
                print(*row, sep="\t")
        case "apikey", "revoke":
            if not revoke_api_key(conn, args.name):
                raise SystemExit(f"no app {args.name!r} with a key")
            audit(conn, "apikey.revoke", args.name, {})
        case "category", "list":
            for row in conn.execute(
                "SELECT code, name_vi, name_en, deadline_days, emergency, active FROM report_categories"
                " ORDER BY sort_order, code"
            ):
                print(*row, sep="\t")
        case "category", "set":
            changes = {
                column: value
                for column, value in (
                    ("deadline_days", args.deadline_days),
                    ("emergency", args.emergency),
                    ("active", args.active),
                    ("name_vi", args.name_vi),
                    ("name_en", args.name_en),
                )
                if value is not None
            }
            if not changes:
                raise SystemExit("nothing to change")
            days = changes.get("deadline_days")
            if days is not None and not (0.5 <= days <= 60 and (days * 2).is_integer()):
                raise SystemExit("a deadline is 0.5 to 60 working days, in half days")
            columns = ", ".join(f"{k} = %({k})s" for k in changes)
            if not conn.execute(
                f"UPDATE report_categories SET {columns}, updated_at = now() WHERE code = %(code)s RETURNING code",
                {**changes, "code": args.code},
            ).fetchone():
                raise SystemExit(f"no category {args.code!r}")
            audit(conn, "category.update", args.code, changes)
        case "calendar", "set":
            conn.execute(
                "INSERT INTO calendar_days (day, working, note) VALUES (%s, %s, %s)"
                " ON CONFLICT (day) DO UPDATE SET working = excluded.working, note = excluded.note",
                (args.day, args.working, args.note),
            )
            audit(conn, "calendar.set", args.day.isoformat(), {"working": args.working, "note": args.note})
        case "calendar", "unset":
            conn.execute("DELETE FROM calendar_days WHERE day = %s", (args.day,))
            audit(conn, "calendar.unset", args.day.isoformat(), {})
        case "sop", "list":
            for type_, (_, s) in sorted(sops.current(conn).items()):
                print(type_, f"v{s.version}", len(s.steps), s.name_en, sep="\t")
        case "sop", "import":
            for path in args.files:
                try:
                    stored = sops.store(conn, sops.Sop.from_yaml(path.read_text()), "cli")
                except (OSError, ValueError) as exc:  # a pydantic ValidationError is a ValueError
                    raise SystemExit(f"{path}: {exc}") from None
                audit(conn, "sop.import", f"{stored.type} v{stored.version}", {"file": str(path)})
                print(f"{stored.type} v{stored.version}")
        case "sop", "export":
            row = conn.execute(
                "SELECT type, version, name_vi, name_en, source, match, steps FROM sops WHERE type = %s"
                " AND (%s::int IS NULL OR version = %s) ORDER BY version DESC LIMIT 1",
                (args.type, args.version, args.version),
            ).fetchone()
            if row is None:
                raise SystemExit(f"no SOP {args.type!r}")
            keys = ("type", "version", "name_vi", "name_en", "source", "match", "steps")
            print(sops.Sop(**dict(zip(keys, row, strict=True))).to_yaml(), end="")
        case "calendar", "show":
            own = dict(
                conn.execute(
                    "SELECT day, CASE WHEN working THEN 'worked: ' ELSE 'off: ' END || note FROM calendar_days"
                    " WHERE extract(year FROM day) = %s",
                    (args.year,),
                ).fetchall()
            )
            for day, name in sorted({**public_holidays(args.year), **own}.items()):
                print(day.isoformat(), day.strftime("%a"), name, sep="\t")
