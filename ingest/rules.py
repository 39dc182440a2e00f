"""The rule engine: which rules a reading or a camera event concerns, judged by their types.

The engine knows no rule type: it indexes the enabled rules by metric and scope (and camera
rules by event), and hands each reading to the types of the rules that could concern it
(``ioc_core/rules/``). What they conclude about their sources stays in the batch's changes
(``RuleState``) until ``commit``: a write that fails is followed by ``discard``, and its retry is
judged from the same state, so a breach, a camera event or a resolution that arrives during a
database blip still opens or resolves exactly one alert.

Everything the engine keeps can be rebuilt from the database, so a restart only forgets:
open alerts are read with the rules, and each type completes what it lacks from the stored
readings (``ioc_core/rules/threshold.py``, ``rate.py``).
"""

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg
from psycopg.rows import dict_row

from ingest.reloading import Reloading
from ioc_core.events import Event
from ioc_core.rules import RULE_COLUMNS, TYPES, EventType, Hit, ReadingType, Rule, RuleState
from ioc_core.rules.base import OPEN, ReadingLike

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RuleGroup:
    """The reading rules of one metric and scope, with the range of values in which every rule
    that can be skipped concludes nothing for a source that has no state: a reading in it from a
    sensor that is not engaged skips them."""

    skippable: list[Rule] = field(default_factory=list)
    always: list[Rule] = field(default_factory=list)  # those that keep a window of every reading
    quiet_low: float = -math.inf
    quiet_high: float = math.inf

    def add(self, rule: Rule) -> None:
        quiet = rule.kind.quiet_range(rule.params)
        if quiet is None:
            self.always.append(rule)
            return
        self.skippable.append(rule)
        self.quiet_low, self.quiet_high = max(self.quiet_low, quiet[0]), min(self.quiet_high, quiet[1])


class RuleEngine(Reloading):
    name = "rules"

    def __init__(self, url: str, refresh_s: float = 5.0):
        super().__init__(url, refresh_s)
        self.rules: dict[int, Rule] = {}
        self.state = RuleState()
        # metric -> (sensor kind or None, unit or None) -> its reading rules
        self._by_metric: dict[str, dict[tuple[str | None, str | None], RuleGroup]] = {}
        self._by_event: dict[str, list[Rule]] = {}  # camera event name -> its rules

    # --- rules and open alerts

    def load(self) -> None:
        """Rules and open alerts from the database; between batches only (nothing staged)."""
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
        self.rules = rules
        self._align_open(open_now)

    def _align_open(self, open_now: set[tuple[int, str]]) -> None:
        """Open alerts as the database has them: a person may have resolved one, another worker
        opened one."""
        of = self.state.of.committed
        for key in [k for k, v in of.items() if v == OPEN and k not in open_now]:
            del of[key]
        for key in open_now:
            of[key] = OPEN
            self.state.engaged.committed[key[1]] = True

    def _index(self, rules: Iterable[Rule]) -> None:
        by_metric: dict[str, dict[tuple[str | None, str | None], RuleGroup]] = {}
        by_event: dict[str, list[Rule]] = {}
        by_type: dict[str, list[Rule]] = {name: [] for name in TYPES}
        for rule in rules:
            by_type[rule.type].append(rule)
            kind = rule.kind
            if isinstance(kind, EventType):
                by_event.setdefault(kind.event_of(rule.params), []).append(rule)
            elif isinstance(kind, ReadingType) and rule.metric:
                by_metric.setdefault(rule.metric, {}).setdefault((rule.sensor_kind, rule.unit_id), RuleGroup()).add(
                    rule
                )
        for name, rule_type in TYPES.items():
            if isinstance(rule_type, ReadingType):
                rule_type.index(by_type[name])
        self._by_metric, self._by_event = by_metric, by_event

    # --- judging, then committing or discarding what was concluded

    def judge(
        self,
        cur: psycopg.Cursor,
        readings: list[ReadingLike],
        events: list[Event],
        kinds: dict[str, str],
        units: dict[str, str],
    ) -> list[Hit]:
        """The hits of a batch, in the batch's transaction after its readings are inserted (the
        types' checks see them). Nothing it concludes is kept until ``commit``."""
        hits = self._judge_readings(cur, readings, kinds, units)
        hits += self._judge_events(events)
        return hits

    def align(self, cur: psycopg.Cursor, hits: list[Hit]) -> None:
        """Take the state of these hits' sources from their alerts: an open or a resolution that
        changed nothing was a repeat, came after a person's resolution, or was late (another
        worker judged a newer reading of the source), and the alert is what holds."""
        rows = cur.execute(
            "SELECT rule_id, source_id FROM alerts WHERE state <> 'resolved'"
            " AND (rule_id, source_type, source_id) IN (SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[]))",
            ([h.rule.id for h in hits], [h.source_type for h in hits], [h.source_id for h in hits]),
        ).fetchall()
        open_now = {(rule_id, source_id) for rule_id, source_id in rows}
        for hit in hits:
            key = (hit.rule.id, hit.source_id)
            if key in open_now:
                self.state.of.set(key, OPEN)
                self.state.engaged.set(hit.source_id, True)
            elif self.state.of.get(key) == OPEN:
                self.state.of.delete(key)

    def commit(self) -> None:
        """The batch judged last is stored: what the rules concluded becomes their state."""
        self.state.commit()

    def discard(self) -> None:
        """The batch judged last was not stored: forget what the rules concluded from it."""
        self.state.discard()

    def _judge_readings(
        self, cur: psycopg.Cursor, readings: list[ReadingLike], kinds: dict[str, str], units: dict[str, str]
    ) -> list[Hit]:
        by_metric = self._by_metric
        if not by_metric:
            return []
        relevant = sorted((r for r in readings if r.metric in by_metric), key=lambda r: r.time)
        hits: list[Hit] = []
        state, newest, engaged = self.state, self.state.newest, self.state.engaged
        for r in relevant:
            series = (r.sensor_id, r.metric)
            last = newest.get(series)
            if last is not None and r.time <= last:
                continue  # late or repeated: it does not change the state of a condition
            newest.set(series, r.time)
            index, kind, unit = by_metric[r.metric], kinds.get(r.sensor_id), units.get(r.sensor_id)
            is_engaged = r.sensor_id in engaged
            for scope in ((kind, unit), (kind, None), (None, unit), (None, None)):
                group = index.get(scope)
                if group is None:
                    continue
                if is_engaged or not group.quiet_low <= r.value <= group.quiet_high:
                    for rule in group.skippable:
                        rule.kind.judge(cur, rule, r, state, hits)
                for rule in group.always:
                    rule.kind.judge(cur, rule, r, state, hits)
        for rule_type in TYPES.values():
            if isinstance(rule_type, ReadingType):
                rule_type.settle(cur, state, hits)
        return hits

    def _judge_events(self, events: list[Event]) -> list[Hit]:
        hits: list[Hit] = []
        for e in events:
            for rule in self._by_event.get(e.kind.removeprefix("camera."), ()):
                rule.kind.judge_event(rule, e, self.state, hits)
        return hits
