"""Readings into MQTT messages, with the faults real devices have, at set rates.

Each fault exercises a path of ingest:

| fault | what the device does | what ingest must do |
| --- | --- | --- |
| dropout | a reading is never sent | nothing; no-data rules notice a long silence |
| duplicate | a message is sent twice | store it once |
| late | readings held back, then sent in a burst, newest first | store them at their own times, out of order |
| stuck | a sensor repeats its first values | store them (rules see a flat line) |
| skew | a sensor's clock is off by minutes | store within limits, dead-letter beyond ``max_future`` |
| malformed | broken JSON, a NaN, a string for a number, no values | dead letters with their reasons |
| gateway | sensors report through a gateway, many readings a message | split and store each |
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

import orjson

from ioc_core import topics
from simulators.city import Reading


@dataclass(frozen=True, slots=True)
class FaultRates:
    dropout: float = 0.0  # of readings
    duplicate: float = 0.0  # of messages
    late: float = 0.0  # of readings, held back up to late_s
    late_s: float = 120.0
    stuck: float = 0.0  # of sensors
    skew: float = 0.0  # of sensors, off by up to skew_s either way
    skew_s: float = 600.0
    malformed: float = 0.0  # of messages
    gateway: float = 0.0  # of sensors, reporting through their unit's gateway

    @classmethod
    def parse(cls, text: str) -> FaultRates:
        """``dropout=0.01,duplicate=0.005,...`` (the command line's form)."""
        if not text:
            return cls()
        pairs = dict(item.split("=", 1) for item in text.split(","))
        unknown = set(pairs) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {', '.join(cls.__dataclass_fields__)}")
        return cls(**{k: float(v) for k, v in pairs.items()})


_MALFORMED = (
    lambda r: b'{"ts": ' + str(int(r.time * 1000)).encode() + b', "values": {"x": 1',  # cut short
    lambda r: b'{"values": {"' + next(iter(r.values)).encode() + b'": NaN}}',
    lambda r: orjson.dumps({"values": {k: str(v) for k, v in r.values.items()}}),
    lambda r: orjson.dumps({"ts": int(r.time * 1000)}),
)


@dataclass
class Faults:
    rates: FaultRates
    seed: int = 1
    _rng: random.Random = field(init=False)
    _stuck: dict[str, dict[str, float]] = field(init=False, default_factory=dict)
    _skew: dict[str, float] = field(init=False, default_factory=dict)
    _draws: dict[tuple[str, str], float] = field(init=False, default_factory=dict)
    _held: list[tuple[float, Reading]] = field(init=False, default_factory=list)
    counts: dict[str, int] = field(init=False, default_factory=lambda: defaultdict(int))

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _sensor_draw(self, sensor_id: str, salt: str) -> float:
        """A stable draw per sensor, so a faulty device stays faulty (drawn once, then remembered)."""
        key = (sensor_id, salt)
        if key not in self._draws:
            self._draws[key] = random.Random(f"{self.seed}:{salt}:{sensor_id}").random()
        return self._draws[key]

    def messages(self, readings: list[Reading], now: float, gateway_of: dict[str, str]) -> list[tuple[str, bytes]]:
        """The messages to send at sim time ``now`` for ``readings`` (and the late ones now due)."""
        r = self.rates
        out: list[tuple[str, bytes]] = []
        batches: dict[str, list[dict]] = defaultdict(list)
        ready = [x for _, x in sorted((h for h in self._held if h[0] <= now), key=lambda h: -h[1].time)]
        self._held = [h for h in self._held if h[0] > now]
        self.counts["late"] += len(ready)
        rng = self._rng
        for reading in readings:
            if r.dropout and rng.random() < r.dropout:
                self.counts["dropout"] += 1
                continue
            if r.late and rng.random() < r.late:
                self._held.append((now + rng.uniform(0, r.late_s), reading))
                continue
            ready.append(reading)
        for reading in ready:
            reading = self._device(reading)
            gateway = gateway_of.get(reading.sensor_id) if r.gateway else None
            if gateway is not None and self._sensor_draw(reading.sensor_id, "gateway") < r.gateway:
                batches[gateway].append(
                    {"sensor_id": reading.sensor_id, "ts": int(reading.time * 1000), "values": reading.values}
                )
                continue
            topic = topics.sensor_readings(reading.sensor_id)
            if r.malformed and rng.random() < r.malformed:
                self.counts["malformed"] += 1
                out.append((topic, rng.choice(_MALFORMED)(reading)))
                continue
            payload = orjson.dumps({"ts": int(reading.time * 1000), "values": reading.values})
            out.append((topic, payload))
            if r.duplicate and rng.random() < r.duplicate:
                self.counts["duplicate"] += 1
                out.append((topic, payload))
        for gateway, items in batches.items():
            self.counts["gateway_messages"] += 1
            out.append((topics.gateway_readings(gateway), orjson.dumps(items)))
        return out

    def _device(self, reading: Reading) -> Reading:
        """What a stuck sensor or a skewed clock makes of a reading."""
        r = self.rates
        if r.stuck and self._sensor_draw(reading.sensor_id, "stuck") < r.stuck:
            values = self._stuck.setdefault(reading.sensor_id, reading.values)
            reading = Reading(reading.sensor_id, reading.time, values)
        if r.skew and self._sensor_draw(reading.sensor_id, "skew") < r.skew:
            offset = self._skew.setdefault(reading.sensor_id, self._rng.uniform(-r.skew_s, r.skew_s))
            reading = Reading(reading.sensor_id, reading.time + offset, reading.values)
        return reading
