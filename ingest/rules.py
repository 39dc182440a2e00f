"""Rules evaluated on readings and camera events as ingest takes them in.

The engine keeps, in memory, what each rule needs between readings: the start of a threshold
breach still waiting out its duration, each sensor's recent values for rates of change, and which
alerts are open. Everything it keeps can be rebuilt from the database, so a restart (or a write
that failed and is retried) only forgets and rebuilds:

- open alerts are read from ``alerts`` with the rules;
- a breach seen for the first time since the start looks back in ``readings`` for when it began;
- a sensor's rate window is loaded from ``readings`` on its first reading.

Several workers share the broker's readings round-robin, so one worker sees only part of a
sensor's readings. Before a threshold opens after its duration and before a rate opens or
resolves, the engine checks the stored readings, which every worker writes, in the same
transaction as the batch that triggered it. Those checks run only at transitions, which are rare;
a reading that changes nothing costs a few dictionary lookups per rule that could apply to it.
"""

import logging
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import psycopg
from psycopg.rows import dict_row

from ingest.payloads import Reading
from ingest.reloading import Reloading
from ioc_core.events import Event
from ioc_core.rules import RULE_COLUMNS, CameraParams, RateParams, Rule, ThresholdParams

log = logging.getLogger(__name__)

Key = tuple[int, str]  # (rule id, source id)


@dataclass(slots=True)
class Hit:
    """What a rule concluded about one source: open its alert, update it, or resolve it."""

    action: Literal["open", "repeat", "resolve"]
    rule: Rule
    source_type: str
    source_id: str
    time: datetime  # of the reading or camera event
    value: float | None = None


@dataclass(slots=True)
class RuleGroup:
    """The threshold and rate rules of one metric and scope, with the bounds that let a reading
    that breaches none of them, from a sensor with nothing pending or open, skip them all."""

    thresholds: list[tuple[Rule, bool, float, timedelta]] = field(default_factory=list)  # rule, above, limit, held
    rates: list[Rule] = field(default_factory=list)
    lowest_above: float = math.inf  # a value above this breaches an "above" threshold
    highest_below: float = -math.inf  # a value below this breaches a "below" threshold

    def add(self, rule: Rule) -> None:
        p = rule.params
        if isinstance(p, RateParams):
            self.rates.append(rule)
            return
        self.thresholds.append((rule, p.op == "above", p.value, timedelta(seconds=p.for_s)))
        if p.op == "above":
            self.lowest_above = min(self.lowest_above, p.value)
        else:
            self.highest_below = max(self.highest_below, p.value)


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
_WINDOWS = """
SELECT r.sensor_id, r.metric, r.time, r.value
FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[]) AS k(sensor, metric, from_time, to_time)
JOIN readings r ON r.sensor_id = k.sensor AND r.metric = k.metric AND r.time >= k.from_time AND r.time < k.to_time
ORDER BY r.time DESC
"""
_WINDOW = (
    "SELECT time, value FROM readings WHERE sensor_id = %(sensor)s AND metric = %(metric)s"
    " AND time >= %(from)s AND time <= %(to)s ORDER BY time"
)


