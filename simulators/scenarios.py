"""Scripted incidents in readable files, each stating the alerts it should cause.

A scenario is a small city (some units, a set number of sensors of each kind in each), calm
weather, a start time of day, and incidents: a flood, a pollution episode, a sensor outage, a
crowd (a camera's crowding events and a full car park). The same file and seed give the same
readings. The run ends at the present, so every timestamp is real and recent, and can go at any
speed (``IOC_ALERT_CLOCK=data`` lets no-data rules and escalation keep the sim's time).
"""

from __future__ import annotations

import logging
import random
import re
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import orjson
import psycopg
import yaml
from pydantic import BaseModel, ConfigDict, Field

from ioc_core import topics
from ioc_core.settings import Settings
from simulators.city import KINDS, City, Override
from simulators.faults import FaultRates, Faults
from simulators.publish import Publisher
from simulators.registry import load_units, register
from simulators.reports import WORDS, Open311Poster, SimReport, near
from simulators.runner import RunStats, run_city
from simulators.weather import Weather

log = logging.getLogger(__name__)
CITY_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h)$")


def seconds(text: str | float) -> float:
    """``90s``, ``30m``, ``2h`` (or a number of seconds)."""
    if isinstance(text, int | float):
        return float(text)
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 90s, 30m or 2h")
    return float(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Incident(_Strict):
    type: Literal["flood", "pollution", "outage", "crowd"]
    unit: str
    at: str  # from the scenario's start
    lasts: str = Field(alias="for")
    rain_mm_h: float = 80.0  # flood
    water_rise_m: float = 2.0  # flood
    pm_factor: float = 4.0  # pollution
    kinds: list[str] = []  # outage: only these kinds (default: all)
    camera: str | None = None  # crowd: the camera that sees it
    people: int = 60  # crowd
    parking: float = 0.98  # crowd: the car parks nearby fill up
    reports: int = 0  # citizens who report it, over its first half, from around the unit's centre
    category: str | None = None  # their reports' category (default: the incident's own)


class Expected(_Strict):
    """An alert the scenario must open: a rule, on every scenario sensor of a kind in a unit, or on a camera."""

    rule: str
    unit: str
    kind: str | None = None
    camera: str | None = None
    closes: bool = True

    @property
    def source(self) -> str:
        return self.camera or f"every {self.kind} sensor in {self.unit}"


class ExpectedTickets(_Strict):
    """The tickets a scenario's reports must make: the reports near each other join one ticket."""

    unit: str
    category: str
    tickets: int
    reports: int


INCIDENT_CATEGORY = {
    "flood": "flooding",
    "pollution": "environment_sanitation",
    "outage": "other",
    "crowd": "security_order",
}


class Scenario(_Strict):
    tag: str = Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")  # in the ids of its sensors: sim-{tag}-...
    name: str
    description: str = ""
    seed: int = 1
    start: str = "00:00"  # local time of day the run starts at
    duration: str
    step: str = "10s"  # sim time per tick
    units: list[str]
    sensors: dict[str, int]  # kind -> sensors in every unit
    incidents: list[Incident]
    expect: list[Expected]
    expect_tickets: list[ExpectedTickets] = []

    @classmethod
    def load(cls, path: Path) -> Scenario:
        return cls.model_validate(yaml.safe_load(path.read_text()))

    def start_time(self, now: float | None = None) -> float:
        """The latest day on which a run starting at ``start`` (local) ends before now."""
        now_local = datetime.fromtimestamp(now or time.time(), CITY_TZ)
        hour, minute = (int(x) for x in self.start.split(":"))
        begin = now_local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        while begin + timedelta(seconds=seconds(self.duration)) > now_local:
            begin -= timedelta(days=1)
        return begin.timestamp()

    def city(self, database_url: str, start: float) -> City:
        unknown = set(self.sensors) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown sensor kinds {sorted(unknown)}")
        overrides = []
        for i in self.incidents:
            begin = start + seconds(i.at)
            end = begin + seconds(i.lasts)
            match i.type:
                case "flood":
                    overrides.append(Override(i.unit, begin, end, rain_mm_h=i.rain_mm_h, water_rise_m=i.water_rise_m))
                case "pollution":
                    overrides.append(Override(i.unit, begin, end, pm_factor=i.pm_factor))
                case "outage":
                    overrides.append(Override(i.unit, begin, end, silent=True, kinds=tuple(i.kinds)))
                case "crowd":
                    overrides.append(Override(i.unit, begin, end, parking=i.parking, kinds=("parking",)))
        return City(
            load_units(database_url, self.units),
            0,
            seed=self.seed,
            start=start,
            hours=seconds(self.duration) / 3600,
            jitter=0.05,
            overrides=overrides,
            weather=Weather(),  # calm: only the incidents rain
            per_unit=self.sensors,
            prefix=f"sim-{self.tag}",
        )

    def expected_alerts(self, city: City) -> dict[tuple[str, str], bool]:
        """(rule name, source id) -> whether it must close, for every alert the scenario causes."""
        out = {}
        devices = city.devices()
        for e in self.expect:
            if e.camera:
                out[(e.rule, e.camera)] = e.closes
                continue
            matching = [d["id"] for d in devices if d["kind"] == e.kind and d["unit_id"] == e.unit]
            if not matching:
                raise ValueError(f"the scenario has no {e.kind} sensor in {e.unit} for {e.rule!r}")
            out.update({(e.rule, sensor_id): e.closes for sensor_id in matching})
        return out

    def camera_events(self, start: float) -> list[tuple[float, str, bytes]]:
        """The crowding events the crowd incidents' cameras send: started, every 30 s ongoing, ended."""
        out = []
        for i in self.incidents:
            if i.type != "crowd" or not i.camera:
                continue
            begin = start + seconds(i.at)
            length = seconds(i.lasts)
            topic = topics.camera_events(i.camera)
            steps = [(0.0, "started"), *((s, "ongoing") for s in range(30, int(length), 30)), (length, "ended")]
            for offset, state in steps:
                data = {"state": state, "duration_s": offset, "zones": [{"zone": "square", "people": i.people}]}
                payload = {"ts": int((begin + offset) * 1000), "event": "crowding", "severity": "minor", "data": data}
                out.append((begin + offset, topic, orjson.dumps(payload)))
        return sorted(out)

    def reports(self, start: float, city: City) -> list[SimReport]:
        """What the incidents' witnesses report: spread over the first half of each incident, from
        within 40 m of the unit's centre (so that they join one ticket)."""
        units = {u.id: u for u in city.units}
        rng = random.Random(self.seed)
        out = []
        for i in self.incidents:
            begin, half = start + seconds(i.at), seconds(i.lasts) / 2
            category = i.category or INCIDENT_CATEGORY[i.type]
            for k in range(i.reports):
                lat, lon = near(units[i.unit], rng, 40)
                at = begin + half * (k + 0.5) / i.reports
                out.append(SimReport(at, i.unit, category, lat, lon, f"{self.name}: {WORDS[category]}"))
        return sorted(out, key=lambda r: r.time)

    def register_cameras(self, database_url: str, city: City, exercise: bool = False) -> None:
        units = {u.id: u for u in city.units}
        with psycopg.connect(database_url, autocommit=True) as conn:
            for i in self.incidents:
                if i.type == "crowd" and i.camera:
                    u = units[i.unit]
                    conn.execute(
                        "INSERT INTO cameras (id, name, unit_id, lat, lon, exercise) VALUES (%s, %s, %s, %s, %s, %s)"
                        " ON CONFLICT (id) DO UPDATE SET unit_id = excluded.unit_id, exercise = excluded.exercise",
                        (i.camera, f"{self.name}: {i.camera}", i.unit, u.lat, u.lon, exercise),
                    )


def run_scenario(
    plan: Scenario,
    settings: Settings,
    *,
    speed: float | None,
    show_progress: bool = False,
    now: float | None = None,
    exercise: bool = False,
) -> RunStats:
    """Register the scenario's devices and publish it; ``speed`` None: as fast as the broker takes.
    ``exercise``: a drill: its devices, and so its alerts, reports and incidents, are marked so
    (on the screens, in the CAP feed as Exercise) and left out of the published figures."""
    start = plan.start_time(now)
    city = plan.city(settings.database_url, start)
    register(settings.database_url, city.devices(), exercise)
    plan.register_cameras(settings.database_url, city, exercise)
    camera_events = plan.camera_events(start)
    reports = plan.reports(start, city)
    poster = None
    if reports and settings.sim_open311_key:
        poster = Open311Poster(settings.sim_api_url, settings.sim_open311_key, exercise)
    elif reports:
        log.warning("the scenario's reports are not filed: no IOC_SIM_OPEN311_KEY")
    publisher = Publisher(settings.mqtt_url, f"sim-scenario-{plan.seed}-{int(time.time())}")

    def with_cameras(t: float) -> list[tuple[str, bytes]]:
        """The camera events due by sim time t (to publish), and the reports due, filed."""
        due = [(topic, payload) for at, topic, payload in camera_events if at <= t]
        del camera_events[: len(due)]
        while poster and reports and reports[0].time <= t:
            poster.post(reports.pop(0))
        return due

    stats = run_city(
        city,
        publisher.send,
        Faults(FaultRates()),
        until=start + seconds(plan.duration),
        speed=speed,
        step_s=seconds(plan.step),
        extra=with_cameras,
        show_progress=show_progress,
    )
    publisher.close()
    if poster:
        stats.reports_filed = poster.filed
        poster.close()
    return stats
