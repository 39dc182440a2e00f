"""Rate of change: a value that moves more than ``delta`` within ``window_s`` opens; less than
``clear_delta`` resolves (a river rising 20 cm in 15 minutes).

Each series a rate watches keeps its recent readings, the longest window of its metric's rates.
A series first seen since the start is completed from the stored readings at the batch's end. A
worker sees only its share of a series, so before it opens or resolves, it checks the change over
the stored readings of every worker, in the batch's transaction.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

import psycopg
from pydantic import Field, model_validator

from ioc_core.rules.base import OPEN, Hit, ReadingLike, ReadingType, RuleParams, RuleState, Series

if TYPE_CHECKING:
    from ioc_core.rules import Rule


class Params(RuleParams):
    """A change of more than ``delta`` within ``window_s`` opens; less than ``clear_delta`` resolves."""

    type: Literal["rate"] = "rate"
    direction: Literal["up", "down"]
    delta: float = Field(gt=0, allow_inf_nan=False)
    window_s: float = Field(gt=0, le=86400)
    clear_delta: float | None = Field(None, ge=0, allow_inf_nan=False, description="Default: half of delta.")

    @model_validator(mode="after")
    def _default_clear(self) -> Params:
        if self.clear_delta is None:
            self.clear_delta = self.delta / 2
        if self.clear_delta > self.delta:
            raise ValueError("clear_delta must not exceed delta")
        return self

    def change(self, value: float, window_min: float, window_max: float) -> float:
        """How far ``value`` has moved in the rule's direction from the window's extreme."""
        return value - window_min if self.direction == "up" else window_max - value

    def change_over(self, r: ReadingLike, history: Iterable[tuple[datetime, float]]) -> float:
        start = r.time - timedelta(seconds=self.window_s)
        values = [v for t, v in history if t >= start] or [r.value]
        return self.change(r.value, min(values), max(values))


def step(p: Params, is_open: bool, change: float) -> str | None:
    """The pure evaluation on this worker's window: ``repeat``, ``check`` (the stored window must
    confirm: then ``decide``) or None."""
    if is_open:
        return "repeat" if change >= p.clear_delta else "check"
    return "check" if change > p.delta else None


def decide(p: Params, is_open: bool, stored_change: float) -> str | None:
    """On the change over every worker's stored readings: ``open``, ``resolve`` or None."""
    if is_open:
        return "resolve" if stored_change < p.clear_delta else None
    return "open" if stored_change > p.delta else None


_WINDOW = (
    "SELECT time, value FROM readings WHERE sensor_id = %(sensor)s AND metric = %(metric)s"
    " AND time >= %(from)s AND time <= %(to)s ORDER BY time"
)
_WINDOWS = """
SELECT r.sensor_id, r.metric, r.time, r.value
FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[]) AS k(sensor, metric, from_time, to_time)
JOIN readings r ON r.sensor_id = k.sensor AND r.metric = k.metric AND r.time >= k.from_time AND r.time < k.to_time
ORDER BY r.time DESC
"""


class Rate(ReadingType):
    name = "rate"
    Params = Params
    needs_metric = True

    def __init__(self) -> None:
        self._window: dict[str, timedelta] = {}  # metric -> the longest rate window on it

    @staticmethod
    def higher_is_worse(params: Params) -> bool:
        return params.direction == "up"

    def index(self, rules: Iterable[Rule]) -> None:
        windows: dict[str, timedelta] = {}
        for rule in rules:
            window = timedelta(seconds=rule.params.window_s)
            windows[rule.metric] = max(window, windows.get(rule.metric, window))
        self._window = windows

    def judge(self, cur: psycopg.Cursor, rule: Rule, r: ReadingLike, state: RuleState, hits: list[Hit]) -> None:
        p: Params = rule.params
        key = (rule.id, r.sensor_id)
        history = self._remember(r, state)
        is_open = state.of.get(key) == OPEN
        action = step(p, is_open, p.change_over(r, history))
        if action == "check":
            params = {"sensor": r.sensor_id, "metric": r.metric, "from": r.time - timedelta(seconds=p.window_s)}
            stored = cur.execute(_WINDOW, {**params, "to": r.time}).fetchall()
            action = decide(p, is_open, p.change_over(r, stored))
        if action == "open":
            state.of.set(key, OPEN)
            state.engaged.set(r.sensor_id, True)
        elif action == "resolve":
            state.of.delete(key)
        if action is not None:
            hits.append(Hit(action, rule, "sensor", r.sensor_id, r.time, r.value))

    def _remember(self, r: ReadingLike, state: RuleState) -> deque[tuple[datetime, float]]:
        """The series' recent readings with this one, copied into the batch's changes the first time
        the batch touches it. Several rates on one metric share it: a reading is added once."""
        series: Series = (r.sensor_id, r.metric)
        history = state.windows.changes.get(series)
        if history is None:
            stored = state.windows.committed.get(series)
            if stored is None:  # first reading since the start: completed from the database at the end
                state.asks.setdefault(self.name, []).append(series)
            history = deque(stored or ())
            state.windows.set(series, history)
        if not history or history[-1][0] < r.time:
            history.append((r.time, r.value))
        window = self._window.get(r.metric, timedelta(0))
        while history and history[0][0] < r.time - window:
            history.popleft()
        return history

    def settle(self, cur: psycopg.Cursor, state: RuleState, hits: list[Hit]) -> None:
        """Rate windows of series first seen in this batch, completed with their stored readings."""
        unloaded: list[Series] = state.asks.pop(self.name, [])
        series = [s for s in unloaded if state.windows.changes.get(s)]
        if not series:
            return
        firsts = [state.windows.changes[s][0][0] for s in series]
        starts = [first - self._window[metric] for first, (_, metric) in zip(firsts, series, strict=True)]
        rows = cur.execute(_WINDOWS, ([s for s, _ in series], [m for _, m in series], starts, firsts)).fetchall()
        for sensor_id, metric, t, v in rows:  # newest first: each goes to the front
            state.windows.changes[(sensor_id, metric)].appendleft((t, v))
