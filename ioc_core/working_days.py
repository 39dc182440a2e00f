"""Working time in Vietnam, by which citizens' reports are timed: office hours on working days.

A working day is Monday to Friday, less the public holidays of the ``holidays`` package's Vietnam
calendar (Tết from the lunar calendar, Hùng Kings' day, 30 April, 1 May, National Day and the day
beside it, days moved off a weekend, the government's swapped days off), with the city's own
changes on top: a Saturday worked to make up for a bridge day, or an extra day off
(``calendar_days``). Working time runs only in office hours (``IOC_WORKING_HOURS``, Vietnam's public
offices: 07:30-11:30 and 13:00-17:00), so "three working days" from a report on Friday evening ends
on Wednesday evening, and a report of the Tết eve waits until the offices open again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
OFFICE_HOURS: tuple[tuple[time, time], ...] = ((time(7, 30), time(11, 30)), (time(13, 0), time(17, 0)))


@lru_cache(maxsize=64)
def _public_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("VN", years=year, language="en_US"))


def public_holidays(year: int) -> dict[date, str]:
    """The year's days off by law, with their names (for the calendar's API)."""
    return dict(sorted(holidays.country_holidays("VN", years=year, language="en_US").items()))


class WorkingCalendar:
    """Working days and office hours, with the city's own days (True: worked, False: off)."""

    def __init__(
        self,
        city_days: Mapping[date, bool] | None = None,
        office_hours: Iterable[tuple[time, time]] = OFFICE_HOURS,
        tz: ZoneInfo = VIETNAM,
    ) -> None:
        self.city_days = dict(city_days or {})
        self.office_hours = tuple(office_hours)
        if not self.office_hours:
            raise ValueError("no office hours")
        self.tz = tz
        self.day_seconds = sum(_seconds(b) - _seconds(a) for a, b in self.office_hours)

    def is_working(self, day: date) -> bool:
        if day in self.city_days:
            return self.city_days[day]
        return day.weekday() < 5 and day not in _public_holidays(day.year)

    def _periods(self, day: date) -> list[tuple[datetime, datetime]]:
        """The day's office periods, as aware datetimes."""
        if not self.is_working(day):
            return []
        return [(datetime.combine(day, a, self.tz), datetime.combine(day, b, self.tz)) for a, b in self.office_hours]

    def add(self, start: datetime, working_days: float) -> datetime:
        """The moment ``working_days`` of office time have passed since ``start``: a deadline."""
        left = timedelta(seconds=working_days * self.day_seconds)
        day = start.astimezone(self.tz).date()
        for _ in range(3660):  # ten years of days: past that, the calendar is wrong, not the deadline
            for begin, end in self._periods(day):
                begin = max(begin, start)
                if begin >= end:
                    continue
                if end - begin >= left:
                    return begin + left
                left -= end - begin
            day += timedelta(days=1)
        raise ValueError(f"no working time found in ten years after {start.isoformat()}")

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Office time on working days between two moments (none if ``end`` comes first)."""
        total = timedelta()
        if end <= start:
            return total
        day, last = start.astimezone(self.tz).date(), end.astimezone(self.tz).date()
        while day <= last:
            for begin, finish in self._periods(day):
                a, b = max(begin, start), min(finish, end)
                if b > a:
                    total += b - a
            day += timedelta(days=1)
        return total

    def working_days_in(self, first: date, last: date) -> list[date]:
        """The working days from ``first`` to ``last``, both included."""
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        return [d for d in days if self.is_working(d)]


def _seconds(t: time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


def parse_office_hours(spans: Iterable[tuple[str, str]]) -> tuple[tuple[time, time], ...]:
    """``[["07:30", "11:30"], ["13:00", "17:00"]]`` as times; refused unless each starts before it
    ends and none overlaps the next."""
    hours = tuple(sorted((time.fromisoformat(a), time.fromisoformat(b)) for a, b in spans))
    ends = [b for _, b in hours]
    for i, (a, b) in enumerate(hours):
        if a >= b or (i and a < ends[i - 1]):
            raise ValueError("office hours are (start, end) pairs, start before end, not overlapping")
    return hours
