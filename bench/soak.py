"""Soak: the whole system for half an hour at 5,000 messages a second, watching for growth.

    .venv/bin/python -m bench.soak [--minutes 30] [--sensors 20000] [--interval 4]

On a scratch database and a private broker it starts ingest, the API, the MJPEG cameras and the
vision worker (the shared small model, when present; --no-vision leaves them out), and a simulated
city of SENSORS sensors reporting every INTERVAL seconds (20,000 / 4 s = 5,000 messages/s). Every
minute it records: the messages ingest took that minute, the resident memory (RSS) and CPU of
every process, and three latencies: a probe reading from publish to its row in the database, from
publish to the live value on a WebSocket screen, and a REST request (GET /api/v1/latest for one
unit). It prints a line a minute, then the first and last five minutes side by side, and writes
every sample to var/soak-<time>.json. Then the city stops, and the soak waits for ingest to drain
what the broker still holds and compares the rows stored with the values the city published:
where ingest fell behind, the backlog waited at the broker, and nothing may be missing. Not part
of CI.
"""

import argparse
import asyncio
import json
import re
import statistics
import threading
import time
from datetime import UTC, datetime

import httpx
import orjson
import psutil
import psycopg
import websockets

from bench.scratch import scratch_stack
from ioc_api.cli import create_token, create_user
from ioc_core.settings import REPO_ROOT, Settings
from simulators.city import KINDS
from tests.conftest import ingest_subscribed
from tests.support import Broker, Service, free_port, publisher, start_api, wait_until

PROBE = "soak-probe"


class Probe:
    """A sensor of the soak's own: a reading every few seconds, each with a new value, timed to
    its row in the database and to its arrival on a WebSocket screen."""

    def __init__(self, broker: Broker, database_url: str, api_port: int, token: str) -> None:
        self.client = publisher(broker.port, "soak-probe")
        self.database_url, self.api_port, self.token = database_url, api_port, token
        self.seq = 0
        self.sent: dict[float, float] = {}  # value -> when published
        self.to_ws: list[float] = []
        self.to_db: list[float] = []
        self.stop = threading.Event()
        threading.Thread(target=lambda: asyncio.run(self._screen()), daemon=True).start()

    async def _screen(self) -> None:
        while not self.stop.is_set():
            try:
                async with websockets.connect(f"ws://127.0.0.1:{self.api_port}/ws", max_queue=None) as ws:
                    await ws.send(orjson.dumps({"type": "auth", "token": self.token}).decode())
                    await ws.send(orjson.dumps({"type": "subscribe", "units": ["hai-chau"], "kinds": []}).decode())
                    async for raw in ws:
                        frame = orjson.loads(raw)
                        for message in frame["messages"] if frame["type"] == "batch" else [frame]:
                            for v in message.get("values", []) if message["type"] == "values" else []:
                                if v["sensor_id"] == PROBE and v["value"] in self.sent:
                                    self.to_ws.append(time.monotonic() - self.sent[v["value"]])
            except (OSError, websockets.ConnectionClosed):
                await asyncio.sleep(1)

    def once(self) -> None:
        self.seq += 1
        value = float(self.seq)
        self.sent[value] = started = time.monotonic()
        self.client.publish(f"ioc/v1/sensors/{PROBE}/readings", orjson.dumps({"values": {"probe": value}}), qos=1)
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while time.monotonic() < started + 30:
                if conn.execute(
                    "SELECT 1 FROM readings WHERE sensor_id = %s AND metric = 'probe' AND value = %s", (PROBE, value)
                ).fetchone():
                    self.to_db.append(time.monotonic() - started)
                    return
                time.sleep(0.01)


def rest_latency(port: int, token: str, n: int = 5) -> list[float]:
    out = []
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        for _ in range(n):
            started = time.monotonic()
            http.get(f"http://127.0.0.1:{port}/api/v1/latest", params={"unit": "hai-chau"}).raise_for_status()
            out.append(time.monotonic() - started)
    return out


def rss(process: psutil.Process) -> int:
    """Resident memory of a process and its children (a simulator's shards, a shell's child)."""
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])


