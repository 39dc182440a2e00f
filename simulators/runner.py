"""Running a simulated city against the broker: on a clock (1x, 60x ...) or as fast as it goes."""

from __future__ import annotations

import multiprocessing as mp
import signal
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from simulators.city import City, Unit
from simulators.faults import FaultRates, Faults
from simulators.publish import Publisher

Send = Callable[[list[tuple[str, bytes]]], None]


@dataclass
class RunStats:
    readings: int = 0
    values: int = 0  # rows the readings make
    reports_filed: int = 0  # citizens' reports filed through Open311 (scenarios)
    messages: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def progress_bar(what: str) -> Progress:
    """A bar with its rate and the time left, for every long job."""
    return Progress(
        TextColumn(f"[bold]{what}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        transient=False,
    )


def run_city(
    city: City,
    send: Send,
    faults: Faults,
    *,
    until: float | None,
    speed: float | None,
    step_s: float = 1.0,
    stop: threading.Event | None = None,
    show_progress: bool = False,
    extra: Callable[[float], list[tuple[str, bytes]]] | None = None,
) -> RunStats:
    """Publish the city's readings from ``city.start`` to ``until`` (None: until stopped).

    ``speed``: sim seconds per wall second (1 is real time); None: as fast as the broker takes it,
    ``step_s`` of sim time at a time. ``extra(t)``: other messages due by sim time t (camera events).
    """
    stop = stop or threading.Event()
    gateway_of = {d["id"]: d["gateway_id"] for d in city.devices()} if faults.rates.gateway else {}
    stats = RunStats()
    started = time.monotonic()
    t = city.start
    span = (until - city.start) if until is not None else None
    bar = progress_bar("simulating") if show_progress and span else nullcontext()
    with bar:
        task = bar.add_task("sim", total=span, rate="") if show_progress and span else None
        while not stop.is_set() and (until is None or t < until):
            if speed is None:
                t = min(t + step_s, until) if until is not None else t + step_s
            else:
                stop.wait(0.05)
                t = city.start + (time.monotonic() - started) * speed
                if until is not None:
                    t = min(t, until)
            readings = city.readings(t)
            messages = faults.messages(readings, t, gateway_of)
            if extra is not None:
                messages += extra(t)
            send(messages)
            stats.readings += len(readings)
            stats.values += sum(len(r.values) for r in readings)
            stats.messages += len(messages)
            if task is not None:
                elapsed = time.monotonic() - started
                bar.update(task, completed=t - city.start, rate=f"{stats.messages / max(elapsed, 1e-9):,.0f} msg/s")
    stats.seconds = time.monotonic() - started
    return stats


@dataclass
class CityRun:
    """Everything a process needs to run its share of a city (picklable)."""

    units: list[Unit]
    sensors: int
    seed: int
    start: float
    hours: float | None  # None: until stopped
    jitter: float
    intervals: dict[str, float]
    shares: dict[str, float]
    faults: FaultRates
    speed: float | None
    mqtt_url: str

    def city(self, shard: tuple[int, int]) -> City:
        return City(
            self.units,
            self.sensors,
            seed=self.seed,
            start=self.start,
            hours=self.hours or 24,
            jitter=self.jitter,
            intervals=self.intervals,
            shares=self.shares,
            shard=shard,
        )

    def run(self, shard: tuple[int, int], stop: threading.Event, show_progress: bool) -> tuple[RunStats, dict]:
        publisher = Publisher(self.mqtt_url, f"sim-city-{self.seed}-{shard[0]}-of-{shard[1]}")
        faults = Faults(self.faults, self.seed * 1000 + shard[0])
        stats = run_city(
            self.city(shard),
            publisher.send,
            faults,
            until=self.start + self.hours * 3600 if self.hours else None,
            speed=self.speed,
            stop=stop,
            show_progress=show_progress,
        )
        publisher.close()
        return stats, dict(faults.counts)


def _child(plan: CityRun, shard: tuple[int, int], results: mp.Queue) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops its children
    results.put(plan.run(shard, stop, show_progress=False))


def run_sharded(plan: CityRun, processes: int, stop: threading.Event) -> tuple[RunStats, dict]:
    """The city split between ``processes`` publishing processes (this one included)."""
    results: mp.Queue = mp.Queue()
    children = [
        mp.Process(target=_child, args=(plan, (k, processes), results), daemon=True) for k in range(1, processes)
    ]
    for child in children:
        child.start()
    # A child stops on SIGTERM as this process does on its signals, and still reports.
    watcher = threading.Thread(target=lambda: (stop.wait(), [c.terminate() for c in children]), daemon=True)
    watcher.start()
    total, counts = plan.run((0, processes), stop, show_progress=plan.hours is not None)
    for _ in children:
        stats, more = results.get()
        total.readings += stats.readings
        total.values += stats.values
        total.messages += stats.messages
        total.seconds = max(total.seconds, stats.seconds)
        for k, v in more.items():
            counts[k] = counts.get(k, 0) + v
    for child in children:
        child.join()
    return total, counts
