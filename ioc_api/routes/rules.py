"""Rules: what turns readings and camera events into alerts. Engineers manage them; ingest
reloads them within ``IOC_RULES_REFRESH_S``. Every change is audited. A ward operator sees the
rules of its units and those of every unit (the database holds the rows to its scope)."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ioc_api import audit
from ioc_api.deps import Db, Engineer, Staff
from ioc_api.models import METRIC_PATTERN, NotNull
from ioc_api.problems import PROBLEM_RESPONSES, Problem
from ioc_core.events import Severity
from ioc_core.rules import RULE_COLUMNS, TYPES, describe_params, parse_params
from ioc_core.rules import RuleTypeName as RuleType

router = APIRouter(tags=["rules"], responses=PROBLEM_RESPONSES)

_PARAMS_DOC = describe_params()  # from each rule type's module: a new type documents itself


class RuleFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, examples=["PM2.5 above 50 µg/m³ for 10 minutes"])
    sensor_kind: str | None = Field(None, max_length=64, examples=["air_quality"])
    metric: str | None = Field(None, pattern=METRIC_PATTERN, examples=["pm25"])
    unit_id: str | None = Field(None, description="Only this unit; omit for every unit.")
    severity: Severity = "minor"
    public: bool = Field(False, description="Published in the CAP feed while active.")
    reference: str | None = Field(None, max_length=500, description="Where the limit comes from.")
    enabled: bool = True


class RuleIn(RuleFields):
    type: RuleType
    params: dict[str, Any] = Field(
        description=_PARAMS_DOC, examples=[{"op": "above", "value": 50, "clear": 40, "for_s": 600}]
    )

    @model_validator(mode="after")
    def _valid(self) -> "RuleIn":
        check_rule(self.type, self.metric, self.params)
        return self


class RulePatch(BaseModel):
    """The fields to change. null means every sensor kind, any metric (rules that need one refuse
    it), every unit, or no reference."""

    model_config = ConfigDict(extra="forbid")
    name: NotNull[str] = Field(None, min_length=1, max_length=200)
    sensor_kind: str | None = Field(None, max_length=64)
    metric: str | None = Field(None, pattern=METRIC_PATTERN)
    unit_id: str | None = None
    severity: NotNull[Severity] = None
    params: NotNull[dict[str, Any]] = Field(None, description=_PARAMS_DOC)
    public: NotNull[bool] = None
    reference: str | None = Field(None, max_length=500)
    enabled: NotNull[bool] = None


class RuleOut(RuleFields):
    model_config = ConfigDict(extra="ignore")
    id: int
    type: RuleType
    params: dict[str, Any]


def check_rule(rule_type: str, metric: str | None, params: dict[str, Any]) -> None:
    if rule_type in TYPES and TYPES[rule_type].needs_metric and not metric:
        raise ValueError(f"a {rule_type} rule needs a metric")
    parse_params(rule_type, params)  # raises a ValidationError that names the wrong field


async def _rule(db: Db, rule_id: int) -> RuleOut:
    async with db.cursor(row_factory=class_row(RuleOut)) as cur:
        await cur.execute(f"SELECT {RULE_COLUMNS} FROM rules WHERE id = %s", (rule_id,))
        rule = await cur.fetchone()
    if rule is None:
        raise Problem(404, f"no rule {rule_id}")
    return rule


async def _check_unit_exists(db: Db, unit_id: str | None) -> None:
    if (
        unit_id is not None
        and await (await db.execute("SELECT 1 FROM units WHERE id = %s", (unit_id,))).fetchone() is None
    ):
        raise Problem(422, f"no unit {unit_id!r}")


@router.get("/rules", summary="Rules, filtered by type, sensor kind and metric")
async def list_rules(
    db: Db,
    principal: Staff,
    type: Annotated[RuleType | None, Query()] = None,
    sensor_kind: str | None = None,
    metric: str | None = None,
) -> list[RuleOut]:
    async with db.cursor(row_factory=class_row(RuleOut)) as cur:
        await cur.execute(
            f"SELECT {RULE_COLUMNS} FROM rules WHERE (%(type)s::text IS NULL OR type = %(type)s)"
            " AND (%(kind)s::text IS NULL OR sensor_kind = %(kind)s)"
            " AND (%(metric)s::text IS NULL OR metric = %(metric)s) ORDER BY id",
            {"type": type, "kind": sensor_kind, "metric": metric},
        )
        return await cur.fetchall()


@router.get("/rules/{rule_id}", summary="One rule")
async def get_rule(rule_id: int, db: Db, principal: Staff) -> RuleOut:
    return await _rule(db, rule_id)


@router.post("/rules", status_code=201, summary="Create a rule (engineers)")
async def create_rule(body: RuleIn, db: Db, principal: Engineer) -> RuleOut:
    await _check_unit_exists(db, body.unit_id)
    fields = body.model_dump()
    fields["params"] = Jsonb(body.params)
    cur = await db.execute(
        "INSERT INTO rules (name, type, sensor_kind, metric, unit_id, severity, params, public, reference, enabled)"
        " VALUES (%(name)s, %(type)s, %(sensor_kind)s, %(metric)s, %(unit_id)s, %(severity)s, %(params)s,"
        " %(public)s, %(reference)s, %(enabled)s) RETURNING id",
        fields,
    )
    rule_id = (await cur.fetchone())[0]
    await audit.record(db, principal.username, "rule.create", str(rule_id), body.model_dump(mode="json"))
    return await _rule(db, rule_id)


@router.patch("/rules/{rule_id}", summary="Change a rule (engineers)")
async def update_rule(rule_id: int, body: RulePatch, db: Db, principal: Engineer) -> RuleOut:
    current = await _rule(db, rule_id)
    changes = body.model_dump(exclude_unset=True)
    merged = {**current.model_dump(), **changes}
    try:
        check_rule(merged["type"], merged["metric"], merged["params"])
    except ValueError as exc:
        raise Problem(422, f"the rule would not be valid: {exc}") from exc
    if not changes:
        return current
    await _check_unit_exists(db, changes.get("unit_id"))
    if "params" in changes:
        changes["params"] = Jsonb(changes["params"])
    assignments = ", ".join(f"{k} = %({k})s" for k in changes)
    await db.execute(
        f"UPDATE rules SET {assignments}, updated_at = now() WHERE id = %(id)s", {**changes, "id": rule_id}
    )
    await audit.record(
        db, principal.username, "rule.update", str(rule_id), body.model_dump(mode="json", exclude_unset=True)
    )
    return await _rule(db, rule_id)


@router.delete("/rules/{rule_id}", status_code=204, summary="Delete a rule (its alerts stay as they are)")
async def delete_rule(rule_id: int, db: Db, principal: Engineer) -> Response:
    await _rule(db, rule_id)
    await db.execute("DELETE FROM rules WHERE id = %s", (rule_id,))
    await audit.record(db, principal.username, "rule.delete", str(rule_id), {})
    return Response(status_code=204)
