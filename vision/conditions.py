"""A condition seen by a camera (a stopped vehicle, a crowd), debounced into started/ongoing/ended.

Detections flicker: a crowd missed in one frame has not dispersed. A condition starts once it has
held for ``start_after_s``, ends once it has been absent for ``clear_after_s``, and while it lasts
says so every ``update_every_s`` with its duration, which is what ingest's camera rules judge
against their minimum duration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(slots=True)
class Transition:
    event: str
    state: Literal["started", "ongoing", "ended"]
    duration_s: float
    data: dict[str, Any]


class Condition:
    def __init__(self, event: str, *, start_after_s: float, clear_after_s: float, update_every_s: float) -> None:
        self.event = event
        self._start_after, self._clear_after, self._update_every = start_after_s, clear_after_s, update_every_s
        self._first_seen: float | None = None  # since when it has held without a gap
        self._last_seen = 0.0
        self._active_since: float | None = None
        self._last_said = 0.0
        self._data: dict[str, Any] = {}

    def update(self, t: float, finding: dict[str, Any] | None) -> Transition | None:
        """``finding`` is what was seen now (None: not seen); a transition when there is news."""
        if finding is not None:
            self._data = finding
            if self._first_seen is None or t - self._last_seen > self._clear_after:
                self._first_seen = t
            self._last_seen = t
        if self._active_since is None:
            if finding is not None and t - self._first_seen >= self._start_after:
                self._active_since, self._last_said = self._first_seen, t
                return Transition(self.event, "started", round(t - self._first_seen, 1), self._data)
            return None
        duration = round(self._last_seen - self._active_since, 1)
        if finding is None and t - self._last_seen >= self._clear_after:
            self._active_since = self._first_seen = None
            return Transition(self.event, "ended", duration, self._data)
        if t - self._last_said >= self._update_every:
            self._last_said = t
            return Transition(self.event, "ongoing", round(t - self._active_since, 1), self._data)
        return None

    def end(self, reason: str = "camera stopped") -> Transition | None:
        """The camera stops being watched (stopped, or its stream lost): a condition still open ends
        here, not never."""
        if self._active_since is None:
            return None
        duration = round(self._last_seen - self._active_since, 1)
        self._active_since = self._first_seen = None
        return Transition(self.event, "ended", duration, {**self._data, "reason": reason})
