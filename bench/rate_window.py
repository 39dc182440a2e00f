"""``python -m bench.rate_window``: what a rate rule's window holds and costs per reading, kept as
every reading of the window (a deque, the change taken over all of it) against ``Window`` (only
what can still be the window's lowest or highest), on the same readings and the same clock.

GAUGES water gauges report every INTERVAL seconds for an hour under the seeded rule (up 20 cm in 15
minutes), in two kinds of water: the simulated city's tide with its 5 mm of noise, and a flood wave
rising 1 m an hour (the worst case for the lows: nearly every reading stays the lowest from its
time on). Printed: the memory the windows hold at the end (tracemalloc) and the CPU per reading
for keeping the window and taking the change.
"""

import argparse
import time
import tracemalloc
from collections import deque
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np

from ioc_core.rules import parse_params
from ioc_core.rules.rate import Window
from simulators.weather import tide

RULE = parse_params("rate", {"direction": "up", "delta": 0.2, "window_s": 900, "clear_delta": 0.05})
WINDOW = timedelta(seconds=900)
_NO_TIME = timedelta(0)


def levels(water: str, gauges: int, times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per reading time, per gauge."""
    base = rng.normal(0.9, 0.1, gauges)
    rise = 0.6 * np.array([tide(t) for t in times]) if water == "tide" else times / 3600.0  # 1 m an hour
    return base[None, :] + rise[:, None] + rng.normal(0, 0.005, (len(times), gauges))


def every_reading(readings: list[list[SimpleNamespace]]) -> tuple[float, float]:
    windows: dict[int, deque] = {}
    started = time.process_time()
    for row in readings:
        for g, r in enumerate(row):
            history = windows.setdefault(g, deque())
            history.append((r.time, r.value))
            while history[0][0] < r.time - WINDOW:
                history.popleft()
            RULE.change_over(r, history)
    cpu = time.process_time() - started
    return cpu, held(windows)


def monotonic(readings: list[list[SimpleNamespace]]) -> tuple[float, float]:
    windows: dict[int, Window] = {}
    started = time.process_time()
    for row in readings:
        for g, r in enumerate(row):
            window = windows.get(g)
            if window is None:
                window = windows[g] = Window()
            window.add(r.time, r.value)
            window.drop_before(r.time - WINDOW)
            RULE.change_within(r, window)
    cpu = time.process_time() - started
    return cpu, held(windows)


def held(windows: dict) -> float:
    """MiB the windows hold, each kept reading with a time and a value of its own (as parsed in
    ingest; here the readings share their times with the benchmark's)."""
    tracemalloc.start()
    copies = [Window(fresh(w.lows), fresh(w.highs)) if isinstance(w, Window) else fresh(w) for w in windows.values()]
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del copies
    return size / 2**20


def fresh(entries: deque) -> deque:
    return deque((t + _NO_TIME, v + 0.0) for t, v in entries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gauges", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=4.0, help="seconds between a gauge's readings")
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    times = np.arange(0, 3600, args.interval)
    start = datetime(2026, 12, 6, tzinfo=UTC)
    stamps = [start + timedelta(seconds=float(t)) for t in times]
    print(f"{args.gauges:,} gauges, a reading every {args.interval:g} s for an hour, a 15-minute rate window")
    print(f"{'water':<10} {'kept as':<16} {'held MiB':>9} {'µs a reading':>13}")
    for water in ("tide", "flood rise"):
        values = levels(water, args.gauges, times, rng)
        readings = [[SimpleNamespace(time=stamps[i], value=float(v)) for v in row] for i, row in enumerate(values)]
        n = len(times) * args.gauges
        figures = {name: run(readings) for name, run in (("every reading", every_reading), ("Window", monotonic))}
        for name, (cpu, mib) in figures.items():
            print(f"{water:<10} {name:<16} {mib:>9.1f} {cpu / n * 1e6:>13.2f}")
        (cpu_all, mib_all), (cpu_w, mib_w) = figures.values()
        print(f"{water:<10} {'ratio':<16} {mib_w / mib_all:>9.3f} {cpu_w / cpu_all:>13.2f}")


if __name__ == "__main__":
    main()
