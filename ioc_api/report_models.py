"""Request and response models of citizens' reports: categories, tickets, tracking, the calendar."""

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ioc_api.models import NotNull

CATEGORY_CODE = r"^[a-z][a-z0-9_]{0,39}$"
TicketState = Literal["received", "accepted", "in_progress", "resolved", "closed", "rejected"]


class Category(BaseModel):
    code: str = Field(pattern=CATEGORY_CODE, examples=["lighting"])
    name_vi: str = Field(min_length=1, max_length=120, examples=["Chiếu sáng"])
    name_en: str = Field(min_length=1, max_length=120, examples=["Lighting"])
    description_vi: str = Field("", max_length=500)
    description_en: str = Field("", max_length=500)
    deadline_days: float = Field(
        ge=0.5, le=60, multiple_of=0.5, description="Working days to handle a report.", examples=[3]
    )
    emergency: bool = False
    keywords: list[str] = Field(default_factory=list, max_length=40)
    active: bool = True
    sort_order: int = Field(100, ge=0, le=10_000)


class CategoryPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name_vi: NotNull[str] = Field(None, min_length=1, max_length=120)
    name_en: NotNull[str] = Field(None, min_length=1, max_length=120)
    description_vi: NotNull[str] = Field(None, max_length=500)
    description_en: NotNull[str] = Field(None, max_length=500)
    deadline_days: NotNull[float] = Field(None, ge=0.5, le=60, multiple_of=0.5)
    emergency: NotNull[bool] = None
    keywords: NotNull[list[str]] = Field(None, max_length=40)
    active: NotNull[bool] = None
    sort_order: NotNull[int] = Field(None, ge=0, le=10_000)


class PhoneReport(BaseModel):
    """What a hotline operator enters from a call."""

    model_config = ConfigDict(extra="forbid")
    category: str = Field(pattern=CATEGORY_CODE, examples=["flooding"])
    description: str = Field(min_length=1, max_length=4000, examples=["Nước ngập ngang gối trước số 12 Hùng Vương"])
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    address: str | None = Field(None, max_length=300, examples=["12 Hùng Vương, P. Hải Châu 1, Q. Hải Châu"])
    caller_phone: str | None = Field(None, max_length=40, description="Kept for the handling unit's staff only.")
    caller_name: str | None = Field(None, max_length=100)


class Filed(BaseModel):
    code: str = Field(description="The reporter's tracking code (Open311's service_request_id).")
    ticket_id: int
    joined: bool = Field(description="The report joined an open ticket of the same problem nearby.")
    unit_id: str
    deadline_at: datetime

    @classmethod
    def of(cls, filed) -> "Filed":
        """The answer for a report ``ioc_api.tickets.Tickets.file`` stored."""
        return cls(
            code=filed.code,
            ticket_id=filed.ticket_id,
            joined=filed.joined,
            unit_id=filed.unit_id,
            deadline_at=filed.deadline_at,
        )


class Reporter(BaseModel):
    code: str
    channel: str
    received_at: datetime
    description: str
    contact_name: str | None = Field(description="Only for the handling unit's staff; otherwise null.")
    contact_phone: str | None
    contact_email: str | None
    media_urls: list[str]


class Step(BaseModel):
    at: datetime
    step: str
    state: str
    unit_id: str
    by: str | None
    note: str | None


class PhotoRef(BaseModel):
    name: str
    stage: Literal["report", "resolution"]
    public: bool
    url: str
    thumbnail_url: str


class Ticket(BaseModel):
    id: int
    category: str
    unit_id: str
    department: str | None
    state: TicketState
    emergency: bool
    lat: float
    lon: float
    address: str | None
    description: str
    received_at: datetime
    deadline_at: datetime
    resolved_at: datetime | None
    reporters: int
    escalation_level: int
    exercise: bool = False
    working_hours_left: float = Field(description="Working hours to the deadline (negative: overdue).")
    reports: list[Reporter] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    photos: list[PhotoRef] = Field(default_factory=list)


class StepIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(None, max_length=2000, examples=["Đã cử đội thoát nước đến hiện trường."])
    to_unit: str | None = Field(None, description="transfer: the unit that takes it over")
    department: str | None = Field(None, max_length=120, description="transfer: the city department instead")


class Tracking(BaseModel):
    """What anyone holding a tracking code sees: never a contact, never a photo not yet public."""

    code: str
    category: str
    category_name_vi: str
    category_name_en: str
    state: TicketState
    unit_id: str
    unit_name: str
    received_at: datetime
    deadline_at: datetime
    working_hours_left: float
    reporters: int
    steps: list[Step]
    photos: list[PhotoRef]


class CalendarDay(BaseModel):
    day: date
    working: bool
    note: str = Field("", max_length=200)


class CalendarYear(BaseModel):
    year: int
    public_holidays: dict[date, str]
    city_days: list[CalendarDay]