def messages_taken(metrics_port: int, routes: tuple[str, ...] = ()) -> float:
    """Messages ingest has received, of every route or of those named."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    prefixes = [f'ioc_ingest_messages_total{{route="{r}"}}' for r in routes] or ["ioc_ingest_messages_total{"]
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(tuple(prefixes)))


def p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def run(args: argparse.Namespace) -> dict:
    with scratch_stack("ioc_soak") as (url, broker):
        with psycopg.connect(url, autocommit=True) as conn:
            create_user(conn, "soak", "city_operator", [], None)
            token = create_token(conn, "soak", "soak", 1)
            conn.execute(
                "INSERT INTO sensors (id, kind, unit_id, lat, lon) VALUES (%s, 'probe', 'hai-chau', 16.07, 108.22)",
                (PROBE,),
            )
        base = {"IOC_DATABASE_URL": url, "IOC_LOG_LEVEL": "WARNING"}
        ingest_port, vision_port, camera_port = free_port(), free_port(), free_port()
        services: dict[str, Service] = {
            "ingest": Service(
                "ingest",
                {**base, "IOC_MQTT_URL": broker.url_for("ingest"), "IOC_INGEST_METRICS_PORT": str(ingest_port)},
            ).start(),
            "api": start_api({**base, "IOC_MQTT_URL": broker.url_for("api")}),
        }
        wait_until(lambda: ingest_subscribed(ingest_port), timeout=60, what="ingest")
        api_port = services["api"].port
        model = Settings().shared_dir / "models" / "yolo-fastestv2-coco.onnx"
        if args.vision and model.exists():
            services["cameras"] = Service("simulators", base, "cameras", "--port", str(camera_port)).start()
            time.sleep(3)  # the cameras are registered
            services["vision"] = Service(
                "vision",
                {
                    **base,
                    "IOC_MQTT_URL": broker.url_for("vision"),
                    "IOC_VISION_ENGINE": "onnx",
                    "IOC_VISION_MODEL": str(model),
                    "IOC_VISION_METRICS_PORT": str(vision_port),
                    "IOC_VISION_COUNTS_INTERVAL_S": "10",
                    "IOC_SNAPSHOT_DIR": str(REPO_ROOT / "var" / "soak-snapshots"),
                },
            ).start()
        intervals = [f"--interval={kind}={args.interval}" for kind in KINDS]
        services["city"] = Service(
            "simulators",
            {**base, "IOC_MQTT_URL": broker.url_for("simulator")},
            "city",
            "--sensors",
            str(args.sensors),
            *intervals,
        ).start()
        processes = {name: psutil.Process(s.process.pid) for name, s in services.items()}
        processes["broker"] = psutil.Process(broker.process.pid)
        for proc in processes.values():
            proc.cpu_percent()
        probe = Probe(broker, url, api_port, token)
        samples: list[dict] = []
        taken, taken_at = messages_taken(ingest_port), time.monotonic()
        started = time.monotonic()
        print(f"soak: {args.sensors:,} sensors every {args.interval} s for {args.minutes} minutes")
        try:
            for minute in range(1, args.minutes + 1):
                db_before, ws_before = len(probe.to_db), len(probe.to_ws)
                rest: list[float] = []
                while time.monotonic() < started + minute * 60:
                    probe.once()
                    rest += rest_latency(api_port, token, 1)
                    time.sleep(max(0.0, 5 - (time.monotonic() - started) % 5))
                now_taken, now = messages_taken(ingest_port), time.monotonic()  # a probe may overrun the minute
                sample = {
                    "minute": minute,
                    "msg_per_s": (now_taken - taken) / (now - taken_at),
                    "rss_mib": {n: round(rss(pr) / 2**20, 1) for n, pr in processes.items()},
                    "cpu_pct": {n: round(pr.cpu_percent(), 1) for n, pr in processes.items()},
                    "to_db_s": probe.to_db[db_before:],
                    "to_screen_s": probe.to_ws[ws_before:],
                    "rest_s": rest,
                }
                taken, taken_at = now_taken, now
                samples.append(sample)
                dead = [n for n, s in services.items() if s.process.poll() is not None]
                memory = " ".join(f"{n} {m:.0f}" for n, m in sample["rss_mib"].items())
                latency = " ".join(
                    f"{key} p50 {p(sample[key], 50):.3f} s" if sample[key] else f"{key} over 30 s"
                    for key in ("to_db_s", "to_screen_s", "rest_s")
                )
                print(
                    f"  min {minute:3d}: {sample['msg_per_s']:7,.0f} msg/s  RSS MiB: {memory}  {latency}"
                    + (f"  DEAD: {dead}" if dead else ""),
                    flush=True,
                )
            after = drain(services["city"], ingest_port, url, probe.seq)
        finally:
            probe.stop.set()
            for service in reversed(services.values()):
                service.stop()
        return {"args": vars(args), "samples": samples, "after": after}


def drain(city: Service, ingest_port: int, url: str, probe_messages: int) -> dict:
    """Stop the city (it flushes what it sent), wait until ingest has taken everything the broker
    held for it, and count what was stored against what was published."""
    stopped = time.monotonic()
    city.stop(timeout=300)
    match = re.search(r"([\d,]+) readings \(([\d,]+) values\) in ([\d,]+) messages", city.log())
    if match is None:
        raise RuntimeError(f"the city did not say what it published: {city.log()[-500:]}")
    values, messages = (int(match.group(i).replace(",", "")) for i in (2, 3))
    wait_until(
        lambda: messages_taken(ingest_port, ("readings",)) >= messages + probe_messages,
        timeout=3600,
        interval=1,
        what="ingest took the backlog",
    )
    drained_s = time.monotonic() - stopped
    taken, still_since = messages_taken(ingest_port, ("readings",)), time.monotonic()
    while time.monotonic() - still_since < 5:  # redeliveries counted twice: until nothing more comes
        time.sleep(0.5)
        now = messages_taken(ingest_port, ("readings",))
        if now != taken:
            taken, still_since = now, time.monotonic()
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM readings r JOIN sensors s ON s.id = r.sensor_id WHERE s.kind <> 'probe'"
        ).fetchone()[0]
        reasons = dict(
            conn.execute("SELECT split_part(reason, ':', 1), count(*) FROM dead_letters GROUP BY 1").fetchall()
        )
    dead = sum(reasons.values())
    result = {"published_messages": messages, "published_values": values, "stored_rows": stored}
    result |= {"dead_letters": reasons, "drained_s": round(drained_s, 1)}
    print(
        f"  after the load: the backlog drained in {drained_s:,.0f} s; {values:,} values published in"
        f" {messages:,} messages, {stored:,} rows stored, {dead:,} dead letters {reasons or ''},"
        f" {values - stored:,} missing",
        flush=True,
    )
    return result


def summary(result: dict) -> None:
    samples = result["samples"]
    k = min(5, max(1, len(samples) // 3))
    first, last = samples[:k], samples[-k:]

    def window(ss: list[dict], key: str) -> list[float]:
        return [v for s in ss for v in s[key]]

    def mean(ss: list[dict], key: str, name: str | None = None) -> float:
        return statistics.mean(s[key][name] if name else s[key] for s in ss)

    def pair(values: list[float]) -> str:
        if not values:  # no probe reached it within the probe's 30 s
            return "over 30 s"
        return f"{p(values, 50):.3f} / {p(values, 95):.3f}"

    print(f"\n  {'':36} {'first ' + str(k) + ' min':>16} {'last ' + str(k) + ' min':>16}")
    print(f"  {'messages/s':36} {mean(first, 'msg_per_s'):16,.0f} {mean(last, 'msg_per_s'):16,.0f}")
    for name in first[0]["rss_mib"]:
        before, after, cpu = mean(first, "rss_mib", name), mean(last, "rss_mib", name), mean(last, "cpu_pct", name)
        print(f"  {'RSS ' + name + ' (MiB)':36} {before:16.1f} {after:16.1f}   CPU {cpu:.0f} %")
    for key, label in (("to_db_s", "publish → database"), ("to_screen_s", "publish → screen"), ("rest_s", "REST")):
        print(f"  {label + ', p50 / p95 (s)':36} {pair(window(first, key)):>16} {pair(window(last, key)):>16}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--sensors", type=int, default=20_000)
    parser.add_argument("--interval", type=float, default=4.0, help="every sensor's reporting interval, seconds")
    parser.add_argument(
        "--no-vision",
        dest="vision",
        action="store_false",
        help="leave out the MJPEG cameras and the vision worker (on 2 cores they take about 80%% of one)",
    )
    args = parser.parse_args()
    result = run(args)
    out = REPO_ROOT / "var" / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    summary(result)
    print(f"\n  samples: {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
