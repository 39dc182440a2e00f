"""A simulated Da Nang: sensors placed across its 94 units and the values they would report.

Pure and deterministic for a seed: no I/O. ``City.readings(t)`` gives the readings due at sim
time ``t`` (seconds since the epoch). Values follow the clock and each other:
- traffic has morning and evening peaks and a motorcycle-heavy mix;
- PM2.5, PM10 and NO2 follow the unit's traffic, thin out with wind and are washed out by rain;
- rainfall comes from the weather's rain cells; water levels follow the tide (coast and river
  mouths most) and rise with the rain that fell on their unit over the last hours;
- noise follows traffic; street lights draw power at night; parking fills in business hours.
Scenario overrides (``Override``) push a unit's rain, water, air, parking or presence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulators.weather import Weather, local_hour, tide

# kind -> (share of the sensors, reporting interval in seconds, metrics)
KINDS: dict[str, tuple[float, float, tuple[str, ...]]] = {
    "traffic": (0.25, 60, ("motorcycles", "cars", "trucks", "buses", "speed_kmh")),
    "air_quality": (0.15, 60, ("pm25", "pm10", "no2")),
    "noise": (0.10, 60, ("laeq_db",)),
    "street_light": (0.25, 300, ("power_w",)),
    "parking": (0.10, 120, ("occupancy",)),
    "rainfall": (0.05, 60, ("rain_mm_h",)),
    "water_level": (0.10, 60, ("level_m",)),
}
# Valid ranges registered with each metric: what a real device of the kind could report.
RANGES: dict[str, tuple[float, float]] = {
    "motorcycles": (0, 2000), "cars": (0, 1000), "trucks": (0, 500), "buses": (0, 200), "speed_kmh": (0, 150),
    "pm25": (0, 1000), "pm10": (0, 2000), "no2": (0, 2000), "laeq_db": (20, 140), "power_w": (0, 1000),
    "occupancy": (0, 1), "rain_mm_h": (0, 500), "level_m": (-3, 15),
}  # fmt: skip
WATER_SITES = ("river", "canal", "coast")


@dataclass(frozen=True, slots=True)
class Unit:
    id: str
    lat: float
    lon: float
    population: int
    area_km2: float


@dataclass(frozen=True, slots=True)
class Reading:
    sensor_id: str
    time: float
    values: dict[str, float]


@dataclass
class Override:
    """A scenario's push on a unit between two times."""

    unit_id: str
    start: float
    end: float
    rain_mm_h: float = 0.0  # added rain
    water_rise_m: float = 0.0  # an upstream flood wave: added level at its peak
    pm_factor: float = 1.0  # air pollution multiplied (an episode)
    parking: float | None = None  # occupancy forced
    silent: bool = False  # the unit's sensors stop reporting (an outage)
    kinds: tuple[str, ...] = ()  # only these kinds (empty: all)

    def weight(self, t: float) -> float:
        """0 outside, 1 on the plateau, a 10-minute ramp in and out."""
        if not self.start <= t < self.end:
            return 0.0
        ramp = 600.0
        return min(1.0, (t - self.start) / ramp, (self.end - t) / ramp)

    def applies(self, kind: str) -> bool:
        return not self.kinds or kind in self.kinds


