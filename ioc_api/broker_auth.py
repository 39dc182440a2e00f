"""``python -m ioc_api.broker_auth``: the accounts and topic rights of a RabbitMQ cluster (cluster
mode), answered from the same table and ACL as Mosquitto's files.

RabbitMQ's HTTP authentication backend asks four questions by POST (``user``, ``vhost``,
``resource``, ``topic``) and takes ``allow`` or ``deny``; its cache backend keeps each answer a
few seconds. So devices keep their accounts and rights when a city moves to the cluster: a
password is checked against its stored hash, a publish or subscription against the ACL of
``ops/mosquitto/acl`` (RabbitMQ names topics with ``.`` where MQTT has ``/``:
``topics.from_routing_key``). Listens on
loopback: only the broker nodes of the same machine ask it.
"""

import argparse
import logging
import re
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from paho.mqtt.client import topic_matches_sub
from psycopg_pool import ConnectionPool

from ioc_core import broker_files, topics
from ioc_core.logs import setup_logging
from ioc_core.settings import get_settings

log = logging.getLogger(__name__)

# What a device's MQTT connection declares and uses: its own session queue, the topic exchange.
_DEVICE_RESOURCES = (("queue", re.compile(r"mqtt-subscription-.*")), ("exchange", re.compile(r"amq\.topic")))


@dataclass(frozen=True, slots=True)
class Rule:
    access: str  # read, write or readwrite
    pattern: str  # an MQTT filter; %u is the username


def parse_acl(text: str) -> tuple[dict[str, list[Rule]], list[Rule]]:
    """Mosquitto's ACL: ``user`` blocks of ``topic`` lines, and ``pattern`` lines for everyone."""
    users: dict[str, list[Rule]] = {}
    patterns: list[Rule] = []
    current: list[Rule] | None = None
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "user":
            current = users.setdefault(words[1], [])
        elif words[0] in ("topic", "pattern"):
            access, pattern = (words[1], words[2]) if len(words) == 3 else ("readwrite", words[1])
            (current if words[0] == "topic" and current is not None else patterns).append(Rule(access, pattern))
    return users, patterns


def allowed(rules: list[Rule], username: str, topic: str, permission: str) -> bool:
    """A publish (write) on ``topic``, or a subscription (read) to the filter ``topic``, is allowed
    when a rule of that access matches all of it."""
    for rule in rules:
        if permission in rule.access:
            pattern = rule.pattern.replace("%u", username)
            if topic_matches_sub(pattern, topic):
                return True
    return False


class BrokerAuth:
    def __init__(self, database_url: str):
        self._pool = ConnectionPool(database_url, min_size=1, max_size=4, kwargs={"autocommit": True}, open=True)
        self._users, self._patterns = parse_acl(broker_files.BASE_ACL.read_text())

    def _account(self, username: str) -> tuple[str, str] | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT kind, password_hash FROM broker_accounts WHERE username = %s", (username,)
            ).fetchone()
        return row

    def user(self, form: dict[str, str]) -> bool:
        account = self._account(form.get("username", ""))
        return account is not None and broker_files.verify_password(account[1], form.get("password", ""))

    def vhost(self, form: dict[str, str]) -> bool:
        return form.get("vhost") == "/" and self._account(form.get("username", "")) is not None

    def resource(self, form: dict[str, str]) -> bool:
        account = self._account(form.get("username", ""))
        if account is None:
            return False
        if account[0] == "service":  # ingest declares its queues; services read what they are given
            return True
        return any(
            form.get("resource") == kind and name.fullmatch(form.get("name", "")) for kind, name in _DEVICE_RESOURCES
        )

    def topic(self, form: dict[str, str]) -> bool:
        username = form.get("username", "")
        account = self._account(username)
        if account is None or form.get("name") != "amq.topic":
            return False
        rules = self._users.get(username, []) + self._patterns
        if account[0] == "gateway":
            rules.append(Rule("write", topics.gateway_readings(username)))
        return allowed(
            rules, username, topics.from_routing_key(form.get("routing_key", "")), form.get("permission", "")
        )


def handler_for(auth: BrokerAuth) -> type[BaseHTTPRequestHandler]:
    questions = {"user": auth.user, "vhost": auth.vhost, "resource": auth.resource, "topic": auth.topic}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            question = questions.get(self.path.removeprefix("/broker-auth/"))
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode(), keep_blank_values=True).items()}
            if question is None:
                self.send_error(404)
                return
            try:
                answer = "allow" if question(form) else "deny"
            except Exception:  # the database away: refuse, the broker asks again
                log.exception("broker-auth question failed", extra={"question": self.path})
                answer = "deny"
            body = answer.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    settings = get_settings()
    setup_logging(settings, "broker_auth")
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(BrokerAuth(settings.database_url)))
    server.daemon_threads = True
    log.info("answering the broker's questions", extra={"port": args.port})
    server.serve_forever()


if __name__ == "__main__":
    main()
