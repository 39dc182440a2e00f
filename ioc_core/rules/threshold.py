"""Threshold: a value above (or below) a limit for a duration opens; back past ``clear`` resolves.

Several ingest workers share a sensor's readings, so one worker sees only part of a breach. Where
the worker's own sight is not enough (the first breaching reading it sees, and a breach that has
lasted its duration as far as it saw), it asks the stored readings, which every worker writes, in
the batch's own transaction. Those asks happen at transitions only, and the first sightings of a
batch are one query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

import psycopg
from pydantic import Field, model_validator

from ioc_core.rules.base import OPEN, Hit, Key, ReadingLike, ReadingType, RuleParams, RuleState

if TYPE_CHECKING:
    from ioc_core.rules import Rule


class Params(RuleParams):
    """Above (or below) ``value`` for ``for_s`` seconds of reading time opens; crossing back past
    ``clear`` resolves, so a value hovering at the limit does not flap."""

    type: Literal["threshold"] = "threshold"
    op: Literal["above", "below"]
    value: float = Field(allow_inf_nan=False)
    clear: float | None = Field(
        None, allow_inf_nan=False, description="Resolves when back past this value; default: value."
    )
    for_s: float = Field(0, ge=0, le=7 * 86400)

    @model_validator(mode="after")
    def _clear_on_the_safe_side(self) -> Params:
        if self.clear is None:
            self.clear = self.value
        if (self.op == "above" and self.clear > self.value) or (self.op == "below" and self.clear < self.value):
            raise ValueError(f"clear must be on the safe side of value (op {self.op})")
        return self

    def breaches(self, v: float) -> bool:
        return v > self.value if self.op == "above" else v < self.value

    def clears(self, v: float) -> bool:
        return v < self.clear if self.op == "above" else v > self.clear


@dataclass(frozen=True, slots=True)
class Held:
    """A breach waiting out its duration, since ``since``; ``settled`` once the stored readings
    have told when it began."""

    since: datetime
    settled: bool


State = Held | str | None  # a Held breach, OPEN, or nothing


def step(p: Params, state: State, value: float, t: datetime) -> tuple[State, str | None]:
    """The pure evaluation of one reading: the new state and what to do, one of ``open``,
    ``repeat``, ``resolve``, ``ask`` (the stored readings must say when the breach began: then
    ``decide``) or None."""
    if state == OPEN:
        return (None, "resolve") if p.clears(value) else (OPEN, "repeat")
    if not p.breaches(value):
        return None, None
    if not p.for_s:
        return OPEN, "open"
    if state is None:  # the first breaching reading this worker knows of: maybe not the run's first
        return Held(t, settled=False), "ask"
    if not state.settled:
        return state, "ask"
    if t - state.since >= timedelta(seconds=p.for_s):  # held as far as this worker saw
        return state, "ask"
    return state, None


def decide(p: Params, state: Held, t: datetime, run_start: datetime | None) -> tuple[State, str | None]:
    """After the stored readings said when the run of breaching readings ending at ``t`` began."""
    since = min(run_start or t, state.since) if not state.settled else (run_start or t)
    if t - since >= timedelta(seconds=p.for_s):
        return OPEN, "open"
    return Held(since, settled=True), None


# When the stored run of breaching readings that ends at to_time began, for many (sensor, metric,
# limit) at once: a batch's first sightings cost one round trip.
_RUN_STARTS = """
SELECT (
  WITH w AS (
    SELECT time, value FROM readings
    WHERE sensor_id = k.sensor AND metric = k.metric AND time > k.from_time AND time <= k.to_time
  ), ok AS (
    SELECT max(time) AS time FROM w
    WHERE NOT (CASE WHEN k.above THEN value > k.limit_value ELSE value < k.limit_value END)
  )
  SELECT min(w.time) FROM w, ok WHERE ok.time IS NULL OR w.time > ok.time
)
FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::float8[], %s::bool[])
  WITH ORDINALITY AS k(sensor, metric, from_time, to_time, limit_value, above, n)
ORDER BY k.n
"""


def run_starts(cur: psycopg.Cursor, breaches: list[tuple[Params, ReadingLike]]) -> list[datetime | None]:
    """When each stored run of breaching readings that ends with its reading began, looking back
    twice the duration: enough to tell whether it has lasted the duration."""
    columns: list[list] = [[], [], [], [], [], []]
    for p, r in breaches:
        values = (r.sensor_id, r.metric, r.time - 2 * timedelta(seconds=p.for_s), r.time, p.value, p.op == "above")
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return [row[0] for row in cur.execute(_RUN_STARTS, columns).fetchall()]


class Threshold(ReadingType):
    name = "threshold"
    Params = Params
    needs_metric = True

    @staticmethod
    def higher_is_worse(params: Params) -> bool:
        return params.op == "above"

    @staticmethod
    def quiet_range(params: Params) -> tuple[float, float]:
        return (float("-inf"), params.value) if params.op == "above" else (params.value, float("inf"))

    def judge(self, cur: psycopg.Cursor, rule: Rule, r: ReadingLike, state: RuleState, hits: list[Hit]) -> None:
        key = (rule.id, r.sensor_id)
        before = state.of.get(key)
        after, action = step(rule.params, before, r.value, r.time)
        if action == "ask":
            if after.settled:  # a duration reached: ask now, the next readings depend on it
                after, action = decide(rule.params, after, r.time, run_starts(cur, [(rule.params, r)])[0])
            else:  # a first sighting: asked with the batch's others at its end, with its latest reading
                state.asks.setdefault(self.name, {})[key] = (rule, r)
                action = None
        if after != before:
            if after is None:
                state.of.delete(key)
            else:
                state.of.set(key, after)
                state.engaged.set(r.sensor_id, True)
        if action is not None:
            hits.append(Hit(action, rule, "sensor", r.sensor_id, r.time, r.value))

    def settle(self, cur: psycopg.Cursor, state: RuleState, hits: list[Hit]) -> None:
        asked: dict[Key, tuple[Rule, ReadingLike]] = state.asks.pop(self.name, {})
        pending = [(key, rule, r) for key, (rule, r) in asked.items() if isinstance(state.of.get(key), Held)]
        if not pending:
            return
        starts = run_starts(cur, [(rule.params, r) for _, rule, r in pending])
        for (key, rule, r), start in zip(pending, starts, strict=True):
            after, action = decide(rule.params, state.of.get(key), r.time, start)
            state.of.set(key, after)
            if action is not None:
                hits.append(Hit(action, rule, "sensor", r.sensor_id, r.time, r.value))
