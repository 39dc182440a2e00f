"""Request and response models of incidents, SOP checklists, duty rosters and notifications."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

IncidentState = Literal["open", "responding", "stabilised", "closed"]


class ChecklistStep(BaseModel):
    key: str
    action_vi: str
    action_en: str
    role: str
    tier: Literal["ward", "city"]
    due_at: datetime
    approval: bool
    done_at: datetime | None = None
    done_by: str | None = None
    note: str | None = None
    photo_url: str | None = None
    approved_at: datetime | None = None
    approved_by: str | None = None
    overdue: bool = Field(description="Not done, and past its deadline.")


class Member(BaseModel):
    member_type: Literal["alert", "event", "ticket"]
    member_id: int
    kind: str
    severity: str
    unit_id: str
    at: datetime
    title: str


class Incident(BaseModel):
    id: int
    unit_id: str
    department: str | None
    type: str
    title: str
    severity: str
    state: IncidentState
    exercise: bool
    lat: float | None
    lon: float | None
    opened_at: datetime
    last_member_at: datetime
    members: int
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    closed_at: datetime | None
    sop_name_vi: str | None = None
    sop_name_en: str | None = None
    sop_version: int | None = None
    sop_source: str | None = None
    steps_total: int = 0
    steps_done: int = 0
    steps_overdue: int = 0
    checklist: list[ChecklistStep] = Field(default_factory=list)
    member_list: list[Member] = Field(default_factory=list, description="The latest 200 members.")


class StateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: IncidentState
    note: str | None = Field(None, max_length=2000)


class OwnerIn(BaseModel):
    """Who owns the incident: a unit (a ward, or the city), and a city department if one takes it."""

    model_config = ConfigDict(extra="forbid")
    unit_id: str
    department: str | None = Field(None, max_length=120, examples=["Sở Xây dựng"])
    note: str | None = Field(None, max_length=2000)


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=2000)


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    other: int = Field(description="The incident whose members join this one; it closes.")


class MemberRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    member_type: Literal["alert", "event", "ticket"]
    member_id: int


class SplitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    members: list[MemberRef] = Field(min_length=1, max_length=10_000)


class TimelineEntry(BaseModel):
    at: datetime
    what: str = Field(description="member, step, approval, event, notification")
    kind: str
    by: str | None = None
    text: str


class Shift(BaseModel):
    id: int | None = None
    unit_id: str
    role: str
    username: str
    starts_at: datetime
    ends_at: datetime


class ChainStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    after_minutes: float = Field(ge=0, le=7 * 24 * 60)
    to: str = Field(
        pattern=r"^(on_duty:[a-z_]+|user:[^\s]+|email:[^@\s]+@[^@\s]+|url:https?://\S+)$",
        examples=["on_duty:ward_operator", "user:hai-chau-chief", "email:pctt@danang.gov.vn"],
    )


class NotificationRule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int | None = None
    name: str = Field(min_length=1, max_length=200)
    unit_id: str | None = None
    incident_types: list[str] = Field(default_factory=list)
    min_severity: Literal["info", "minor", "major", "critical"] = "major"
    channel: Literal["email", "webhook"]
    chain: list[ChainStep] = Field(min_length=1, max_length=10)
    remind_minutes: float | None = Field(None, gt=0)
    secret: str | None = Field(None, min_length=16, max_length=200, description="Webhooks: the signing key.")
    exercises: bool = False
    enabled: bool = True

    @field_validator("chain")
    @classmethod
    def _in_order(cls, chain: list[ChainStep]) -> list[ChainStep]:
        times = [c.after_minutes for c in chain]
        if times != sorted(times):
            raise ValueError("a chain's steps come in the order of their minutes")
        return chain


class Notification(BaseModel):
    id: int
    incident_id: int
    rule_id: int
    level: int
    round: int
    channel: str
    recipient: str
    state: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    sent_with: int | None
