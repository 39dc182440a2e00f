"""Standard operating procedures: per incident type, a versioned checklist, and what belongs to it.

An SOP says which alerts, camera events and citizens' reports its incidents gather (``match``: the
rule types, sensor kinds, camera events and report categories it covers) and the steps to work
them: the action, the role and tier (ward or city) that owns it, its deadline in minutes from the
incident's start, and whether the city must approve it. A change is a new version; an incident
keeps the version it opened with. The shipped SOPs are ``ioc_core/sops/*.yaml``; the API and the
CLI import and export them as YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import psycopg
import yaml
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, model_validator

SHIPPED = Path(__file__).parent / "sops"
GENERAL = "general"  # the type of an incident no SOP covers


class Match(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rule_types: list[str] = Field(default_factory=list, description="e.g. no_data: whatever the sensor")
    sensor_kinds: list[str] = Field(default_factory=list)
    camera_events: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list, description="citizens' report categories")


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    action_vi: str = Field(min_length=1, max_length=500)
    action_en: str = Field(min_length=1, max_length=500)
    role: Literal["ward_operator", "city_operator", "engineer", "hotline_operator"]
    tier: Literal["ward", "city"]
    due_minutes: float = Field(gt=0, le=7 * 24 * 60, description="From the incident's start.")
    approval: bool = Field(False, description="The city approves it once done.")


class Sop(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    version: int | None = Field(None, gt=0, description="Given when stored: one more than the last.")
    name_vi: str = Field(min_length=1, max_length=200)
    name_en: str = Field(min_length=1, max_length=200)
    source: str | None = Field(None, max_length=500, description="The regulation or plan it follows, if any.")
    match: Match
    steps: list[Step] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _keys_once(self) -> Sop:
        keys = [s.key for s in self.steps]
        if len(keys) != len(set(keys)):
            raise ValueError("each step's key appears once")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), allow_unicode=True, sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> Sop:
        return cls.model_validate(yaml.safe_load(text))


def store(conn: psycopg.Connection, sop: Sop, by: str | None) -> Sop:
    """A new version of the SOP's type (one more than its last)."""
    version = conn.execute(
        "INSERT INTO sops (type, version, name_vi, name_en, source, match, steps, created_by)"
        " SELECT %s, coalesce(max(version), 0) + 1, %s, %s, %s, %s, %s, %s FROM sops WHERE type = %s"
        " RETURNING version",
        (
            sop.type,
            sop.name_vi,
            sop.name_en,
            sop.source,
            Jsonb(sop.match.model_dump()),
            Jsonb([s.model_dump() for s in sop.steps]),
            by,
            sop.type,
        ),
    ).fetchone()[0]
    return sop.model_copy(update={"version": version})


def seed_sops(conn: psycopg.Connection) -> int:
    """The shipped SOPs whose type the database has no version of yet."""
    have = {r[0] for r in conn.execute("SELECT DISTINCT type FROM sops")}
    added = 0
    for path in sorted(SHIPPED.glob("*.yaml")):
        sop = Sop.from_yaml(path.read_text())
        if sop.type not in have:
            store(conn, sop, "shipped")
            added += 1
    return added


def current(conn: psycopg.Connection) -> dict[str, tuple[int, Sop]]:
    """The latest version of each type: type -> (its row id, the SOP)."""
    rows = conn.execute(
        "SELECT DISTINCT ON (type) id, type, version, name_vi, name_en, source, match, steps FROM sops"
        " ORDER BY type, version DESC"
    ).fetchall()
    return {
        r[1]: (r[0], Sop(type=r[1], version=r[2], name_vi=r[3], name_en=r[4], source=r[5], match=r[6], steps=r[7]))
        for r in rows
    }


def type_of(
    sops: dict[str, tuple[int, Sop]],
    *,
    rule_type: str | None = None,
    sensor_kind: str | None = None,
    camera_event: str | None = None,
    category: str | None = None,
) -> str:
    """The incident type a member belongs to: the SOP that covers its rule type first (a silent
    water gauge is an outage, not a flood), then its sensor kind, camera event or report category."""
    for field, value in (
        ("rule_types", rule_type),
        ("sensor_kinds", sensor_kind),
        ("camera_events", camera_event),
        ("categories", category),
    ):
        if value is None:
            continue
        for type_, (_, sop) in sorted(sops.items()):
            if value in getattr(sop.match, field):
                return type_
    return GENERAL
