"""Citizens' reports of the simulated city: as many as its people file, by the hour of the day, and
those a scenario's incidents cause; posted through Open311, as the city's app posts them.

About one report a day for every 10,000 people, most in the working day, few at night; the
categories as 1022's mix runs (most about urban order, waste and roads). The simulator's app key
(channel ``simulated``) may date its reports (``requested_datetime``), so that a run at speed
files them in the simulation's time and their deadlines and escalations follow it.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from simulators.city import Unit

log = logging.getLogger(__name__)

PER_10K_PEOPLE_A_DAY = 1.0
# Relative weight of each hour of the day (local time): people report when they are out and about.
HOURLY = [
    0.2,
    0.1,
    0.1,
    0.1,
    0.2,
    0.6,
    1.2,
    1.8,
    1.9,
    1.7,
    1.5,
    1.3,
    1.0,
    1.1,
    1.4,
    1.5,
    1.6,
    1.6,
    1.4,
    1.2,
    1.0,
    0.8,
    0.5,
    0.3,
]
_MEAN_HOURLY = sum(HOURLY) / 24
CATEGORIES = {
    "security_order": 0.22,
    "environment_sanitation": 0.2,
    "urban_infrastructure": 0.18,
    "traffic": 0.12,
    "lighting": 0.09,
    "trees": 0.07,
    "noise": 0.06,
    "flooding": 0.02,
    "other": 0.04,
}
WORDS = {
    "security_order": "Lấn chiếm vỉa hè, buôn bán dưới lòng đường",
    "environment_sanitation": "Rác thải tập kết sai nơi quy định, bốc mùi",
    "urban_infrastructure": "Mặt đường hư hỏng, ổ gà lớn",
    "traffic": "Đèn tín hiệu giao thông không hoạt động",
    "lighting": "Đèn đường không sáng cả đoạn",
    "trees": "Cây xanh nghiêng, có nguy cơ gãy đổ",
    "noise": "Hát karaoke gây ồn sau 22 giờ",
    "flooding": "Nước ngập sâu, xe cộ không qua được",
    "other": "Phản ánh khác của người dân",
}
_HOUR_OFFSET = 7  # Asia/Ho_Chi_Minh, no daylight saving


@dataclass(frozen=True, slots=True)
class SimReport:
    time: float
    unit_id: str
    category: str
    lat: float
    lon: float
    description: str


def near(unit: Unit, rng: random.Random, within_m: float) -> tuple[float, float]:
    """A point within ``within_m`` metres of the unit's centre."""
    r = within_m * math.sqrt(rng.random()) / 111_320
    a = rng.uniform(0, 2 * math.pi)
    return unit.lat + r * math.sin(a), unit.lon + r * math.cos(a) / math.cos(math.radians(unit.lat))


class CityReports:
    """The reports a city's people file between two moments."""

    def __init__(self, units: list[Unit], seed: int, scale: float = 1.0) -> None:
        self.units, self.rng, self.scale = units, random.Random(seed), scale
        self._codes, self._weights = list(CATEGORIES), list(CATEGORIES.values())

    def between(self, t0: float, t1: float) -> list[SimReport]:
        hour = int((t0 / 3600 + _HOUR_OFFSET) % 24)
        share = (t1 - t0) / 86_400 * HOURLY[hour] / _MEAN_HOURLY
        reports = []
        for unit in self.units:
            expected = unit.population / 10_000 * PER_10K_PEOPLE_A_DAY * share * self.scale
            for _ in range(_poisson(self.rng, expected)):
                category = self.rng.choices(self._codes, self._weights)[0]
                lat, lon = near(unit, self.rng, 400)
                reports.append(SimReport(self.rng.uniform(t0, t1), unit.id, category, lat, lon, WORDS[category]))
        return sorted(reports, key=lambda r: r.time)


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: the means here are small."""
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def file_city_reports(city: CityReports, poster: Open311Poster, stop: threading.Event, period_s: float = 10) -> None:
    """At real time, until ``stop``: every period, the reports the city's people filed in it."""
    last = time.time()
    while not stop.wait(period_s):
        now = time.time()
        for report in city.between(last, now):
            poster.post(report)
        last = now
    poster.close()


class Open311Poster:
    """Files reports through the API's Open311 endpoint with the simulator's app key."""

    def __init__(self, api_url: str, api_key: str, exercise: bool = False) -> None:
        self.api_key, self.exercise = api_key, exercise
        self.http = httpx.Client(base_url=f"{api_url.rstrip('/')}/open311/v2", timeout=10)
        self.filed = self.refused = 0

    def post(self, report: SimReport) -> str | None:
        form = {
            "api_key": self.api_key,
            "service_code": report.category,
            "lat": f"{report.lat:.6f}",
            "long": f"{report.lon:.6f}",
            "description": report.description,
            "requested_datetime": datetime.fromtimestamp(report.time, UTC).isoformat(),
        }
        if self.exercise:
            form["exercise"] = "true"
        try:
            response = self.http.post("/requests.json", data=form)
        except httpx.HTTPError as exc:
            log.warning("report not filed: the API did not answer", extra={"error": str(exc)})
            self.refused += 1
            return None
        if response.status_code != 200:
            self.refused += 1  # a place outside the city, say: the simulation goes on
            log.info("report refused", extra={"status": response.status_code, "answer": response.text[:200]})
            return None
        self.filed += 1
        return response.json()[0]["service_request_id"]

    def close(self) -> None:
        self.http.close()