class RuleEngine(Reloading):
    name = "rules"

    def __init__(self, url: str, refresh_s: float = 5.0):
        super().__init__(url, refresh_s)
        self.rules: dict[int, Rule] = {}
        # metric -> (sensor kind or None, unit or None) -> threshold and rate rules
        self._by_metric: dict[str, dict[tuple[str | None, str | None], RuleGroup]] = {}
        self._by_event: dict[str, list[Rule]] = {}  # camera event name -> camera rules
        self._rate_window: dict[str, timedelta] = {}  # metric -> longest rate window on it
        self.open: set[Key] = set()
        self._engaged: set[str] = set()  # sources with a threshold pending or an alert open (or once had)
        self._since: dict[Key, datetime] = {}  # threshold breaches waiting out their duration
        self._last: dict[tuple[str, str], datetime] = {}  # (sensor, metric) -> newest reading judged
        self._history: dict[tuple[str, str], deque[tuple[datetime, float]]] = {}
        # First sightings in the current batch, settled from the database at its end in one query each:
        self._unsettled: dict[Key, tuple[Rule, Reading]] = {}  # breach begun when? (its latest reading)
        self._unloaded: list[tuple[str, str]] = []  # rate windows to fill with stored readings

    # --- rules and open alerts

    def load(self) -> None:
        with psycopg.connect(self._url, connect_timeout=5) as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(f"SELECT {RULE_COLUMNS} FROM rules WHERE enabled").fetchall()
            cur.execute(
                "SELECT rule_id, source_id FROM alerts WHERE state <> 'resolved' AND rule_id IS NOT NULL",
                prepare=False,
            )
            open_now = {(r["rule_id"], r["source_id"]) for r in cur.fetchall()}
        rules = {}
        for row in rows:
            try:
                rules[row["id"]] = Rule.from_row(row)
            except ValueError as exc:  # stored by hand around the API: skip it, say so
                log.error("rule ignored: unreadable parameters", extra={"rule_id": row["id"], "error": str(exc)})
        self._index(rules.values())
        self.rules, self.open = rules, open_now
        self._engaged = {source for _, source in open_now} | {source for _, source in self._since}

    def _index(self, rules: Iterable[Rule]) -> None:
        by_metric: dict[str, dict[tuple[str | None, str | None], RuleGroup]] = {}
        by_event: dict[str, list[Rule]] = {}
        windows: dict[str, timedelta] = {}
        for rule in rules:
            if isinstance(rule.params, CameraParams):
                by_event.setdefault(rule.params.event, []).append(rule)
            elif isinstance(rule.params, (ThresholdParams, RateParams)) and rule.metric:
                by_metric.setdefault(rule.metric, {}).setdefault((rule.sensor_kind, rule.unit_id), RuleGroup()).add(
                    rule
                )
                if isinstance(rule.params, RateParams):
                    window = timedelta(seconds=rule.params.window_s)
                    windows[rule.metric] = max(window, windows.get(rule.metric, window))
        self._by_metric, self._by_event, self._rate_window = by_metric, by_event, windows

    def forget(self) -> None:
        """After a write that failed: drop what may not match the database, rebuild from it."""
        self._since.clear()
        self._last.clear()
        self._history.clear()
        self._unsettled.clear()
        self._unloaded.clear()
        self.reload_soon()

    # --- readings

    def judge_readings(
        self, cur: psycopg.Cursor, readings: list[Reading], kinds: dict[str, str], units: dict[str, str]
    ) -> list[Hit]:
        """Run in the batch's transaction after its readings are inserted (the checks see them)."""
        by_metric = self._by_metric
        if not by_metric:
            return []
        relevant = [r for r in readings if r.metric in by_metric]
        if not relevant:
            return []
        relevant.sort(key=lambda r: r.time)
        hits: list[Hit] = []
        for r in relevant:
            series = (r.sensor_id, r.metric)
            last = self._last.get(series)
            if last is not None and r.time <= last:
                continue  # late or repeated: it does not change the state of a condition
            self._last[series] = r.time
            index, kind, unit = by_metric[r.metric], kinds.get(r.sensor_id), units.get(r.sensor_id)
            history = self._remember(r) if r.metric in self._rate_window else None
            engaged = r.sensor_id in self._engaged
            for scope in ((kind, unit), (kind, None), (None, unit), (None, None)):
                group = index.get(scope)
                if group is None:
                    continue
                if engaged or r.value > group.lowest_above or r.value < group.highest_below:
                    self._thresholds(cur, group, r, hits)
                for rule in group.rates:
                    self._rate(cur, rule, rule.params, r, history, hits)
        self._settle(cur, hits)
        self._load_windows(cur)
        return hits

    def _thresholds(self, cur: psycopg.Cursor, group: RuleGroup, r: Reading, hits: list[Hit]) -> None:
        """The common cases inline (nothing pending, or a breach still waiting out its duration);
        the rest in ``_threshold``. This loop is what a reading costs when its sensor is engaged."""
        sensor_id, value, t = r.sensor_id, r.value, r.time
        open_, since_, unsettled = self.open, self._since, self._unsettled
        for rule, above, limit, held in group.thresholds:
            key = (rule.id, sensor_id)
            if key not in open_ and key not in unsettled:
                if (value > limit) if above else (value < limit):
                    since = since_.get(key)
                    if since is not None and t - since < held:
                        continue
                elif key not in since_:
                    continue
            self._threshold(cur, rule, rule.params, r, hits)

    def _threshold(self, cur: psycopg.Cursor, rule: Rule, p: ThresholdParams, r: Reading, hits: list[Hit]) -> None:
        key = (rule.id, r.sensor_id)
        if key in self.open:
            if p.clears(r.value):
                self._close(key, Hit("resolve", rule, "sensor", r.sensor_id, r.time, r.value), hits)
            else:
                hits.append(Hit("repeat", rule, "sensor", r.sensor_id, r.time, r.value))
            return
        if not p.breaches(r.value):
            self._since.pop(key, None)
            return
        held = timedelta(seconds=p.for_s)
        since = self._since.get(key)
        if since is None and p.for_s:  # the first breaching reading this worker knows of: maybe not the run's first
            self._since[key] = r.time
            self._unsettled[key] = (rule, r)
            self._engaged.add(r.sensor_id)
            return
        if key in self._unsettled:
            self._unsettled[key] = (rule, r)
            return
        if since is None:
            since = r.time
        elif p.for_s and r.time - since >= held:  # held as far as this worker saw: ask every worker's readings
            since = self._run_starts(cur, [(p, r)])[0] or r.time
        self._engaged.add(r.sensor_id)
        self._open_if_held(key, rule, r, since, hits)

    def _settle(self, cur: psycopg.Cursor, hits: list[Hit]) -> None:
        """When did the breaches first seen in this batch begin? Those that have lasted their
        duration (begun before a restart, or seen by another worker) open now."""
        pending = [(key, rule, r) for key, (rule, r) in self._unsettled.items() if key in self._since]
        self._unsettled.clear()
        if not pending:
            return
        starts = self._run_starts(cur, [(rule.params, r) for _, rule, r in pending])
        for (key, rule, r), start in zip(pending, starts, strict=True):
            self._open_if_held(key, rule, r, min(start or r.time, self._since[key]), hits)

    def _open_if_held(self, key: Key, rule: Rule, r: Reading, since: datetime, hits: list[Hit]) -> None:
        """A breach that began at ``since`` opens once it has lasted the rule's duration."""
        if r.time - since >= timedelta(seconds=rule.params.for_s):
            self._since.pop(key, None)
            self.open.add(key)
            hits.append(Hit("open", rule, "sensor", r.sensor_id, r.time, r.value))
        else:
            self._since[key] = since

    def _load_windows(self, cur: psycopg.Cursor) -> None:
        """Rate windows of series first seen in this batch, completed with their stored readings."""
        if not self._unloaded:
            return
        series = [s for s in self._unloaded if self._history.get(s)]
        self._unloaded.clear()
        if not series:
            return
        firsts = [self._history[s][0][0] for s in series]
        starts = [first - self._rate_window[metric] for first, (_, metric) in zip(firsts, series, strict=True)]
        rows = cur.execute(_WINDOWS, ([s for s, _ in series], [m for _, m in series], starts, firsts)).fetchall()
        for sensor_id, metric, t, v in rows:  # newest first: each goes to the front
            self._history[(sensor_id, metric)].appendleft((t, v))

    @staticmethod
    def _run_starts(cur: psycopg.Cursor, breaches: list[tuple[ThresholdParams, Reading]]) -> list[datetime | None]:
        """When each stored run of breaching readings that ends with its reading began, looking back
        twice the duration: enough to tell whether it has lasted the duration."""
        columns: list[list] = [[], [], [], [], [], []]
        for p, r in breaches:
            values = (r.sensor_id, r.metric, r.time - 2 * timedelta(seconds=p.for_s), r.time, p.value, p.op == "above")
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        return [row[0] for row in cur.execute(_RUN_STARTS, columns).fetchall()]

    def _remember(self, r: Reading) -> deque[tuple[datetime, float]]:
        series, window = (r.sensor_id, r.metric), self._rate_window[r.metric]
        history = self._history.get(series)
        if history is None:  # first reading since the start: the stored window follows at the batch's end
            history = self._history[series] = deque()
            self._unloaded.append(series)
        if not history or history[-1][0] < r.time:
            history.append((r.time, r.value))
        while history and history[0][0] < r.time - window:
            history.popleft()
        return history

    @staticmethod
    def _stored_window(cur: psycopg.Cursor, r: Reading, window: timedelta) -> list[tuple[datetime, float]]:
        params = {"sensor": r.sensor_id, "metric": r.metric, "from": r.time - window, "to": r.time}
        return cur.execute(_WINDOW, params).fetchall()

    def _rate(
        self,
        cur: psycopg.Cursor,
        rule: Rule,
        p: RateParams,
        r: Reading,
        history: deque[tuple[datetime, float]],
        hits: list[Hit],
    ) -> None:
        key = (rule.id, r.sensor_id)
        change = self._change(p, r, history)
        is_open = key in self.open
        if is_open and change >= p.clear_delta:
            hits.append(Hit("repeat", rule, "sensor", r.sensor_id, r.time, r.value))
            return
        if not is_open and change <= p.delta:
            return
        change = self._change(p, r, self._stored_window(cur, r, timedelta(seconds=p.window_s)))
        if is_open and change < p.clear_delta:
            self._close(key, Hit("resolve", rule, "sensor", r.sensor_id, r.time, r.value), hits)
        elif not is_open and change > p.delta:
            self.open.add(key)
            hits.append(Hit("open", rule, "sensor", r.sensor_id, r.time, r.value))

    @staticmethod
    def _change(p: RateParams, r: Reading, history: Iterable[tuple[datetime, float]]) -> float:
        start = r.time - timedelta(seconds=p.window_s)
        values = [v for t, v in history if t >= start] or [r.value]
        return p.change(r.value, min(values), max(values))

    def _close(self, key: Key, hit: Hit, hits: list[Hit]) -> None:
        self.open.discard(key)
        self._since.pop(key, None)
        hits.append(hit)

    # --- camera events

    def judge_camera_events(self, events: list[Event]) -> list[Hit]:
        """``data.state`` says where a camera condition is (``started``, ``ongoing``, ``ended``;
        absent: started) and ``data.duration_s`` how long it has lasted."""
        hits: list[Hit] = []
        for e in events:
            rules = self._by_event.get(e.kind.removeprefix("camera."))
            if not rules:
                continue
            state = e.data.get("state", "started")
            duration = e.data.get("duration_s", 0)
            duration = float(duration) if isinstance(duration, (int, float)) else 0.0
            for rule in rules:
                if rule.unit_id is not None and rule.unit_id != e.unit_id:
                    continue
                key = (rule.id, e.source.id)
                if state == "ended":
                    if key in self.open:
                        self._close(key, Hit("resolve", rule, "camera", e.source.id, e.time, duration), hits)
                elif duration >= rule.params.min_duration_s:
                    action = "repeat" if key in self.open else "open"
                    self.open.add(key)
                    hits.append(Hit(action, rule, "camera", e.source.id, e.time, duration))
        return hits
