"""``python -m bench.ngsild_notify``: NGSI-LD notifications with 1,000 subscriptions, from a stored
reading to the subscriber's endpoint.

On a scratch database and a private broker, with ingest and the subscriptions' notifier as
processes and an HTTP receiver in this process: 1,000 air-quality stations, each watched by its
own subscription (1,000 subscriptions of one type, so every changed entity is matched against all
of them), get readings at ``--rate`` a second for ``--seconds``. For each reading:

- **stored → notified** (the goal: p95 under 1 s): from ingest's commit (its ``NOTIFY``, heard by
  this process too) to the notification's arrival;
- **published → notified**, and the **baseline** from the same run, **published → live digest**:
  the same reading reaching the screens' path (``ioc/v1/live/{unit}/values``, once a second).
"""

import argparse
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import paho.mqtt.client as paho
import psycopg
from psycopg.types.json import Jsonb

from bench.scratch import scratch_stack
from ioc_api.cli import create_user
from ioc_core.ngsild.jsonld import IOC_CONTEXT_URN
from ioc_core.topics import VALUES_STORED
from tests.conftest import ingest_subscribed
from tests.support import Service, free_port, login, publish_all, publisher, wait_until

STATIONS = 1000


class Clock:
    """When each (sensor, value) was published, stored, notified and seen in a digest."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.published: dict[tuple[str, float], float] = {}
        self.notified: dict[tuple[str, float], float] = {}
        self.digested: dict[tuple[str, float], float] = {}
        self.stored: dict[str, list[float]] = {}  # sensor -> times its values were committed


def receiver(clock: Clock) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            now = time.time()
            body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with clock.lock:
                for entity in body["data"]:
                    key = (entity["id"].rsplit(":", 1)[-1], entity["pm25"])
                    clock.notified.setdefault(key, now)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def listen_stored(url: str, clock: Clock, stop: threading.Event) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"LISTEN {VALUES_STORED}")
        while not stop.is_set():
            for note in conn.notifies(timeout=0.5):
                now = time.time()
                with clock.lock:
                    for sensor_id in note.payload.split(","):
                        clock.stored.setdefault(sensor_id, []).append(now)


def watch_digests(port: int, clock: Clock) -> paho.Client:
    def on_message(client, userdata, message) -> None:
        now = time.time()
        with clock.lock:
            for v in orjson.loads(message.payload)["values"]:
                if v["metric"] == "pm25":
                    clock.digested.setdefault((v["sensor_id"], v["value"]), now)

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    login(client, "monitor")
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe("ioc/v1/live/+/values", qos=0)
    client.loop_start()
    return client


def prepare(url: str, endpoint: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        units = conn.execute(
            "SELECT id, centroid[0], centroid[1] FROM units WHERE kind <> 'city' AND centroid IS NOT NULL ORDER BY id"
        ).fetchall()
        cur.executemany(
            "INSERT INTO sensors (id, kind, unit_id, lon, lat, interval_s) VALUES (%s, 'air_quality', %s, %s, %s, 60)",
            [(f"nb-{i}", *units[i % len(units)]) for i in range(STATIONS)],
        )
        create_user(conn, "bench-agency", "city_operator", [], None)
        cur.executemany(
            "INSERT INTO ngsi_subscriptions (id, owner, body, context) VALUES (%s, 'bench-agency', %s, %s)",
            [
                (
                    f"urn:ngsi-ld:Subscription:nb-{i}",
                    Jsonb(
                        {
                            "entities": [
                                {"type": "AirQualityObserved", "id": f"urn:ngsi-ld:AirQualityObserved:nb-{i}"}
                            ],
                            "watchedAttributes": ["pm25"],
                            "notification": {
                                "endpoint": {"uri": f"{endpoint}/s{i}"},
                                "format": "keyValues",
                                "attributes": ["pm25"],
                            },
                        }
                    ),
                    Jsonb(IOC_CONTEXT_URN),
                )
                for i in range(STATIONS)
            ],
        )


def percentiles(values: list[float]) -> str:
    if len(values) < 20:
        return f"{len(values)} samples: too few"
    q = statistics.quantiles(values, n=100)
    return f"p50 {q[49] * 1000:6.0f} ms, p95 {q[94] * 1000:6.0f} ms, max {max(values) * 1000:6.0f} ms ({len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50, help="readings a second")
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    clock = Clock()
    server = receiver(clock)
    stop = threading.Event()
    with scratch_stack("ioc_bench_ngsild_notify") as (url, broker):
        prepare(url, f"http://127.0.0.1:{server.server_port}")
        env = {"IOC_DATABASE_URL": url, "IOC_LOG_LEVEL": "WARNING"}
        metrics = free_port()
        ingest = Service(
            "ingest", {**env, "IOC_MQTT_URL": broker.url_for("ingest"), "IOC_INGEST_METRICS_PORT": str(metrics)}
        ).start()
        notifier = Service("notify.subscriptions", {**env, "IOC_LOG_LEVEL": "INFO"}).start()
        listener = threading.Thread(target=listen_stored, args=(url, clock, stop), daemon=True)
        listener.start()
        digests = watch_digests(broker.port, clock)
        try:
            wait_until(lambda: ingest_subscribed(metrics), timeout=60, what="ingest")
            wait_until(lambda: "NGSI-LD notifier listening" in notifier.log(), timeout=60, what="the notifier")
            client = publisher(broker.port)
            total = int(args.rate * args.seconds)
            print(
                f"NGSI-LD notifications: {STATIONS:,} subscriptions, {total:,} readings at {args.rate:g}/s"
                f" over {args.seconds:g} s"
            )
            began = time.monotonic()
            for n in range(total):
                while time.monotonic() < began + n / args.rate:
                    time.sleep(0.002)
                sensor, value = f"nb-{n % STATIONS}", float(n)
                payload = orjson.dumps({"values": {"pm25": value}})
                with clock.lock:
                    clock.published[(sensor, value)] = time.time()
                publish_all(client, [(f"ioc/v1/sensors/{sensor}/readings", payload)])
            wait_until(lambda: len(clock.notified) >= total, timeout=60, what="every notification", interval=0.5)
        finally:
            stop.set()
            digests.loop_stop()
            notifier.stop()
            ingest.stop()
            server.shutdown()
    with clock.lock:
        stored_to_notified, published_to_notified, published_to_digest = [], [], []
        for key, published in clock.published.items():
            notified = clock.notified.get(key)
            if notified is None:
                continue
            published_to_notified.append(notified - published)
            stored = [t for t in clock.stored.get(key[0], []) if published <= t <= notified]
            if stored:
                stored_to_notified.append(notified - stored[0])
            if key in clock.digested:
                published_to_digest.append(clock.digested[key] - published)
    print(f"  notified: {len(clock.notified):,} of {len(clock.published):,} readings")
    print(f"  stored → notified:       {percentiles(stored_to_notified)}   (goal: p95 under 1 s)")
    print(f"  published → notified:    {percentiles(published_to_notified)}")
    print(f"  published → live digest: {percentiles(published_to_digest)}   (baseline: the screens' path)")
    if published_to_notified and published_to_digest:
        ratio = statistics.median(published_to_notified) / statistics.median(published_to_digest)
        print(f"  median published → notified is {ratio:.2f} × the median published → live digest")
    ok = bool(stored_to_notified) and statistics.quantiles(stored_to_notified, n=100)[94] < 1.0
    print(f"  goal {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
