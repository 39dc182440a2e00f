"""Rule definitions shared by ingest (which evaluates them) and the API (which manages them).

A rule's ``params`` depend on its type; they are validated here before they are stored, so an
evaluator never meets a rule it cannot read.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter, model_validator

from ioc_core.events import Severity

RuleType = Literal["threshold", "rate", "no_data", "camera"]


class ThresholdParams(BaseModel):
    """Above (or below) ``value`` for ``for_s`` seconds of reading time opens; crossing back past
    ``clear`` resolves, so a value hovering at the limit does not flap."""

    type: Literal["threshold"] = "threshold"
    op: Literal["above", "below"]
    value: float
    clear: float | None = Field(None, description="Resolves when back past this value; default: value.")
    for_s: float = Field(0, ge=0, le=7 * 86400)

    @model_validator(mode="after")
    def _clear_on_the_safe_side(self) -> "ThresholdParams":
        if self.clear is None:
            self.clear = self.value
        if (self.op == "above" and self.clear > self.value) or (self.op == "below" and self.clear < self.value):
            raise ValueError(f"clear must be on the safe side of value (op {self.op})")
        return self

    def breaches(self, v: float) -> bool:
        return v > self.value if self.op == "above" else v < self.value

    def clears(self, v: float) -> bool:
        return v < self.clear if self.op == "above" else v > self.clear


class RateParams(BaseModel):
    """A change of more than ``delta`` within ``window_s`` opens; less than ``clear_delta`` resolves."""

    type: Literal["rate"] = "rate"
    direction: Literal["up", "down"]
    delta: float = Field(gt=0)
    window_s: float = Field(gt=0, le=86400)
    clear_delta: float | None = Field(None, ge=0, description="Default: half of delta.")

    @model_validator(mode="after")
    def _default_clear(self) -> "RateParams":
        if self.clear_delta is None:
            self.clear_delta = self.delta / 2
        if self.clear_delta > self.delta:
            raise ValueError("clear_delta must not exceed delta")
        return self

    def change(self, value: float, window_min: float, window_max: float) -> float:
        """How far ``value`` has moved in the rule's direction from the window's extreme."""
        return value - window_min if self.direction == "up" else window_max - value


class NoDataParams(BaseModel):
    """Silent for longer than ``factor`` times the sensor's ``interval_s`` (or the default)."""

    type: Literal["no_data"] = "no_data"
    factor: float = Field(3, gt=1)
    default_interval_s: float = Field(60, gt=0)


class CameraParams(BaseModel):
    """A camera event ``camera.<event>`` that has lasted ``min_duration_s``; its end resolves."""

    type: Literal["camera"] = "camera"
    event: str = Field(pattern=r"^[a-z][a-z0-9_]*$", examples=["stopped_vehicle"])
    min_duration_s: float = Field(0, ge=0)


Params = Annotated[ThresholdParams | RateParams | NoDataParams | CameraParams, Field(discriminator="type")]
_PARAMS = TypeAdapter(Params)


def parse_params(rule_type: str, params: dict[str, Any]) -> ThresholdParams | RateParams | NoDataParams | CameraParams:
    return _PARAMS.validate_python({**params, "type": rule_type})


class Rule(BaseModel):
    id: int
    name: str
    type: RuleType
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
        return cls(**{**row, "params": {**row["params"], "type": row["type"]}})


RULE_COLUMNS = "id, name, type, sensor_kind, metric, unit_id, severity, params, public, reference, enabled"
