"""The weather and the sea over Da Nang, deterministic for a seed: rain cells, wind and the tide.

Rain comes as cells (a centre, a radius, a peak intensity, a start and a length) drawn for the
whole run from the seed, so every sensor in a unit sees the same storm, neighbouring units see it
weaker, and a replay of the same seed rains the same. Scenarios add cells of their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

TIDE_DIURNAL_M = 0.35  # Da Nang's tide is mostly diurnal, about 0.5 to 1 m range
TIDE_SEMIDIURNAL_M = 0.12


@dataclass(frozen=True, slots=True)
class RainCell:
    start: float  # seconds since the epoch
    duration_s: float
    peak_mm_h: float
    lat: float
    lon: float
    radius_km: float

    def intensity(self, t: float, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """mm/h at time t for points (lat, lon): a smooth rise and fall, fading with distance."""
        x = (t - self.start) / self.duration_s
        if not 0 <= x <= 1:
            return np.zeros_like(lat)
        envelope = math.sin(math.pi * x) ** 0.5  # quick rise, long plateau, quick fall
        dy = (lat - self.lat) * 111.0
        dx = (lon - self.lon) * 111.0 * math.cos(math.radians(self.lat))
        return self.peak_mm_h * envelope * np.exp(-(dx * dx + dy * dy) / (2 * self.radius_km**2))


@dataclass
class Weather:
    cells: list[RainCell] = field(default_factory=list)
    wind_mean_ms: float = 3.0

    @classmethod
    def draw(cls, rng: np.random.Generator, start: float, hours: float, centre: tuple[float, float]) -> Weather:
        """A few showers a day (tropical: short, local, sometimes heavy)."""
        cells = []
        for _ in range(rng.poisson(max(hours, 1) / 8)):
            cells.append(
                RainCell(
                    start=start + rng.uniform(0, hours * 3600),
                    duration_s=rng.uniform(1200, 5400),
                    peak_mm_h=float(rng.choice([2, 5, 10, 20], p=[0.4, 0.3, 0.2, 0.1])),
                    lat=centre[0] + rng.normal(0, 0.08),
                    lon=centre[1] + rng.normal(0, 0.08),
                    radius_km=rng.uniform(3, 10),
                )
            )
        return cls(cells)

    def rain(self, t: float, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        total = np.zeros_like(lat, dtype=np.float64)
        for cell in self.cells:
            total += cell.intensity(t, lat, lon)
        return total

    def wind(self, t: float) -> float:
        """m/s: a sea breeze that picks up in the afternoon (local hour)."""
        hour = local_hour(t)
        return self.wind_mean_ms * (1 + 0.5 * math.sin(math.pi * (hour - 9) / 12))


def tide(t: float) -> float:
    """Sea level against mean, in metres (a diurnal and a smaller semi-diurnal constituent)."""
    hours = t / 3600
    return TIDE_DIURNAL_M * math.sin(2 * math.pi * hours / 24.84) + TIDE_SEMIDIURNAL_M * math.sin(
        2 * math.pi * hours / 12.42 + 1.0
    )


def local_hour(t: float) -> float:
    """Hour of the day in Da Nang (UTC+7, no daylight saving)."""
    return ((t / 3600) + 7) % 24
