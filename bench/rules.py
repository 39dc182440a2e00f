"""``python -m bench.rules``: what 1,000 active rules cost ingest, against no rules, in the same run.

1,000 registered air-quality sensors spread over the 94 units send single-reading QoS 1 messages
(the ingest benchmark's first form). One sensor in ten (``--swinging``) swings between 20 and
600 µg/m³ every ten readings; the others stay below 100. Stage one runs with every rule disabled; stage two with
1,000 rules: ten PM2.5 thresholds per unit (limits from 100 to 550 µg/m³; half open at once, so
each swing opens their alerts and the next resolves them, half must be held 10 minutes, so the
swinging sensors keep breaches pending), 50 rates of change scoped to units (each sensor's
window loaded from the database on its first reading) and 10 no-data rules (on the scheduler's
clock). The figure is stored messages per second, and its ratio to stage one; beside it, the
alerts the stage opened and resolved.
"""

import argparse
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
from psycopg.types.json import Jsonb

from bench.ingest import ingest_drain
from bench.scratch import scratch_stack

SENSORS = 1000
SWING = 10  # readings on each side of a swing


def swinging_messages(n: int, tag: str, every: int = 10) -> list[tuple[str, bytes]]:
    """Message i is reading i // SENSORS of sensor i % SENSORS; one sensor in ``every`` swings."""
    start = datetime.now(UTC) - timedelta(minutes=2)
    messages = []
    for i in range(n):
        sensor, k = i % SENSORS, i // SENSORS
        high = sensor % every == 0 and k // SWING % 2 == 1
        value = 600 if high else 20 + (sensor + k) % 70
        payload = {"ts": (start + timedelta(microseconds=i)).isoformat(), "values": {"pm25": value}}
        messages.append((f"ioc/v1/sensors/{tag}-{sensor}/readings", orjson.dumps(payload)))
    return messages


def alerts_of(url: str, tag: str) -> tuple[int, int]:
    """Alerts opened and resolved on the stage's sensors."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE state = 'resolved') FROM alerts WHERE source_id LIKE %s",
            (f"{tag}-%",),
        ).fetchone()


def register(url: str, tags: list[str]) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        units = [r[0] for r in conn.execute("SELECT id FROM units WHERE kind <> 'city' ORDER BY id")]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sensors (id, kind, unit_id, interval_s) VALUES (%s, 'air_quality', %s, 60)",
                [(f"{tag}-{i}", units[i % len(units)]) for tag in tags for i in range(SENSORS)],
            )
    return units


def add_rules(url: str, units: list[str], n: int) -> int:
    rules = []
    for unit in units:
        for k in range(10):
            limit = 100 + 50 * k
            params = {"op": "above", "value": limit, "clear": limit - 10, "for_s": 0 if k % 2 else 600}
            rules.append((f"bench: pm25 > {limit} in {unit}", "threshold", unit, params))
    for unit in units[:50]:
        rules.append((f"bench: pm25 rate in {unit}", "rate", unit, {"direction": "up", "delta": 1000, "window_s": 900}))
    for k in range(10):
        rules.append((f"bench: silent {k}", "no_data", units[k], {"factor": 3, "default_interval_s": 60}))
    rules = rules[:n]
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO rules (name, type, sensor_kind, metric, unit_id, severity, params)"
            " VALUES (%s, %s, 'air_quality', CASE WHEN %s = 'no_data' THEN NULL ELSE 'pm25' END, %s, 'minor', %s)",
            [(name, kind, kind, unit, Jsonb(params)) for name, kind, unit, params in rules],
        )
    return len(rules)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000, help="single-reading messages per stage")
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="alternate the stages this many times")
    parser.add_argument("--swinging", type=int, default=10, help="one sensor in this many swings across the limits")
    args = parser.parse_args()

    with scratch_stack("ioc_bench_rules") as (url, broker):
        env = {"IOC_DATABASE_URL": url, "IOC_MQTT_URL": broker.url_for("ingest"), "IOC_LOG_LEVEL": "WARNING"}
        tags = [f"r{i}" for i in range(2 * args.repeats)]
        units = register(url, tags)
        print(f"rules benchmark: {args.messages:,} single-reading messages per stage, {args.workers} workers")
        count = add_rules(url, units, args.rules)
        without, with_rules = [], []
        for r in range(args.repeats):
            for on, rates in ((False, without), (True, with_rules)):
                with psycopg.connect(url, autocommit=True) as conn:  # the shipped defaults stay off
                    conn.execute("UPDATE rules SET enabled = (%s AND name LIKE 'bench:%%')", (on,))
                tag = tags[2 * r + on]
                messages = swinging_messages(args.messages, tag, args.swinging)
                rates.append(ingest_drain(env, broker, url, args.workers, messages, args.messages, f"{tag}-%").rate)
            opened, resolved = alerts_of(url, tags[2 * r + 1])
            print(
                f"  no rules: {without[-1]:8,.0f} messages/s   {count:,} rules: {with_rules[-1]:8,.0f} messages/s"
                f"   ratio {with_rules[-1] / without[-1]:.2f}   ({opened:,} alerts opened, {resolved:,} resolved)"
            )
        best_without, best_with = max(without), max(with_rules)
        print(
            f"  best of each: {best_with:,.0f} against {best_without:,.0f} messages/s:"
            f" ratio {best_with / best_without:.2f} (goal: above 0.80)"
        )


if __name__ == "__main__":
    main()
