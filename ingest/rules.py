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
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import psycopg
from psycopg.rows import dict_row

from ingest.payloads import Reading
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


_RUN_START = """
WITH w AS (
  SELECT time, value FROM readings
  WHERE sensor_id = %(sensor)s AND metric = %(metric)s AND time > %(from)s AND time <= %(to)s
), ok AS (SELECT max(time) AS time FROM w WHERE NOT ({breach}))
SELECT min(w.time) FROM w, ok WHERE ok.time IS NULL OR w.time > ok.time
"""
_WINDOW = (
    "SELECT time, value FROM readings WHERE sensor_id = %(sensor)s AND metric = %(metric)s"
    " AND time >= %(from)s AND time <= %(to)s ORDER BY time"
)


class RuleEngine:
    def __init__(self, url: str, refresh_s: float = 5.0):
        self._url = url
        self._refresh_s = refresh_s
        self._loaded_at = float("-inf")
        self.rules: dict[int, Rule] = {}
        # metric -> (sensor kind or None, unit or None) -> threshold and rate rules
        self._by_metric: dict[str, dict[tuple[str | None, str | None], list[Rule]]] = {}
        self._by_event: dict[str, list[Rule]] = {}  # camera event name -> camera rules
        self._rate_window: dict[str, timedelta] = {}  # metric -> longest rate window on it
        self.open: set[Key] = set()
        self._since: dict[Key, datetime] = {}  # threshold breaches waiting out their duration
        self._last: dict[tuple[str, str], datetime] = {}  # (sensor, metric) -> newest reading judged
        self._history: dict[tuple[str, str], deque[tuple[datetime, float]]] = {}

    # --- rules and open alerts

    def refresh_if_due(self) -> None:
        if time.monotonic() - self._loaded_at < self._refresh_s:
            return
        try:
            self.load()
        except psycopg.Error as exc:
            log.warning("rules refresh failed", extra={"error": str(exc)[:300]})
            self._loaded_at = time.monotonic()

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
        self._loaded_at = time.monotonic()

    def _index(self, rules: Iterable[Rule]) -> None:
        by_metric: dict[str, dict[tuple[str | None, str | None], list[Rule]]] = {}
        by_event: dict[str, list[Rule]] = {}
        windows: dict[str, timedelta] = {}
        for rule in rules:
            if isinstance(rule.params, CameraParams):
                by_event.setdefault(rule.params.event, []).append(rule)
            elif isinstance(rule.params, (ThresholdParams, RateParams)) and rule.metric:
                by_metric.setdefault(rule.metric, {}).setdefault((rule.sensor_kind, rule.unit_id), []).append(rule)
                if isinstance(rule.params, RateParams):
                    window = timedelta(seconds=rule.params.window_s)
                    windows[rule.metric] = max(window, windows.get(rule.metric, window))
        self._by_metric, self._by_event, self._rate_window = by_metric, by_event, windows

    def forget(self) -> None:
        """After a write that failed: drop what may not match the database, rebuild from it."""
        self._since.clear()
        self._last.clear()
        self._history.clear()
        self._loaded_at = float("-inf")

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
            history = self._remember(cur, r) if r.metric in self._rate_window else None
            for scope in ((kind, unit), (kind, None), (None, unit), (None, None)):
                for rule in index.get(scope, ()):
                    if isinstance(rule.params, ThresholdParams):
                        self._threshold(cur, rule, rule.params, r, hits)
                    else:
                        self._rate(cur, rule, rule.params, r, history, hits)
        return hits

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
        if since is None:  # the first breaching reading this worker knows of: maybe not the run's first
            since = self._run_start(cur, p, r) if p.for_s else r.time
        elif p.for_s and r.time - since >= held:  # held as far as this worker saw: ask every worker's readings
            since = self._run_start(cur, p, r)
        if r.time - since >= held:
            self._since.pop(key, None)
            self.open.add(key)
            hits.append(Hit("open", rule, "sensor", r.sensor_id, r.time, r.value))
        else:
            self._since[key] = since

    @staticmethod
    def _run_start(cur: psycopg.Cursor, p: ThresholdParams, r: Reading) -> datetime:
        """When the stored run of breaching readings that ends with ``r`` began (within twice the
        duration: enough to tell whether it has lasted the duration)."""
        breach = "value > %(limit)s" if p.op == "above" else "value < %(limit)s"
        row = cur.execute(
            _RUN_START.format(breach=breach),
            {
                "sensor": r.sensor_id,
                "metric": r.metric,
                "from": r.time - 2 * timedelta(seconds=p.for_s),
                "to": r.time,
                "limit": p.value,
            },
        ).fetchone()
        return row[0] or r.time

    def _remember(self, cur: psycopg.Cursor, r: Reading) -> deque[tuple[datetime, float]]:
        series, window = (r.sensor_id, r.metric), self._rate_window[r.metric]
        history = self._history.get(series)
        if history is None:  # first reading since the start: the stored window
            history = self._history[series] = deque(self._stored_window(cur, r, window))
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
