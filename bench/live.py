"""``python -m bench.live``: live push through the real broker, API and database.

Scenario: WebSocket clients with mixed unit filters (city clients on every unit, ward rooms on
one to three units), while stored-event envelopes (as ingest publishes them after storing) and
per-unit value digests are published on the live topics at a steady rate. Every client records
the latency from publish to receipt of each event and which events it got; expected deliveries
are computed from its filter. The run is repeated with extra clients that stop reading (frozen
screens): the others' p99 is compared with the first run's (ratio), measured in the same run.
The REST part on a large dataset is ``python -m bench.rest``.
"""

import argparse
import asyncio
import multiprocessing as mp
import random
import statistics
import time

import orjson
import psycopg
import websockets

from bench.scratch import scratch_stack
from ioc_api.cli import create_token, create_user
from ioc_core import topics
from tests.support import Broker, StalledClient, publisher, start_api


def client_plan(n: int, city_share: float, units: list[str], seed: int = 7) -> list[list[str] | None]:
    """Each client's units: None (every unit) for city clients, one to three units for wards."""
    rng = random.Random(seed)
    return [None if rng.random() < city_share else rng.sample(units, rng.randint(1, 3)) for _ in range(n)]


async def _receive(url: str, token: str, plan: list[list[str] | None], seconds: float, out: mp.Queue) -> None:
    results: list[tuple[list[str] | None, list[int], list[float]]] = []

    async def one(units: list[str] | None) -> None:
        ids: list[int] = []
        delays: list[float] = []
        async with websockets.connect(url, max_queue=None, open_timeout=60) as ws:
            await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
            await ws.send(orjson.dumps({"type": "subscribe", "units": units, "values": True}).decode())
            deadline = time.time() + seconds
            while time.time() < deadline:
                try:
                    async with asyncio.timeout(max(0.1, deadline - time.time())):
                        frame = orjson.loads(await ws.recv())
                except (TimeoutError, websockets.ConnectionClosed):
                    break
                now = time.time()
                for message in frame["messages"] if frame["type"] == "batch" else [frame]:
                    if message["type"] == "event":
                        ids.append(message["event"]["id"])
                        delays.append(now - message["event"]["data"]["sent"])
        results.append((units, ids, delays))

    await asyncio.gather(*(one(units) for units in plan))
    out.put(results)


def receiver(url: str, token: str, plan: list, seconds: float, out: mp.Queue) -> None:
    asyncio.run(_receive(url, token, plan, seconds, out))


