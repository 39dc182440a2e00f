"""``python -m bench.reports``: citizens' reports under load, and the pages citizens read, at a city's scale.

On a scratch database and a private broker, with the API (one process):
1. **Filing**: reports posted through Open311 at a steady rate (50 a second by default, one in five
   with a 500 KB photo), each timed from request to answer (stored, routed, its event pushed).
   Baseline in the same run: a bare POST to the API that stores nothing (``/health``'s cost), to
   show what filing adds to the HTTP round trip itself.
2. **Tracking**: ``GET /api/v1/public/reports/{code}`` and **the civic sprint**
   (``/open/sprint/ranking`` and ``/open/sprint`` by month), on a database holding a million
   tickets (``--tickets``) spread over the 94 units and a year, timed request after request.

Goals: filing p95 under 300 ms at 50 reports/s; tracking p95 under 20 ms; the sprint page p95
under 100 ms with a million tickets.
"""

import argparse
import io
import random
import shutil
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import psycopg
from PIL import Image

from bench.scratch import scratch_stack
from ioc_api.report_cli import create_api_key
from tests.support import start_api

CATEGORIES = ["urban_infrastructure", "environment_sanitation", "security_order", "traffic", "lighting", "trees"]


def photo_of(kilobytes: int) -> bytes:
    """A JPEG of about that size: noise compresses badly, as a phone's photo of a street does."""
    side = 400
    while True:
        pixels = np.random.default_rng(side).integers(0, 255, (side, side, 3), dtype=np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "JPEG", quality=85)
        if out.tell() >= kilobytes * 1000:
            return out.getvalue()
        side += 100


def places(url: str) -> list[tuple[float, float]]:
    """Committees of the units on the mainland: places inside the city."""
    with psycopg.connect(url) as conn:
        return [
            (r[0], r[1])
            for r in conn.execute(
                "SELECT (committee)[1], (committee)[0] FROM units WHERE kind IN ('ward', 'commune')"
                " AND committee IS NOT NULL AND unit_at((committee)[0], (committee)[1]) = id"
            )
        ]


def p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


def file_reports(base: str, key: str, rate: float, seconds: float, spots: list[tuple[float, float]]) -> dict:
    """POST at a steady rate from a pool of clients; the latency of each, and the codes filed."""
    photo = photo_of(500)
    rng = random.Random(1)
    n = int(rate * seconds)
    latencies: list[float] = []
    codes: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()
    local = threading.local()

    def one(i: int) -> None:
        client = getattr(local, "client", None) or httpx.Client(base_url=base, timeout=30)
        local.client = client
        lat, lon = spots[i % len(spots)]
        form = {
            "api_key": key,
            "service_code": CATEGORIES[i % len(CATEGORIES)],
            "lat": f"{lat + rng.uniform(-0.002, 0.002):.6f}",  # mostly not within 100 m of another
            "long": f"{lon + rng.uniform(-0.002, 0.002):.6f}",
            "description": f"Phản ánh số {i}",
        }
        files = [("media", ("photo.jpg", photo, "image/jpeg"))] if i % 5 == 0 else None
        started = time.perf_counter()
        response = client.post("/open311/v2/requests.json", data=form, files=files)
        elapsed = time.perf_counter() - started
        with lock:
            if response.status_code == 200:
                latencies.append(elapsed)
                codes.append(response.json()[0]["service_request_id"])
            else:
                failures.append(response.text[:200])

    started = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        for i in range(n):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, i)
    elapsed = time.perf_counter() - started
    return {"latencies": latencies, "codes": codes, "failures": failures, "rate": n / elapsed}


