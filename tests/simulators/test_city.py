"""The simulated city behaves like a city: rhythms, plausible ranges, correlations, determinism."""

import itertools
from datetime import datetime
from statistics import mean
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from simulators.city import KINDS, RANGES, City, Override
from simulators.registry import load_units
from simulators.weather import Weather

DAY = datetime(2026, 11, 20, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh")).timestamp()  # local midnight


@pytest.fixture(scope="module")
def units(database_url: str):
    return load_units(database_url)


def run(city: City, hours: float, step: float = 60.0) -> list:
    out = []
    t = city.start
    while t < city.start + hours * 3600:
        t += step
        out += city.readings(t)
    return out


def test_the_same_seed_gives_the_same_city_and_readings(units) -> None:
    a = City(units, 300, seed=4, start=DAY, hours=2)
    b = City(units, 300, seed=4, start=DAY, hours=2)
    c = City(units, 300, seed=5, start=DAY, hours=2)
    assert a.devices() == b.devices() and a.devices() != c.devices()
    assert run(a, 1) == run(b, 1)


def test_sensors_spread_over_all_kinds_and_units_report_on_their_interval_with_jitter(units) -> None:
    city = City(units, 10_000, seed=1, start=DAY, hours=1, jitter=0.1)
    devices = city.devices()
    assert len(devices) == 10_000 and len({d["id"] for d in devices}) == 10_000
    assert {d["kind"] for d in devices} == set(KINDS)
    assert len({d["unit_id"] for d in devices}) >= 90
    every_minute = {d["id"] for d in devices if d["interval_s"] == 60}
    times: dict[str, list[float]] = {}
    for r in run(city, 0.5, step=5):
        if r.sensor_id in every_minute:
            times.setdefault(r.sensor_id, []).append(r.time)
    gaps = [b - a for ts in times.values() for a, b in itertools.pairwise(ts)]
    assert min(gaps) >= 0.9 * 60 - 1e-6 and max(gaps) <= 1.1 * 60 + 1e-6


def test_values_stay_within_what_the_devices_can_report(units) -> None:
    city = City(units, 1000, seed=2, start=DAY, hours=24)
    for r in run(city, 24, step=600):
        for metric, value in r.values.items():
            lo, hi = RANGES[metric]
            assert lo <= value <= hi, (r.sensor_id, metric, value)


def test_traffic_peaks_in_the_rush_hours_and_is_mostly_motorcycles(units) -> None:
    city = City(units, 2000, seed=3, start=DAY, hours=24, shares={"traffic": 1, **dict.fromkeys(
        ("air_quality", "noise", "street_light", "parking", "rainfall", "water_level"), 0)})  # fmt: skip
    by_hour: dict[int, list[float]] = {}
    kinds = {"motorcycles": 0.0, "all": 0.0}
    for r in run(city, 24, step=300):
        hour = datetime.fromtimestamp(r.time, ZoneInfo("Asia/Ho_Chi_Minh")).hour
        total = r.values["motorcycles"] + r.values["cars"] + r.values["trucks"] + r.values["buses"]
        by_hour.setdefault(hour, []).append(total)
        kinds["motorcycles"] += r.values["motorcycles"]
        kinds["all"] += total
    night, morning, evening = mean(by_hour[3]), mean(by_hour[7]), mean(by_hour[17])
    assert morning > 4 * night and evening > 4 * night
    assert 0.75 < kinds["motorcycles"] / kinds["all"] < 0.85


def test_rain_raises_the_rivers_and_washes_out_the_dust(units) -> None:
    wet = units[0].id
    start = DAY + 8 * 3600
    shares = {
        "air_quality": 1,
        "water_level": 1,
        "rainfall": 1,
        "traffic": 0,
        "noise": 0,
        "street_light": 0,
        "parking": 0,
    }
    city = City(units, 940, seed=6, start=start, hours=6, shares=shares, weather=Weather(),
                overrides=[Override(wet, start + 3600, start + 3 * 3600, rain_mm_h=60)])  # fmt: skip
    unit_of = {d["id"]: d["unit_id"] for d in city.devices()}
    series: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in run(city, 4, step=60):
        for metric, value in r.values.items():
            series.setdefault(((unit_of[r.sensor_id] == wet and "wet") or "dry", metric), []).append((r.time, value))

    def during(key: tuple[str, str], a: float, b: float) -> float:
        return float(np.mean([v for t, v in series[key] if start + a * 3600 <= t < start + b * 3600]))

    assert during(("wet", "rain_mm_h"), 1.5, 2.5) == pytest.approx(60, abs=1)
    assert during(("dry", "rain_mm_h"), 1.5, 2.5) == 0
    assert during(("wet", "level_m"), 2.5, 3) - during(("wet", "level_m"), 0, 1) > 0.4  # the rivers rose
    assert during(("wet", "pm25"), 1.5, 2.5) < 0.5 * during(("wet", "pm25"), 0, 1)  # washed out
    assert during(("dry", "pm25"), 1.5, 2.5) > 0.7 * during(("dry", "pm25"), 0, 1)


def test_street_lights_burn_at_night_and_a_few_are_out(units) -> None:
    shares = {
        "street_light": 1,
        "traffic": 0,
        "air_quality": 0,
        "noise": 0,
        "parking": 0,
        "rainfall": 0,
        "water_level": 0,
    }
    city = City(units, 2000, seed=8, start=DAY, hours=24, shares=shares)
    night = [r.values["power_w"] for r in run(city, 2, step=300)]  # midnight to two
    assert 0.005 < sum(p == 0 for p in night) / len(night) < 0.05  # lamps out of order
    assert mean(p for p in night if p) > 50


def test_shards_split_the_sensors_without_overlap(units) -> None:
    whole = {d["id"] for d in City(units, 1000, seed=1, start=DAY).devices()}
    parts = [{d["id"] for d in City(units, 1000, seed=1, start=DAY, shard=(k, 3)).devices()} for k in range(3)]
    assert set().union(*parts) == whole and sum(len(p) for p in parts) == len(whole)
