"""Camera: a camera event ``camera.<event>`` that has lasted ``min_duration_s`` opens; its end
resolves. ``data.state`` says where the camera's condition is (``started``, ``ongoing``,
``ended``; absent: started) and ``data.duration_s`` how long it has lasted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ioc_core.rules.base import OPEN, EventLike, EventType, Hit, RuleParams, RuleState

if TYPE_CHECKING:
    from ioc_core.rules import Rule


class Params(RuleParams):
    """A camera event ``camera.<event>`` that has lasted ``min_duration_s``; its end resolves."""

    type: Literal["camera"] = "camera"
    event: str = Field(pattern=r"^[a-z][a-z0-9_]*$", examples=["stopped_vehicle"])
    min_duration_s: float = Field(0, ge=0, allow_inf_nan=False)


def duration_of(data: dict[str, Any]) -> float:
    duration = data.get("duration_s", 0)
    return float(duration) if isinstance(duration, (int, float)) and not isinstance(duration, bool) else 0.0


def step(p: Params, is_open: bool, state: str, duration: float) -> str | None:
    """The pure evaluation of one event: ``open``, ``repeat``, ``resolve`` or None."""
    if state == "ended":
        return "resolve" if is_open else None
    if duration >= p.min_duration_s:
        return "repeat" if is_open else "open"
    return None


class Camera(EventType):
    name = "camera"
    Params = Params

    @staticmethod
    def event_of(params: Params) -> str:
        return params.event

    def judge_event(self, rule: Rule, event: EventLike, state: RuleState, hits: list[Hit]) -> None:
        if rule.unit_id is not None and rule.unit_id != event.unit_id:
            return
        key = (rule.id, event.source.id)
        duration = duration_of(event.data)
        action = step(rule.params, state.of.get(key) == OPEN, event.data.get("state", "started"), duration)
        if action == "open":
            state.of.set(key, OPEN)
        elif action == "resolve":
            state.of.delete(key)
        if action is not None:
            hits.append(Hit(action, rule, "camera", event.source.id, event.time, duration))