def load_tickets(url: str, n: int) -> None:
    """A year of tickets over every unit: most resolved, some on time, some overdue, some open."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO tickets (category, unit_id, emergency, lat, lon, description, received_at, deadline_at,
                                 state, resolved_at, working_s, on_time)
            SELECT c.code, u.id, c.emergency, (u.committee)[1], (u.committee)[0], 'phản ánh ' || g,
                   now() - (g %% 365) * interval '1 day' - (g %% 86400) * interval '1 second',
                   now() - (g %% 365) * interval '1 day' + interval '3 days',
                   CASE WHEN g %% 10 = 0 THEN 'received' WHEN g %% 10 = 1 THEN 'in_progress'
                        WHEN g %% 10 < 6 THEN 'resolved' ELSE 'closed' END,
                   CASE WHEN g %% 10 > 1 THEN now() - (g %% 365) * interval '1 day' + interval '1 day' END,
                   CASE WHEN g %% 10 > 1 THEN (g %% 97) * 3600.0 END,
                   CASE WHEN g %% 10 > 1 THEN g %% 97 < 24 END
            FROM generate_series(1, %s) g
            JOIN LATERAL (SELECT id, committee FROM units WHERE kind <> 'city' AND committee IS NOT NULL
                          ORDER BY id OFFSET (g %% 94) LIMIT 1) u ON true
            JOIN LATERAL (SELECT code, emergency FROM report_categories ORDER BY code OFFSET (g %% 9) LIMIT 1) c
              ON true
            """,
            (n,),
        )
        conn.execute("ANALYZE tickets")


def timed(client: httpx.Client, paths: list[str], repeats: int) -> list[float]:
    out = []
    for i in range(repeats):
        started = time.perf_counter()
        client.get(paths[i % len(paths)]).raise_for_status()
        out.append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50, help="reports a second")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with scratch_stack("ioc_bench_reports") as (url, broker):
        with psycopg.connect(url, autocommit=True) as conn:
            key = create_api_key(conn, "bench", "app", 100_000)
        photo_dir = tempfile.mkdtemp(prefix="bench-photos-")
        env = {
            "IOC_DATABASE_URL": url,
            "IOC_MQTT_URL": broker.url_for("api"),
            "IOC_LOG_LEVEL": "WARNING",
            "IOC_PHOTO_DIR": photo_dir,
        }
        api = start_api(env)
        base = f"http://127.0.0.1:{api.port}"
        try:
            with httpx.Client(base_url=base, timeout=30) as client:
                bare = timed(client, ["/health"], 200)
            spots = places(url)
            print(f"reports benchmark: {args.rate:.0f} reports/s for {args.seconds:.0f} s, 1 in 5 with a 500 KB photo")
            filed = file_reports(base, key, args.rate, args.seconds, spots)
            lat = filed["latencies"]
            print(
                f"  filed {len(lat):,} at {filed['rate']:.1f}/s, {len(filed['failures'])} refused"
                f"{': ' + filed['failures'][0] if filed['failures'] else ''}"
            )
            print(
                f"  filing: p50 {p(lat, 50):.0f} ms, p95 {p(lat, 95):.0f} ms, p99 {p(lat, 99):.0f} ms (goal p95 < 300)"
                f"; baseline GET /health p50 {p(bare, 50):.1f} ms, p95 {p(bare, 95):.1f} ms"
            )
            started = time.perf_counter()
            load_tickets(url, args.tickets)
            print(f"  {args.tickets:,} tickets loaded in {time.perf_counter() - started:.0f} s")
            with httpx.Client(base_url=base, timeout=30) as client:
                codes = filed["codes"]
                track = timed(client, [f"/api/v1/public/reports/{c}" for c in codes], args.requests)
                ranking = timed(client, ["/api/v1/open/sprint/ranking"], args.requests)
                sprint = timed(client, ["/api/v1/open/sprint?period=month&start=2026-01-01&end=2026-12-31"], 50)
                cold = timed(client, [f"/api/v1/open/sprint/ranking?start=2026-0{m}-01" for m in range(1, 10)], 9)
            print(f"  tracking page: p50 {p(track, 50):.1f} ms, p95 {p(track, 95):.1f} ms (goal p95 < 20)")
            print(
                f"  civic sprint ranking: p50 {p(ranking, 50):.1f} ms, p95 {p(ranking, 95):.1f} ms (goal p95 < 100);"
                f" a year by month p95 {p(sprint, 95):.1f} ms; a window nobody asked before: median"
                f" {statistics.median(cold) * 1000:.0f} ms"
            )
        finally:
            api.stop()
            shutil.rmtree(photo_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
