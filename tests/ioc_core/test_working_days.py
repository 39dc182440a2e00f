"""Deadlines in working days: office hours, weekends, Vietnam's public holidays (Tết from the
lunar calendar) and the city's own make-up days, counted as a ward's clock counts them."""

from datetime import date, datetime, time, timedelta

import pytest

from ioc_core.working_days import VIETNAM, WorkingCalendar, parse_office_hours, public_holidays


def at(day: str, clock: str = "09:00") -> datetime:
    return datetime.combine(date.fromisoformat(day), time.fromisoformat(clock), VIETNAM)


def test_a_day_of_office_time_runs_to_the_same_hour_of_the_next_working_day() -> None:
    calendar = WorkingCalendar()
    assert calendar.add(at("2026-03-10", "10:00"), 1) == at("2026-03-11", "10:00")  # Tuesday to Wednesday
    assert calendar.add(at("2026-03-13", "10:00"), 1) == at("2026-03-16", "10:00")  # Friday to Monday
    assert calendar.add(at("2026-03-13", "20:00"), 1) == at("2026-03-16", "17:00")  # after hours: from Monday's opening
    assert calendar.add(at("2026-03-10", "12:00"), 0.5) == at("2026-03-10", "17:00")  # lunch does not count


def test_tet_stops_the_clock_for_its_nine_days() -> None:
    """Tết Bính Ngọ 2026: 16 to 20 February by law, with the weekends either side, 14 to 22 off."""
    calendar = WorkingCalendar()
    off = {d for d in public_holidays(2026) if d.month == 2}
    assert off == {date(2026, 2, d) for d in range(16, 21)}
    assert calendar.add(at("2026-02-13", "15:00"), 1) == at("2026-02-23", "15:00")
    assert calendar.between(at("2026-02-13", "17:00"), at("2026-02-23", "07:30")) == timedelta()


def test_a_make_up_saturday_counts_and_an_extra_day_off_does_not() -> None:
    saturday, monday = date(2026, 3, 14), date(2026, 3, 16)
    calendar = WorkingCalendar({saturday: True, monday: False})
    assert calendar.is_working(saturday) and not calendar.is_working(monday)
    assert calendar.add(at("2026-03-13", "10:00"), 1) == at("2026-03-14", "10:00")
    assert calendar.add(at("2026-03-14", "10:00"), 1) == at("2026-03-17", "10:00")
    assert calendar.working_days_in(date(2026, 3, 13), date(2026, 3, 17)) == [
        date(2026, 3, 13),
        saturday,
        date(2026, 3, 17),
    ]


def test_the_governments_swapped_day_off_is_off() -> None:
    """2 May 2025 was given off in exchange for Saturday 26 April (the holidays package knows it)."""
    assert not WorkingCalendar().is_working(date(2025, 5, 2))


def test_working_time_between_two_moments_is_office_time_on_working_days() -> None:
    calendar = WorkingCalendar()
    assert calendar.between(at("2026-03-13", "16:00"), at("2026-03-16", "08:30")) == timedelta(hours=2)
    assert calendar.between(at("2026-03-16", "09:00"), at("2026-03-13", "09:00")) == timedelta()


def test_office_hours_that_overlap_or_run_backwards_are_refused() -> None:
    assert parse_office_hours([["13:00", "17:00"], ["07:30", "11:30"]])[0] == (time(7, 30), time(11, 30))
    for bad in ([["09:00", "08:00"]], [["07:30", "12:00"], ["11:00", "17:00"]]):
        with pytest.raises(ValueError):
            parse_office_hours(bad)
