"""``python -m bench.incidents``: from an alert to a person's inbox, through incidents and the notifier.

On a scratch database and a private broker, with ingest and the notifier as processes (both on the
data clock, which a heartbeat sensor keeps moving, as a replay does) and a real SMTP server
(aiosmtpd) in this process:
1. **A storm**: 1,000 sensors of one unit cross a limit within a minute (a rule that opens at
   once): the incidents and the messages it makes, against what the policy allows (one incident,
   one message to the ward on duty, then the escalation's one).
2. **Latency**: 40 units each get one alert, 1.5 s apart, each unit with its own person on duty:
   from the alert's opening (its row) to its email in the inbox, p50 and p95 (goal p95 under 5 s).
3. **Escalation on time**: the chain's second step (2 minutes without acknowledgement, the city's
   chief) against the moment it was due on the data clock.
"""

import argparse
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes

import orjson
import psycopg
from aiosmtpd.controller import Controller
from psycopg.types.json import Jsonb

from bench.scratch import scratch_stack
from ioc_api.cli import create_user
from tests.conftest import ingest_subscribed
from tests.support import Service, free_port, publish_all, publisher, wait_until

STORM_UNIT = "hoa-xuan"
ESCALATE_MIN = 2.0


class Inbox:
    def __init__(self) -> None:
        self.received: list[tuple[str, str, float]] = []  # (to, subject, when)

    async def handle_DATA(self, server, session, envelope):
        subject = message_from_bytes(envelope.content)["Subject"]
        for to in envelope.rcpt_tos:
            self.received.append((to, str(subject), time.time()))
        return "250 OK"


def prepare(url: str, units: list[str], start: datetime) -> None:
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO rules (name, type, sensor_kind, metric, severity, params) VALUES"
            " ('bench: level high now', 'threshold', 'water_level', 'level_m', 'critical',"
            ' \'{"op": "above", "value": 3, "for_s": 0}\')'
        )
        cur.execute("UPDATE rules SET enabled = (name LIKE 'bench:%%')")
        create_user(conn, "bench-chief", "city_operator", [], None)
        cur.execute("UPDATE users SET email = 'chief@city.vn' WHERE username = 'bench-chief'")
        for unit in units:
            create_user(conn, f"duty-{unit}", "ward_operator", [unit], None)
            cur.execute("UPDATE users SET email = %s WHERE username = %s", (f"{unit}@ward.vn", f"duty-{unit}"))
            cur.execute(
                "INSERT INTO duty_shifts (unit_id, role, username, starts_at, ends_at) VALUES (%s, 'ward_operator', %s,"
                " %s, %s)",
                (unit, f"duty-{unit}", start - timedelta(hours=1), start + timedelta(hours=2)),
            )
        cur.execute(
            "INSERT INTO notification_rules (name, min_severity, channel, chain)"
            " VALUES ('bench', 'major', 'email', %s)",
            (
                Jsonb(
                    [
                        {"after_minutes": 0, "to": "on_duty:ward_operator"},
                        {"after_minutes": ESCALATE_MIN, "to": "user:bench-chief"},
                    ]
                ),
            ),
        )
        sensors = [(f"storm-{i}", STORM_UNIT) for i in range(1000)] + [(f"lat-{u}", u) for u in units]
        sensors.append(("heartbeat", STORM_UNIT))
        cur.executemany(
            "INSERT INTO sensors (id, kind, unit_id, lat, lon) SELECT %s, 'water_level', %s, (committee)[1],"
            " (committee)[0] FROM units WHERE id = %s",
            [(s, u, u) for s, u in sensors],
        )


