"""Dates dd/mm/yyyy, times in Asia/Ho_Chi_Minh (UTC+7, no daylight saving)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from teleconsult.display import format_date, format_datetime, format_time, to_local


def test_evening_utc_is_next_morning_in_hanoi() -> None:
    assert format_datetime(datetime(2026, 11, 21, 20, 30, tzinfo=UTC)) == "22/11/2026 03:30"


def test_local_offset_is_plus_seven_all_year() -> None:
    for month in (1, 7):
        local = to_local(datetime(2026, month, 1, 12, 0, tzinfo=UTC))
        assert local.utcoffset() == timedelta(hours=7)
        assert (local.hour, local.day) == (19, 1)


def test_dates_are_day_month_year() -> None:
    assert format_date(date(2026, 1, 5)) == "05/01/2026"


def test_time_has_seconds() -> None:
    assert format_time(datetime(2026, 11, 21, 17, 5, 9, tzinfo=UTC)) == "00:05:09"


def test_other_timezone_can_be_asked_for() -> None:
    assert format_datetime(datetime(2026, 11, 21, 20, 30, tzinfo=UTC), "UTC") == "21/11/2026 20:30"


def test_missing_values_show_as_empty() -> None:
    assert format_date(None) == format_datetime(None) == format_time(None) == ""
