"""``python -m bench.simulator``: how fast the simulated city publishes, against a bare publisher.

A private Mosquitto with the project's config on loopback and no subscriber, so the figure is the
simulator's and the broker's, not a consumer's. Stage one, the baseline: one paho client publishing
prepared single-reading payloads at QoS 1 as fast as it can (the ceiling for one Python process).
Stage two: the simulator (``python -m simulators city --speed 0``): 10,000 sensors of every kind,
values computed, faults drawn, encoded and published at QoS 1, one simulated hour. The figure is
messages per second acknowledged by the broker, and its ratio to the baseline.
"""

import argparse
import threading
import time

import orjson

from bench.scratch import scratch_stack
from ioc_core import topics
from simulators.faults import FaultRates
from simulators.publish import Publisher
from simulators.registry import load_units
from simulators.runner import CityRun, RunStats, run_sharded


def bare(url: str, n: int) -> float:
    payloads = [
        (
            topics.sensor_readings(f"bare-{i % 10_000}"),
            orjson.dumps({"ts": 1_790_000_000_000 + i, "values": {"pm25": 12.5}}),
        )
        for i in range(n)
    ]
    publisher = Publisher(url, "bench-bare")
    started = time.perf_counter()
    publisher.send(payloads)
    publisher.flush()
    elapsed = time.perf_counter() - started
    publisher.close()
    return n / elapsed


def simulated(url: str, database_url: str, sensors: int, hours: float, faults: str, processes: int) -> RunStats:
    """The city command's own path: ``python -m simulators city --speed 0 --processes N``."""
    plan = CityRun(
        units=load_units(database_url),
        sensors=sensors,
        seed=1,
        start=time.time() - hours * 3600,
        hours=hours,
        jitter=0.1,
        intervals={},
        shares={},
        faults=FaultRates.parse(faults),
        speed=None,
        mqtt_url=url,
    )
    stats, _ = run_sharded(plan, processes, threading.Event())
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sensors", type=int, default=10_000)
    parser.add_argument("--hours", type=float, default=1.0, help="simulated hours")
    parser.add_argument("--faults", default="", help="fault rates, as the city command takes them")
    parser.add_argument("--processes", type=int, default=2, help="publishing processes of the simulator")
    args = parser.parse_args()
    with scratch_stack("bench_sim") as (database_url, broker):
        stats = simulated(
            broker.url_for("simulator"), database_url, args.sensors, args.hours, args.faults, args.processes
        )
        bare_rate = bare(broker.url_for("simulator"), stats.messages)
        print(f"bare publisher, one process, QoS 1, {stats.messages:,} prepared messages: {bare_rate:,.0f} msg/s")
        print(
            f"simulated city, {args.sensors:,} sensors, {args.hours:g} h, {args.processes} processes, QoS 1:"
            f" {stats.rate:,.0f} msg/s acknowledged (ratio {stats.rate / bare_rate:.2f}; goal: at least 30,000 msg/s)"
        )


if __name__ == "__main__":
    main()
