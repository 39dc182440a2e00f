"""Rate of change: a value that moves more than ``delta`` within ``window_s`` opens; less than
``clear_delta`` resolves (a river rising 20 cm in 15 minutes).

Each series a rate watches keeps, over the longest window of its metric's rates, only the readings
that can still be the window's lowest or highest (``Window``). A series first seen since the start
is completed from the stored readings at the batch's end. A worker sees only its share of a series,
so before it opens or resolves, it checks the change over the stored readings of every worker, in
the batch's transaction.
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
        """The change within the window ending at ``r`` over readings as stored."""
        start = r.time - timedelta(seconds=self.window_s)
        values = [v for t, v in history if t >= start] or [r.value]
        return self.change(r.value, min(values), max(values))

    def change_within(self, r: ReadingLike, window: Window) -> float:
        """The same over a series' ``Window``."""
        low, high = window.extremes_since(r.time - timedelta(seconds=self.window_s), r.value)
        return self.change(r.value, low, high)


class Window:
    """A series' recent readings as a rate needs them: two monotonic queues, ``lows`` (values rising
    from the oldest: each the lowest from its time on) and ``highs`` (falling: each the highest).
    The lowest and highest since any time are then the first of each at or after it. Each reading
    goes in and out once, and a level that wavers keeps a handful where a list would keep every
    reading of the window (a gauge every 4 s for 15 minutes: 225, about 30 KiB)."""

    __slots__ = ("highs", "lows")

    def __init__(self, lows: Iterable[tuple[datetime, float]] = (), highs: Iterable[tuple[datetime, float]] = ()):
        self.lows: deque[tuple[datetime, float]] = deque(lows)
        self.highs: deque[tuple[datetime, float]] = deque(highs)

    def copy(self) -> Window:
        return Window(self.lows, self.highs)

    def __len__(self) -> int:
        return len(self.lows)

    def newest(self) -> datetime | None:
        return self.lows[-1][0] if self.lows else None  # the newest reading ends both queues

    def oldest(self) -> datetime | None:
        return min(self.lows[0][0], self.highs[0][0]) if self.lows else None

    def add(self, t: datetime, value: float) -> None:
        """A reading newer than any held."""
        while self.lows and self.lows[-1][1] >= value:
            self.lows.pop()
        self.lows.append((t, value))
        while self.highs and self.highs[-1][1] <= value:
            self.highs.pop()
        self.highs.append((t, value))

    def add_older(self, t: datetime, value: float) -> None:
        """A reading older than any held (stored ones, newest first)."""
        if not self.lows or value < self.lows[0][1]:
            self.lows.appendleft((t, value))
        if not self.highs or value > self.highs[0][1]:
            self.highs.appendleft((t, value))

    def drop_before(self, start: datetime) -> None:
        for queue in (self.lows, self.highs):
            while queue and queue[0][0] < start:
                queue.popleft()

    def extremes_since(self, start: datetime, otherwise: float) -> tuple[float, float]:
        """The lowest and highest value from ``start`` on; ``otherwise`` for both if none is held."""
        low = next((v for t, v in self.lows if t >= start), otherwise)
        high = next((v for t, v in self.highs if t >= start), otherwise)
        return low, high


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
        window = self._remember(r, state)
        is_open = state.of.get(key) == OPEN
        action = step(p, is_open, p.change_within(r, window))
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

    def _remember(self, r: ReadingLike, state: RuleState) -> Window:
        """The series' window with this reading, copied into the batch's changes the first time the
        batch touches it. Several rates on one metric share it: a reading is added once."""
        series: Series = (r.sensor_id, r.metric)
        window = state.windows.changes.get(series)
        if window is None:
            stored = state.windows.committed.get(series)
            if stored is None:  # first reading since the start: completed from the database at the end
                state.asks.setdefault(self.name, []).append(series)
            window = stored.copy() if stored is not None else Window()
            state.windows.set(series, window)
        newest = window.newest()
        if newest is None or newest < r.time:
            window.add(r.time, r.value)
        window.drop_before(r.time - self._window.get(r.metric, timedelta(0)))
        return window

    def settle(self, cur: psycopg.Cursor, state: RuleState, hits: list[Hit]) -> None:
        """Rate windows of series first seen in this batch, completed with their stored readings."""
        unloaded: list[Series] = state.asks.pop(self.name, [])
        series = [s for s in unloaded if state.windows.changes.get(s)]
        if not series:
            return
        firsts = [state.windows.changes[s].oldest() for s in series]
        starts = [first - self._window[metric] for first, (_, metric) in zip(firsts, series, strict=True)]
        rows = cur.execute(_WINDOWS, ([s for s, _ in series], [m for _, m in series], starts, firsts)).fetchall()
        for sensor_id, metric, t, v in rows:  # newest first
            state.windows.changes[(sensor_id, metric)].add_older(t, v)
