"""Rules shared by ingest (which evaluates them) and the API (which manages them).

Each rule type is one module of this package (``threshold``, ``rate``, ``no_data``, ``camera``),
found here at import: its parameters, which direction is worse, its pure evaluation and the checks
it makes (``ioc_core/rules/base.py``). The API's validation and docs come from ``TYPES``, so a
new type is a new module and nothing else. A rule's ``params`` are validated by its type before
they are stored, so an evaluator never meets a rule it cannot read.
"""

import importlib
import pkgutil
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, TypeAdapter

from ioc_core.events import Severity
from ioc_core.rules.base import ClockType, EventType, Hit, ReadingType, RuleState, RuleType

__all__ = ["RULE_COLUMNS", "TYPES", "ClockType", "EventType", "Hit", "ReadingType", "Rule", "RuleState", "parse_params"]


def _discover() -> dict[str, RuleType]:
    types: dict[str, RuleType] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, RuleType)
                and value.__module__ == module.__name__
                and "name" in vars(value)
            ):
                types[value.name] = value()
    return types


TYPES: dict[str, RuleType] = _discover()
RuleTypeName = Literal[tuple(TYPES)]  # type: ignore[valid-type]
Params = Annotated[Union[tuple(t.Params for t in TYPES.values())], Field(discriminator="type")]  # type: ignore[valid-type] # noqa: UP007
_PARAMS = TypeAdapter(Params)


def parse_params(rule_type: str, params: dict[str, Any]) -> BaseModel:
    return _PARAMS.validate_python({**params, "type": rule_type})


def describe_params() -> str:
    """Each type's parameters as the API documents them."""
    parts = []
    for name, rule_type in TYPES.items():
        fields = ", ".join(f for f in rule_type.Params.model_fields if f != "type")
        doc = " ".join((rule_type.Params.__doc__ or "").split())
        parts.append(f"{name}: {{{fields}}}: {doc}")
    return "; ".join(parts)


class Rule(BaseModel):
    id: int
    name: str
    type: RuleTypeName
    sensor_kind: str | None = None
    metric: str | None = None
    unit_id: str | None = None
    severity: Severity
    params: Params
    public: bool = False
    reference: str | None = None
    enabled: bool = True

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Rule":
        """A stored rule; parameters its type does not know (stored before they were refused) are
        left out rather than making the rule unreadable."""
        known = TYPES[row["type"]].Params.model_fields if row["type"] in TYPES else {}
        params = {k: v for k, v in row["params"].items() if k in known}
        return cls(**{**row, "params": {**params, "type": row["type"]}})

    @property
    def kind(self) -> RuleType:
        return TYPES[self.type]


RULE_COLUMNS = "id, name, type, sensor_kind, metric, unit_id, severity, params, public, reference, enabled"
