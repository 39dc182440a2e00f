"""What every rule type shares: the hits a rule concludes, the state it keeps between readings, and
the three ways a type judges (readings, camera events, the clock).

A rule type is one module of this package: its parameters, which direction is worse, a pure
evaluation and, where it needs one, the check it makes against stored data or on a clock. The
package finds its modules by themselves (``ioc_core.rules.TYPES``); adding one touches no other
file.

Judging never changes committed state: a judge writes what it concludes into ``RuleState``'s
changes, which become the state only when the batch they were judged with is committed
(``RuleState.commit``), and are dropped if it is not (``RuleState.discard``). A write retried after
a database blip therefore judges the same readings the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeVar

import psycopg
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from ioc_core.rules import Rule
    from ioc_core.rules.rate import Window

Key = tuple[int, str]  # (rule id, source id)
Series = tuple[str, str]  # (sensor id, metric)
K = TypeVar("K")
V = TypeVar("V")


@dataclass(slots=True)
class Hit:
    """What a rule concluded about one source: open its alert, update it, or resolve it."""

    action: Literal["open", "repeat", "resolve"]
    rule: Rule
    source_type: str
    source_id: str
    time: datetime  # of the reading or camera event, or of the clock
    value: float | None = None
    unit_id: str | None = None  # where a clock check found it; otherwise the registry says
    location: tuple[float, float] | None = None


class ReadingLike(Protocol):
    time: datetime
    sensor_id: str
    metric: str
    value: float


class EventLike(Protocol):
    """A camera event as ingest stores it: ``kind`` is ``camera.<event>``."""

    time: datetime
    kind: str
    unit_id: str | None
    data: dict[str, Any]

    @property
    def source(self) -> Any: ...


_GONE = object()  # no change to this key in the batch
_DELETED = object()  # the batch removed this key


class Staged(Generic[K, V]):
    """A map whose changes stay aside until committed: reads see the changes first, then the
    committed values."""

    __slots__ = ("changes", "committed")

    def __init__(self) -> None:
        self.committed: dict[K, V] = {}
        self.changes: dict[K, Any] = {}

    def get(self, key: K, default: Any = None) -> Any:
        value = self.changes.get(key, _GONE)
        if value is _GONE:
            return self.committed.get(key, default)
        return default if value is _DELETED else value

    def __contains__(self, key: K) -> bool:
        value = self.changes.get(key, _GONE)
        return key in self.committed if value is _GONE else value is not _DELETED

    def set(self, key: K, value: V) -> None:
        self.changes[key] = value

    def delete(self, key: K) -> None:
        if key in self:
            self.changes[key] = _DELETED

    def commit(self) -> None:
        for key, value in self.changes.items():
            if value is _DELETED:
                self.committed.pop(key, None)
            else:
                self.committed[key] = value
        self.changes.clear()

    def discard(self) -> None:
        self.changes.clear()

    def __iter__(self) -> Iterator[K]:
        return self.keys()

    def keys(self) -> Iterator[K]:
        for key in self.committed:
            if key not in self.changes:
                yield key
        for key, value in self.changes.items():
            if value is not _DELETED:
                yield key


class RuleState:
    """Everything the rules keep between readings, all of it rebuildable from the database (a
    restart only forgets): per rule and source, the type's own state (open, or a breach waiting
    out its duration); per series, the newest reading judged and the recent values a rate needs;
    and which sources are engaged (have had any state), so a quiet reading can skip their rules."""

    def __init__(self) -> None:
        self.of: Staged[Key, Any] = Staged()
        self.newest: Staged[Series, datetime] = Staged()
        self.windows: Staged[Series, Window] = Staged()
        self.engaged: Staged[str, bool] = Staged()
        self.asks: dict[str, Any] = {}  # per type, what it will ask the stored data at the batch's end
        self._maps = (self.of, self.newest, self.windows, self.engaged)

    def commit(self) -> None:
        for m in self._maps:
            m.commit()
        self.asks.clear()

    def discard(self) -> None:
        for m in self._maps:
            m.discard()
        self.asks.clear()

    def pending(self) -> bool:
        return any(m.changes for m in self._maps)


OPEN = "open"  # the state of a rule and source whose alert is open


class RuleParams(BaseModel):
    """What every type's ``Params`` is: a parameter it does not know is refused, so a misspelt
    ``for_s`` is a 422 naming it, not a rule that quietly opens on the first reading."""

    model_config = ConfigDict(extra="forbid")


class RuleType:
    """The parts every rule type has. ``Params`` is its parameter model (its docstring is the
    type's description in the API's docs); ``needs_metric`` says whether a rule of it must name a
    metric."""

    name: ClassVar[str]
    Params: ClassVar[type[RuleParams]]
    needs_metric: ClassVar[bool] = False

    @staticmethod
    def higher_is_worse(params: Any) -> bool:
        """Which way an alert's peak moves as its condition gets worse."""
        return True


class ReadingType(RuleType):
    """A type judged on each reading of its metric. The engine calls ``judge`` for every reading
    from a sensor the rule could concern, in time order, then ``settle`` once at the end of the
    batch with the same cursor (the batch's transaction: its readings are stored)."""

    def index(self, rules: Iterable[Rule]) -> None:
        """Told this type's enabled rules whenever they are reloaded."""

    @staticmethod
    def quiet_range(params: Any) -> tuple[float, float] | None:
        """Values for which a rule with no state for its source concludes nothing (so readings in
        it can skip the rule); None when every reading matters (it keeps a window of them)."""
        return None

    def judge(self, cur: psycopg.Cursor, rule: Rule, reading: ReadingLike, state: RuleState, hits: list[Hit]) -> None:
        raise NotImplementedError

    def settle(self, cur: psycopg.Cursor, state: RuleState, hits: list[Hit]) -> None:
        """What was left to ask the stored readings during the batch, asked in one go."""


class EventType(RuleType):
    """A type judged on camera events (``camera.<event>``)."""

    @staticmethod
    def event_of(params: Any) -> str:
        raise NotImplementedError

    def judge_event(self, rule: Rule, event: EventLike, state: RuleState, hits: list[Hit]) -> None:
        raise NotImplementedError


class ClockType(RuleType):
    """A type judged on a clock, by the alert scheduler, against the stored data."""

    def check(self, cur: psycopg.Cursor, rules: Iterable[Rule], now: datetime) -> list[Hit]:
        raise NotImplementedError