@dataclass
class City:
    """The sensors of the city, as arrays by kind, and the state that carries between readings."""

    units: list[Unit]
    sensors: int
    seed: int = 1
    start: float = 0.0
    hours: float = 24.0
    jitter: float = 0.1  # each report comes up to this fraction of its interval early or late
    intervals: dict[str, float] = field(default_factory=dict)  # kind -> seconds (default: KINDS)
    shares: dict[str, float] = field(default_factory=dict)  # kind -> share (default: KINDS)
    overrides: list[Override] = field(default_factory=list)
    weather: Weather | None = None
    per_unit: dict[str, int] = field(default_factory=dict)  # kind -> sensors in every unit (scenarios)
    prefix: str = "sim"  # of the sensor ids
    shard: tuple[int, int] = (0, 1)  # (k, n): this process reports every n-th sensor from the k-th

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        centre = (float(np.mean([u.lat for u in self.units])), float(np.mean([u.lon for u in self.units])))
        if self.weather is None:
            self.weather = Weather.draw(self.rng, self.start, self.hours, centre)
        weights = np.array([max(u.population, 1000) for u in self.units], dtype=np.float64)
        weights /= weights.sum()
        self.groups: dict[str, _Group] = {}
        for kind, placed in self._placement(weights).items():
            if len(placed) > 0:
                interval = self.intervals.get(kind, KINDS[kind][1])
                group = _Group.place(kind, placed, interval, self.units, self.rng, self.start, self.prefix)
                self.groups[kind] = group.part(*self.shard)
        self.rng = np.random.default_rng([self.seed, *self.shard])  # each shard draws its own values
        self._unit_index = {u.id: i for i, u in enumerate(self.units)}
        self._runoff = np.zeros(len(self.units))  # rain that is still reaching the rivers, per unit
        self._runoff_t = self.start

    def _placement(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """Kind -> the unit (index) of each of its sensors: ``per_unit`` in every unit, or the
        shares of ``sensors`` spread by population."""
        if self.per_unit:
            every = np.arange(len(self.units))
            return {kind: np.repeat(every, n) for kind, n in self.per_unit.items()}
        shares = {k: self.shares.get(k, v[0]) for k, v in KINDS.items()}
        total = sum(shares.values())
        counts = {k: round(self.sensors * s / total) for k, s in shares.items()}
        counts[max(counts, key=counts.get)] += self.sensors - sum(counts.values())
        return {kind: self.rng.choice(len(self.units), size=n, p=weights) for kind, n in counts.items()}

    # --- what the registry needs

    def devices(self) -> list[dict[str, Any]]:
        """Every sensor as the registry records it."""
        out = []
        for kind, g in self.groups.items():
            for i, sensor_id in enumerate(g.ids):
                out.append(
                    {
                        "id": sensor_id,
                        "kind": kind,
                        "unit_id": self.units[g.unit[i]].id,
                        "lat": round(float(g.lat[i]), 6),
                        "lon": round(float(g.lon[i]), 6),
                        "interval_s": g.interval,
                        "gateway_id": f"gw-{self.units[g.unit[i]].id}",  # its unit's, when it reports through one
                        "metrics": {m: {"min": RANGES[m][0], "max": RANGES[m][1]} for m in KINDS[kind][2]},
                    }
                )
        return out

    # --- what the sensors report

    def readings(self, t: float) -> list[Reading]:
        """The readings due at or before ``t`` that were not given yet, each at its own time (a
        sensor behind by several intervals gives one reading for each)."""
        self._advance_runoff(t)
        out: list[Reading] = []
        for kind, g in self.groups.items():
            while len(due := np.flatnonzero(g.next <= t)):
                times = g.next[due].copy()
                g.next[due] += g.interval * (1 + self.jitter * self.rng.uniform(-1, 1, len(due)))
                keep = ~self._silent(kind, g, due, times)
                if keep.any():
                    out += self._report(kind, g, due[keep], times[keep])
        return out

    def _report(self, kind: str, g: _Group, due: np.ndarray, times: np.ndarray) -> list[Reading]:
        values = getattr(self, f"_{kind}")(g, due, float(np.median(times)))
        names = KINDS[kind][2]
        columns = [np.round(values[m], 2).tolist() for m in names]
        ids = g.ids
        return [
            Reading(ids[i], float(times[j]), {m: col[j] for m, col in zip(names, columns, strict=True)})
            for j, i in enumerate(due.tolist())
        ]

    def _silent(self, kind: str, g: _Group, due: np.ndarray, times: np.ndarray) -> np.ndarray:
        silent = np.zeros(len(due), dtype=bool)
        for o in self.overrides:
            if o.silent and o.applies(kind):
                in_unit = g.unit[due] == self._unit_index[o.unit_id]
                silent |= in_unit & (times >= o.start) & (times < o.end)
        return silent

    def _unit_push(self, g: _Group, due: np.ndarray, t: float, what: str) -> np.ndarray:
        """Per due sensor: the sum (rain, water) or product (pm) of the overrides on its unit now."""
        product = what == "pm_factor"
        push = np.ones(len(due)) if product else np.zeros(len(due))
        for o in self.overrides:
            w = o.weight(t)
            if w == 0 or not o.applies(g.kind):
                continue
            in_unit = g.unit[due] == self._unit_index[o.unit_id]
            value = getattr(o, what)
            if product:
                push[in_unit] *= 1 + (value - 1) * w
            else:
                push[in_unit] += value * w
        return push

    def _traffic_profile(self, t: float) -> float:
        """0.1 at night to about 1 at the evening peak (local time)."""
        h = local_hour(t)
        peaks = math.exp(-((h - 7.5) ** 2) / 1.2) + 1.1 * math.exp(-((h - 17.5) ** 2) / 1.5)
        day = 0.45 if 6 <= h <= 21 else 0.0
        return 0.1 + day + 0.5 * peaks

    def _rain(self, g: _Group, due: np.ndarray, t: float) -> np.ndarray:
        return self.weather.rain(t, g.lat[due], g.lon[due]) + self._unit_push(g, due, t, "rain_mm_h")

    # --- one function per kind: values for the due sensors of the group

    def _traffic(self, g: _Group, due: np.ndarray, t: float) -> dict[str, np.ndarray]:
        flow = g.scale[due] * self._traffic_profile(t) * g.interval / 60  # vehicles in the interval
        vehicles = self.rng.poisson(flow)
        mix = self.rng.multinomial(vehicles, [0.8, 0.15, 0.03, 0.02])
        speed = 50 - 25 * self._traffic_profile(t) + self.rng.normal(0, 3, len(due))
        return {
            "motorcycles": mix[:, 0],
            "cars": mix[:, 1],
            "trucks": mix[:, 2],
            "buses": mix[:, 3],
            "speed_kmh": np.clip(speed, 3, 90),
        }

    def _air_quality(self, g: _Group, due: np.ndarray, t: float) -> dict[str, np.ndarray]:
        traffic = self._traffic_profile(t)
        dilution = 1 / (0.6 + self.weather.wind(t) / 7.5)
        washout = np.exp(-self._rain(g, due, t) / 8)
        noise = self.rng.lognormal(0, 0.08, len(due))
        pm25 = (10 + 14 * traffic * g.scale[due] / 40) * dilution * washout * noise
        pm25 *= self._unit_push(g, due, t, "pm_factor")
        return {"pm25": pm25, "pm10": pm25 * 1.6 + 4, "no2": (12 + 25 * traffic) * dilution * noise}

    def _noise(self, g: _Group, due: np.ndarray, t: float) -> dict[str, np.ndarray]:
        return {"laeq_db": 50 + 12 * self._traffic_profile(t) + self.rng.normal(0, 1.2, len(due))}

    def _street_light(self, g: _Group, due: np.ndarray, t: float) -> dict[str, np.ndarray]:
        h = local_hour(t)
        night = h >= 18 or h < 6
        power = g.scale[due] * (1 + self.rng.normal(0, 0.02, len(due))) if night else np.full(len(due), 0.5)
        return {"power_w": np.where(g.failed[due], 0.0, power)}

    def _parking(self, g: _Group, due: np.ndarray, t: float) -> dict[str, np.ndarray]:
        h = local_hour(t)
        business = math.exp(-((h - 11) ** 2) / 18) + 0.8 * math.exp(-((h - 19.5) ** 2) / 4)
        occupancy = np.clip(0.15 + 0.55 * business + self.rng.normal(0, 0.04, len(due)), 0, 0.9)
        forced = [o for o in self.overrides if o.parking is not None and o.weight(t) > 0]
        for o in forced:
            occupancy[g.unit[due] == self._unit_index[o.unit_id]] = o.parking
        return {"occupancy": occupancy}

    def _rainfall(self, g: _Group, due: np.ndarray, t: float) -> dict[str, np.ndarray]:
        return {"rain_mm_h": self._rain(g, due, t)}

    def _water_level(self, g: _Group, due: np.ndarray, t: float) -> dict[str, np.ndarray]:
        coupling = np.choose(g.site[due], [0.6, 0.3, 1.0])  # river, canal, coast
        runoff = self._runoff[g.unit[due]] * np.choose(g.site[due], [1.0, 0.8, 0.3])
        level = g.scale[due] + coupling * tide(t) + runoff + self._unit_push(g, due, t, "water_rise_m")
        return {"level_m": level + self.rng.normal(0, 0.005, len(due))}

    def _advance_runoff(self, t: float) -> None:
        """Rain on a unit reaches its rivers over hours: 50 mm/h for two hours raises them about 1 m."""
        dt = t - self._runoff_t
        if dt <= 0:
            return
        lat = np.array([u.lat for u in self.units])
        lon = np.array([u.lon for u in self.units])
        rain = self.weather.rain(t, lat, lon)
        for o in self.overrides:
            w = o.weight(t)
            if w and o.rain_mm_h:
                rain[self._unit_index[o.unit_id]] += o.rain_mm_h * w
        tau = 2.5 * 3600.0
        decay = math.exp(-dt / tau)
        self._runoff = self._runoff * decay + (rain * 0.035) * (1 - decay)
        self._runoff_t = t


@dataclass
class _Group:
    """The sensors of one kind, as arrays."""

    kind: str
    interval: float
    ids: list[str]
    unit: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    next: np.ndarray  # when each reports next
    scale: np.ndarray  # size of the place: road capacity, lamp wattage, base water level ...
    site: np.ndarray  # water level: river, canal or coast
    failed: np.ndarray  # street lights out of order

    @classmethod
    def place(
        cls,
        kind: str,
        unit: np.ndarray,
        interval: float,
        units: list[Unit],
        rng: np.random.Generator,
        start: float,
        prefix: str,
    ) -> _Group:
        n = len(unit)
        radius_deg = np.array([math.sqrt(max(u.area_km2, 1) / math.pi) / 111 * 0.6 for u in units])[unit]
        lat = np.array([u.lat for u in units])[unit] + rng.normal(0, 1, n) * radius_deg
        lon = np.array([u.lon for u in units])[unit] + rng.normal(0, 1, n) * radius_deg
        site = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
        scale = {
            "traffic": rng.uniform(15, 60, n),  # vehicles a minute at the peak
            "air_quality": rng.uniform(25, 55, n),  # how much traffic reaches the sensor
            "street_light": rng.choice([60.0, 100.0, 150.0], n),
            "water_level": np.choose(site, [0.9, 0.6, 0.4]) + rng.normal(0, 0.1, n),
        }.get(kind, np.ones(n))
        short = {"air_quality": "aq", "street_light": "light", "water_level": "water"}.get(kind, kind)
        ids = [f"{prefix}-{short}-{units[u].id}-{i}" for i, u in enumerate(unit.tolist())]
        return cls(
            kind,
            interval,
            ids,
            unit,
            lat,
            lon,
            next=start + rng.uniform(0, interval, n),
            scale=scale,
            site=site,
            failed=rng.random(n) < 0.02,
        )

    def part(self, k: int, n: int) -> _Group:
        """Every n-th sensor from the k-th: one process's share of the city."""
        if n == 1:
            return self
        pick = slice(k, None, n)
        arrays = {name: getattr(self, name)[pick] for name in ("unit", "lat", "lon", "next", "scale", "site", "failed")}
        return _Group(self.kind, self.interval, self.ids[pick], **arrays)