def reading(sensor: str, level: float) -> tuple[str, bytes]:
    return f"ioc/v1/sensors/{sensor}/readings", orjson.dumps({"values": {"level_m": level}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=40, help="units of the latency phase")
    args = parser.parse_args()
    inbox, smtp_port = Inbox(), free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    with scratch_stack("ioc_bench_incidents") as (url, broker):
        with psycopg.connect(url) as conn:
            units = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM units WHERE kind IN ('ward', 'commune') AND id <> %s ORDER BY id LIMIT %s",
                    (STORM_UNIT, args.units),
                )
            ]
        start = datetime.now(UTC)
        prepare(url, [STORM_UNIT, *units], start)
        env = {
            "IOC_DATABASE_URL": url,
            "IOC_LOG_LEVEL": "WARNING",
            "IOC_ALERT_CLOCK": "data",
            "IOC_RULES_REFRESH_S": "1",
            "IOC_INGEST_REGISTRY_REFRESH_S": "1",
        }
        metrics = free_port()
        ingest = Service(
            "ingest", {**env, "IOC_MQTT_URL": broker.url_for("ingest"), "IOC_INGEST_METRICS_PORT": str(metrics)}
        ).start()
        notify = Service(
            "notify",
            {**env, "IOC_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}", "IOC_NOTIFY_METRICS_PORT": str(free_port())},
        ).start()
        stop = threading.Event()
        try:
            wait_until(lambda: ingest_subscribed(metrics), timeout=60, what="ingest")
            client = publisher(broker.port)

            def heartbeat() -> None:  # keeps the data clock moving
                while not stop.wait(0.5):
                    publish_all(client, [reading("heartbeat", 1.0)])

            threading.Thread(target=heartbeat, daemon=True).start()
            print(
                f"incidents benchmark: a storm of 1,000 alerts in {STORM_UNIT} within a minute, then"
                f" {len(units)} alerts in {len(units)} units"
            )
            began = time.monotonic()
            for i in range(1000):
                while time.monotonic() < began + i * 0.055:
                    time.sleep(0.005)
                publish_all(client, [reading(f"storm-{i}", 4.0)])
            for unit in units:
                publish_all(client, [reading(f"lat-{unit}", 4.0)])
                time.sleep(1.5)
            with psycopg.connect(url) as conn:
                wait_until(
                    lambda: conn.execute("SELECT count(*) FROM alerts").fetchone()[0] >= 1000 + len(units),
                    timeout=120,
                    what="every alert",
                )
            wait_until(
                lambda: len({to for to, _, _ in inbox.received}) >= len(units) + 1,
                timeout=60,
                what="every unit's email",
            )
            wait_until(
                lambda: any(to == "chief@city.vn" for to, _, _ in inbox.received),
                timeout=ESCALATE_MIN * 60 + 90,
                what="the escalation",
            )
            time.sleep(3)
            with psycopg.connect(url) as conn:
                storm = conn.execute(
                    "SELECT count(DISTINCT m.incident_id), count(*) FROM incident_members m JOIN alerts a"
                    " ON m.member_type = 'alert' AND a.id = m.member_id WHERE a.source_id LIKE 'storm-%%'"
                ).fetchone()
                opened = dict(conn.execute("SELECT unit_id, min(opened_at) FROM alerts GROUP BY unit_id").fetchall())
                storm_incident = conn.execute(
                    "SELECT opened_at FROM incidents WHERE unit_id = %s", (STORM_UNIT,)
                ).fetchone()[0]
            to_storm = [r for r in inbox.received if r[0] == f"{STORM_UNIT}@ward.vn"]
            print(
                f"  storm: {storm[1]:,} alerts in {storm[0]} incident(s) (policy: 1);"
                f" {len(to_storm)} message(s) to the ward on duty (policy: 1)"
            )
            latencies = [
                when - opened[to.split("@")[0]].timestamp()
                for to, _, when in inbox.received
                if to != "chief@city.vn" and to.split("@")[0] in units
            ]
            q = statistics.quantiles(latencies, n=20)
            print(
                f"  alert opened to email received, {len(latencies)} units: p50 {statistics.median(latencies):.2f} s,"
                f" p95 {q[18]:.2f} s, max {max(latencies):.2f} s (goal p95 < 5 s)"
            )
            chief = [when for to, _, when in inbox.received if to == "chief@city.vn"]
            due = storm_incident.timestamp() + ESCALATE_MIN * 60
            print(
                f"  escalation to the city's chief ({len(chief)} message(s), a digest of every unit's):"
                f" {min(chief) - due:+.2f} s from its due time on the data clock"
            )
        finally:
            stop.set()
            notify.stop()
            ingest.stop()
            smtp.stop()


if __name__ == "__main__":
    main()
