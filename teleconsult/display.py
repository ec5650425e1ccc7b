"""Clinic conventions for showing time: stored in UTC, shown in Asia/Ho_Chi_Minh, dates dd/mm/yyyy."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo


def to_local(moment: datetime, tz_name: str = "Asia/Ho_Chi_Minh") -> datetime:
    return moment.astimezone(ZoneInfo(tz_name))


def format_date(day: date | datetime | None, tz_name: str = "Asia/Ho_Chi_Minh") -> str:
    if day is None:
        return ""
    if isinstance(day, datetime) and day.tzinfo is not None:
        day = to_local(day, tz_name)
    return day.strftime("%d/%m/%Y")


def format_datetime(moment: datetime | None, tz_name: str = "Asia/Ho_Chi_Minh") -> str:
    if moment is None:
        return ""
    return to_local(moment, tz_name).strftime("%d/%m/%Y %H:%M")


def format_time(moment: datetime | None, tz_name: str = "Asia/Ho_Chi_Minh") -> str:
    if moment is None:
        return ""
    return to_local(moment, tz_name).strftime("%H:%M:%S")