def publish_load(port: int, units: list[str], events_per_s: int, values_per_s: int, seconds: float) -> list[tuple]:
    """Publish events (with their send time) and value digests; returns (id, unit) of each event."""
    client = publisher(port, account="ingest")
    sent: list[tuple[int, str]] = []
    start = time.perf_counter()
    next_event_id, tick = 1, 0
    n_events = int(events_per_s * seconds)
    per_unit_values = max(1, values_per_s // len(units))
    for i in range(n_events):
        while time.perf_counter() < start + i / events_per_s:
            time.sleep(0.0002)
        unit = units[i % len(units)]
        event = {
            "id": next_event_id,
            "time": "2026-11-24T00:00:00Z",
            "kind": "camera.congestion",
            "severity": "major",
            "unit_id": unit,
            "source": {"type": "camera", "id": f"cam-{unit}"},
            "location": None,
            "title": "Congestion",
            "data": {"sent": time.time()},
        }
        client.publish(topics.live(unit, "camera.congestion"), orjson.dumps(event), qos=1)
        sent.append((next_event_id, unit))
        next_event_id += 1
        if time.perf_counter() - start >= tick:  # once a second, a digest per unit, as ingest does
            tick += 1
            for u in units:
                values = [
                    {"sensor_id": f"s-{u}-{k}", "metric": "pm25", "time": "2026-11-24T00:00:00Z", "value": k}
                    for k in range(per_unit_values)
                ]
                client.publish(topics.live(u, "values"), orjson.dumps({"unit_id": u, "values": values}), qos=0)
    time.sleep(2)
    client.disconnect()
    return sent


def run_scenario(api_port: int, broker: Broker, token: str, units: list[str], args, stalled: int) -> dict:
    plan = client_plan(args.clients, args.city_share, units)
    url = f"ws://127.0.0.1:{api_port}/ws"
    frozen = [StalledClient(api_port) for _ in range(stalled)]
    for f in frozen:
        f.send({"type": "auth", "token": token})
        f.send({"type": "subscribe", "units": None, "values": True})
    out: mp.Queue = mp.Queue()
    chunks = [plan[i :: args.processes] for i in range(args.processes)]
    procs = [mp.Process(target=receiver, args=(url, token, chunk, args.seconds + 15, out)) for chunk in chunks]
    for p in procs:
        p.start()
    time.sleep(5 + args.clients / 200)  # connections and subscriptions in place
    sent = publish_load(broker.port, units, args.events, args.values, args.seconds)
    results = [r for _ in procs for r in out.get(timeout=args.seconds + 120)]
    for p in procs:
        p.join()
    for f in frozen:
        f.sock.close()
    delays = sorted(d for _, _, ds in results for d in ds)
    shares = []
    for client_units, ids, _ in results:
        expected = {i for i, u in sent if client_units is None or u in client_units}
        shares.append(len(expected & set(ids)) / len(expected) if expected else 1.0)
    q = statistics.quantiles(delays, n=100)
    return {
        "p50": q[49] * 1000,
        "p99": q[98] * 1000,
        "deliveries": len(delays),
        "min_share": min(shares),
        "mean_share": statistics.fmean(shares),
        "clients": len(results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--city-share", type=float, default=0.02, help="share of clients that follow every unit")
    parser.add_argument("--events", type=int, default=500, help="events/s")
    parser.add_argument("--values", type=int, default=5000, help="values/s")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--stalled", type=int, default=50, help="clients that stop reading, second run")
    parser.add_argument("--processes", type=int, default=2, help="receiving processes")
    args = parser.parse_args()

    with scratch_stack("ioc_bench_live") as (url, broker):
        api = None
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                units = [r[0] for r in conn.execute("SELECT id FROM units WHERE kind <> 'city' ORDER BY id")]
                create_user(conn, "bench-city", "city_operator", [], None)
                token = create_token(conn, "bench-city", "bench", 1)
            api = start_api(
                {"IOC_DATABASE_URL": url, "IOC_MQTT_URL": broker.url_for("api"), "IOC_LOG_LEVEL": "WARNING"}
            )
            port = api.port
            print(
                f"live benchmark: {args.clients} clients ({args.city_share:.0%} on every unit, the rest on 1-3 units),"
                f" {args.events} events/s, {args.values} values/s, {args.seconds:.0f} s"
            )
            warm = argparse.Namespace(**{**vars(args), "seconds": 5})
            run_scenario(port, broker, token, units, warm, stalled=0)  # connections, pools, caches: not measured
            base = run_scenario(port, broker, token, units, args, stalled=0)
            print(
                f"  all clients reading:      p50 {base['p50']:6.1f} ms  p99 {base['p99']:6.1f} ms"
                f"  delivered min {base['min_share']:.2%} mean {base['mean_share']:.2%}"
                f"  ({base['deliveries']:,} deliveries to {base['clients']} clients)"
            )
            slow = run_scenario(port, broker, token, units, args, stalled=args.stalled)
            print(
                f"  with {args.stalled} frozen clients:  p50 {slow['p50']:6.1f} ms  p99 {slow['p99']:6.1f} ms"
                f"  delivered min {slow['min_share']:.2%} mean {slow['mean_share']:.2%}"
                f"  p99 ratio {slow['p99'] / base['p99']:.2f}"
            )
        finally:
            if api is not None:
                api.stop()


if __name__ == "__main__":
    main()
