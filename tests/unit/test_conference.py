"""Teleconference rules: booking, recurrence in local time, conflicts, reminders, the lobby. No I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

import pytest

from teleconsult.domain.conference import (
    AgendaItem,
    BookingDraft,
    ConflictKind,
    Entry,
    Frequency,
    Occurrence,
    OnCallShift,
    Purpose,
    ReminderKey,
    Rule,
    ScheduleConflict,
    Scheduled,
    Series,
    cancel_occurrence,
    conflicts,
    due_reminders,
    expand,
    local_to_utc,
    may_enter,
    move_occurrence,
    next_reminder_at,
    parse_rrule,
    reminder_times,
    room_opens_at,
    series_of,
    validate_booking,
)
from teleconsult.domain.errors import ValidationFailed

BACH_MAI, THAI_BINH, NAM_DINH = 1, 2, 3
DR_LAN, DR_MINH, DR_HOA = 10, 11, 12
EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def draft(**changes: object) -> BookingDraft:
    base = BookingDraft(
        title="Weekly cardiology case review",
        purpose=Purpose.CASE_REVIEW,
        day=date(2026, 12, 1),  # a Tuesday
        start=time(14, 0),
        end=time(15, 30),
        host_facility_id=BACH_MAI,
        invited_site_ids=(THAI_BINH, NAM_DINH),
        invited_user_ids=(DR_LAN, DR_MINH),
        agenda=(AgendaItem(presenter_user_id=DR_LAN, patient_id=501),),
        rrule="FREQ=WEEKLY;BYDAY=TU;COUNT=8",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def series(rrule: str | None = "FREQ=WEEKLY;BYDAY=TU;COUNT=8", booking_id: int = 7, **changes: object) -> Series:
    return series_of(booking_id, validate_booking(draft(rrule=rrule, **changes)))


def starts(occurrences: list[Occurrence]) -> list[datetime]:
    return [o.starts_at for o in occurrences]


# -- local time and booking -----------------------------------------------------------------------------------


def test_vietnam_wall_clock_is_seven_hours_ahead_of_utc() -> None:
    assert local_to_utc(date(2026, 12, 1), time(14, 0), "Asia/Ho_Chi_Minh") == utc(2026, 12, 1, 7, 0)
    assert local_to_utc(date(2027, 1, 1), time(6, 30), "Asia/Ho_Chi_Minh") == utc(2026, 12, 31, 23, 30)


@pytest.mark.parametrize(
    ("day", "at", "words"),
    [(date(2026, 3, 29), time(2, 30), "does not exist"), (date(2026, 10, 25), time(2, 30), "happens twice")],
)
def test_a_local_time_the_clocks_skip_or_repeat_is_refused_where_there_is_daylight_saving(
    day: date, at: time, words: str
) -> None:
    with pytest.raises(ValidationFailed, match=words):
        local_to_utc(day, at, "Europe/Berlin")
    local_to_utc(day, at, "Asia/Ho_Chi_Minh")  # the same wall-clock time is fine in Vietnam


def test_a_valid_draft_becomes_a_booking_in_utc_with_the_host_counted_once() -> None:
    booking = validate_booking(
        draft(title="  Weekly   review ", invited_site_ids=(THAI_BINH, BACH_MAI, THAI_BINH), rrule=None)
    )
    assert booking.title == "Weekly review"
    assert (booking.starts_at, booking.ends_at) == (utc(2026, 12, 1, 7, 0), utc(2026, 12, 1, 8, 30))
    assert booking.invited_site_ids == (THAI_BINH,)
    assert booking.site_ids == {BACH_MAI, THAI_BINH}
    assert booking.rule is None


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"title": "   "}, "title", "title"),
        ({"title": "x" * 201}, "title", "200"),
        ({"end": time(14, 0)}, "end", "end after it starts"),
        ({"end": time(13, 0)}, "end", "end after it starts"),
        ({"start": time(6, 0), "end": time(14, 1)}, "end", "8 hours"),
        ({"invited_site_ids": (BACH_MAI,), "invited_user_ids": (), "agenda": ()}, "invited_site_ids", "invite"),
        ({"agenda": (AgendaItem(presenter_user_id=DR_HOA, patient_id=501),)}, "agenda", "presenter of case 1"),
        ({"agenda": (AgendaItem(presenter_user_id=DR_LAN),)}, "agenda", "case 1 names no patient"),
        (
            {"agenda": (AgendaItem(DR_LAN, patient_id=501), AgendaItem(DR_MINH, patient_id=501))},
            "agenda",
            "case 2 is already",
        ),
    ],
)
def test_a_draft_that_breaks_a_rule_is_refused_with_the_field_to_fix(
    changes: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(ValidationFailed, match=words) as refused:
        validate_booking(draft(**changes))
    assert refused.value.field == field


def test_eight_hours_exactly_is_allowed() -> None:
    booking = validate_booking(draft(start=time(6, 0), end=time(14, 0)))
    assert booking.ends_at - booking.starts_at == timedelta(hours=8)


# -- recurrence -----------------------------------------------------------------------------------------------


def test_every_tuesday_at_14_for_8_weeks_gives_8_tuesdays_at_07_utc_across_the_year_end() -> None:
    sessions = expand(series(), *EVER)
    assert len(sessions) == 8
    assert all(o.starts_at.weekday() == 1 and o.starts_at.time() == time(7, 0) for o in sessions)
    assert all(o.ends_at - o.starts_at == timedelta(minutes=90) for o in sessions)
    assert sessions[0].starts_at == utc(2026, 12, 1, 7)
    assert sessions[-1].starts_at == utc(2027, 1, 19, 7)
    assert [o.recurrence_id for o in sessions][:2] == [datetime(2026, 12, 1, 14), datetime(2026, 12, 8, 14)]


def test_a_series_keeps_its_local_hour_when_the_zone_changes_offset() -> None:
    # Vietnam has no daylight saving; a zone that does shows the expansion is done in local time.
    berlin = series("FREQ=WEEKLY;COUNT=3", day=date(2026, 3, 17), tz="Europe/Berlin")
    assert starts(expand(berlin, *EVER)) == [utc(2026, 3, 17, 13), utc(2026, 3, 24, 13), utc(2026, 3, 31, 12)]


def test_monthly_runs_across_months_and_the_year_end_and_skips_months_without_the_day() -> None:
    monthly = series("FREQ=MONTHLY;COUNT=4", day=date(2026, 11, 30))
    assert [o.recurrence_id.date() for o in expand(monthly, *EVER)] == [
        date(2026, 11, 30),
        date(2026, 12, 30),
        date(2027, 1, 30),
        date(2027, 3, 30),  # February has no 30th: RFC 5545 skips it rather than inventing a date
    ]


def test_until_a_date_includes_that_local_day_and_until_a_utc_time_is_an_instant() -> None:
    by_date = series("FREQ=DAILY;INTERVAL=2;UNTIL=20270103", day=date(2026, 12, 28), start=time(9), end=time(10))
    assert [o.recurrence_id.date() for o in expand(by_date, *EVER)] == [
        date(2026, 12, 28),
        date(2026, 12, 30),
        date(2027, 1, 1),
        date(2027, 1, 3),
    ]
    just_before_the_fourth = series("FREQ=WEEKLY;BYDAY=TU;UNTIL=20261222T065959Z")
    assert len(expand(just_before_the_fourth, *EVER)) == 3
    assert len(expand(series("FREQ=WEEKLY;BYDAY=TU;UNTIL=20261222T070000Z"), *EVER)) == 4
    assert starts(expand(series("FREQ=WEEKLY;BYDAY=TU;UNTIL=20261222"), *EVER)) == starts(
        expand(series("FREQ=WEEKLY;BYDAY=TU;COUNT=4"), *EVER)
    )


def test_weekly_on_two_days_alternates_them() -> None:
    twice = series("FREQ=WEEKLY;BYDAY=TH,TU;COUNT=4")
    assert [o.recurrence_id.strftime("%a %d") for o in expand(twice, *EVER)] == [
        "Tue 01",
        "Thu 03",
        "Tue 08",
        "Thu 10",
    ]


def test_a_window_returns_the_sessions_that_overlap_it_and_its_end_is_exclusive() -> None:
    weekly = series()
    in_window = expand(weekly, utc(2026, 12, 8, 8, 0), utc(2026, 12, 22, 7, 0))
    assert starts(in_window) == [utc(2026, 12, 8, 7), utc(2026, 12, 15, 7)]  # 8 Dec still running at 08:00


def test_a_cancelled_session_disappears_and_the_others_stay() -> None:
    weekly = cancel_occurrence(series(), datetime(2026, 12, 22, 14))
    sessions = expand(weekly, *EVER)
    assert len(sessions) == 7
    assert utc(2026, 12, 22, 7) not in starts(sessions)


def test_a_moved_session_keeps_its_recurrence_id_and_is_found_where_it_went() -> None:
    weekly = move_occurrence(series(), datetime(2026, 12, 22, 14), utc(2026, 12, 24, 2), utc(2026, 12, 24, 3))
    christmas_eve = expand(weekly, utc(2026, 12, 24), utc(2026, 12, 25))
    assert len(christmas_eve) == 1
    assert christmas_eve[0].recurrence_id == datetime(2026, 12, 22, 14)
    assert christmas_eve[0].moved
    assert utc(2026, 12, 22, 7) not in starts(expand(weekly, *EVER))
    assert len(expand(weekly, *EVER)) == 8


def test_moves_and_cancellations_must_name_a_real_session() -> None:
    weekly = series()
    with pytest.raises(ValidationFailed, match="no session"):
        cancel_occurrence(weekly, datetime(2026, 12, 23, 14))
    cancelled = cancel_occurrence(weekly, datetime(2026, 12, 22, 14))
    with pytest.raises(ValidationFailed, match="cancelled"):
        move_occurrence(cancelled, datetime(2026, 12, 22, 14), utc(2026, 12, 24, 2), utc(2026, 12, 24, 3))
    moved = move_occurrence(weekly, datetime(2026, 12, 8, 14), utc(2026, 12, 9, 2), utc(2026, 12, 9, 3))
    assert cancel_occurrence(moved, datetime(2026, 12, 8, 14)).overrides == ()
    with pytest.raises(ValueError, match="timezone-aware"):
        move_occurrence(weekly, datetime(2026, 12, 8, 14), datetime(2026, 12, 9, 9), datetime(2026, 12, 9, 10))


def test_a_rule_reads_back_what_it_writes() -> None:
    rule = parse_rrule("rrule:freq=weekly;interval=2;byday=tu,th;until=20270301")
    assert rule.freq is Frequency.WEEKLY and rule.interval == 2 and rule.by_day == (1, 3)
    assert rule.until == utc(2027, 3, 1, 16, 59, 59)  # end of 1 March in Vietnam
    assert rule.to_ical() == "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH;UNTIL=20270301T165959Z"
    assert parse_rrule(rule.to_ical()) == rule


@pytest.mark.parametrize(
    ("rrule", "words"),
    [
        ("FREQ=WEEKLY;BYDAY=TU", "must end"),
        ("FREQ=DAILY;COUNT=3;UNTIL=20261231", "not both"),
        ("FREQ=YEARLY;COUNT=2", "DAILY, WEEKLY or MONTHLY"),
        ("FREQ=HOURLY;COUNT=2", "DAILY, WEEKLY or MONTHLY"),
        ("COUNT=3", "needs FREQ"),
        ("FREQ=DAILY;COUNT=0", "at least 1"),
        ("FREQ=DAILY;COUNT=-1", "whole number"),
        ("FREQ=DAILY;INTERVAL=0;COUNT=3", "INTERVAL"),
        ("FREQ=DAILY;COUNT=300", "more than 200"),
        ("FREQ=DAILY;UNTIL=20281231", "more than 200"),
        ("FREQ=DAILY;UNTIL=20261130", "ends before the first"),
        ("FREQ=DAILY;UNTIL=20261301", "not a real date"),
        ("FREQ=DAILY;UNTIL=20261231T120000", "UTC time"),
        ("FREQ=WEEKLY;BYDAY=1TU;COUNT=3", "without a number"),
        ("FREQ=DAILY;BYDAY=TU;COUNT=3", "only with FREQ=WEEKLY"),
        ("FREQ=WEEKLY;BYDAY=WE;COUNT=3", "not one of the rule's days"),
        ("FREQ=MONTHLY;BYMONTHDAY=1;COUNT=3", "BYMONTHDAY is not offered"),
        ("FREQ=DAILY;COUNT=3;COUNT=4", "twice"),
        ("every tuesday", "NAME=VALUE"),
        ("RRULE:", "empty"),
    ],
)
def test_a_rule_outside_what_the_form_offers_is_refused_clearly(rrule: str, words: str) -> None:
    with pytest.raises(ValidationFailed, match=words) as refused:
        validate_booking(draft(rrule=rrule))
    assert refused.value.field == "rrule"


def test_a_rule_built_by_hand_must_still_end() -> None:
    with pytest.raises(ValidationFailed, match="must end"):
        Rule(Frequency.DAILY)


# -- conflicts ------------------------------------------------------------------------------------------------


def other_booking(
    booking_id: int, starts_at: datetime, ends_at: datetime, users: Iterable[int] = (), sites: Iterable[int] = ()
) -> Scheduled:
    occurrence = Occurrence(booking_id, starts_at.replace(tzinfo=None) + timedelta(hours=7), starts_at, ends_at)
    return Scheduled(occurrence, frozenset(users), frozenset(sites))


def check(
    existing: list[Scheduled], shifts: list[OnCallShift] | None = None, rrule: str | None = None
) -> list[ScheduleConflict]:
    booking = validate_booking(draft(rrule=rrule))
    candidate = expand(series_of(7, booking), *EVER)
    return conflicts(candidate, existing, shifts or [], booking.invited_user_ids, booking.site_ids)


def test_an_invited_person_in_another_session_at_that_time_is_reported() -> None:
    found = check([other_booking(40, utc(2026, 12, 1, 8), utc(2026, 12, 1, 9), users=[DR_MINH, DR_HOA])])
    assert [(c.kind, c.user_id, c.other_booking_id) for c in found] == [
        (ConflictKind.PERSON_DOUBLE_BOOKED, DR_MINH, 40)
    ]
    assert found[0].recurrence_id == datetime(2026, 12, 1, 14)


def test_a_site_already_in_another_session_is_reported_the_host_included() -> None:
    found = check([other_booking(41, utc(2026, 12, 1, 6), utc(2026, 12, 1, 7, 30), sites=[BACH_MAI, 99])])
    assert [(c.kind, c.site_id, c.other_booking_id) for c in found] == [(ConflictKind.SITE_BUSY, BACH_MAI, 41)]


def test_an_invited_person_on_call_is_reported() -> None:
    shifts = [OnCallShift(DR_LAN, utc(2026, 12, 1, 0), utc(2026, 12, 1, 12)), OnCallShift(DR_HOA, *EVER)]
    found = check([], shifts)
    assert [(c.kind, c.user_id) for c in found] == [(ConflictKind.PERSON_ON_CALL, DR_LAN)]


def test_sessions_and_shifts_that_only_touch_do_not_clash() -> None:
    before = other_booking(42, utc(2026, 12, 1, 5), utc(2026, 12, 1, 7), users=[DR_LAN], sites=[BACH_MAI])
    after = other_booking(43, utc(2026, 12, 1, 8, 30), utc(2026, 12, 1, 10), users=[DR_LAN], sites=[BACH_MAI])
    shift_ends_at_start = OnCallShift(DR_MINH, utc(2026, 11, 30, 19), utc(2026, 12, 1, 7))
    assert check([before, after], [shift_ends_at_start]) == []


def test_editing_a_booking_does_not_warn_about_itself() -> None:
    itself = other_booking(7, utc(2026, 12, 1, 7), utc(2026, 12, 1, 8, 30), users=[DR_LAN], sites=[BACH_MAI])
    assert check([itself]) == []


def test_only_the_clashing_sessions_of_a_series_are_reported_in_time_order() -> None:
    third = other_booking(44, utc(2026, 12, 15, 7), utc(2026, 12, 15, 8), users=[DR_LAN])
    sixth = other_booking(45, utc(2027, 1, 5, 8), utc(2027, 1, 5, 9), sites=[THAI_BINH])
    found = check([sixth, third], rrule="FREQ=WEEKLY;BYDAY=TU;COUNT=8")
    assert [(c.recurrence_id.date(), c.kind) for c in found] == [
        (date(2026, 12, 15), ConflictKind.PERSON_DOUBLE_BOOKED),
        (date(2027, 1, 5), ConflictKind.SITE_BUSY),
    ]


# -- reminders ------------------------------------------------------------------------------------------------

OFFSETS = (timedelta(hours=24), timedelta(minutes=15))
GRACE = timedelta(minutes=10)
START = utc(2026, 12, 1, 7)  # 14:00 in Vietnam
SESSION = Occurrence(7, datetime(2026, 12, 1, 14), START, START + timedelta(minutes=90))


def key(offset: timedelta, occurrence: Occurrence = SESSION) -> ReminderKey:
    return ReminderKey(occurrence.booking_id, occurrence.recurrence_id, offset, occurrence.starts_at)


def test_reminder_times_come_earliest_first_and_only_before_the_start() -> None:
    assert reminder_times(START, [timedelta(minutes=15), timedelta(hours=24)]) == [
        (timedelta(hours=24), utc(2026, 11, 30, 7)),
        (timedelta(minutes=15), utc(2026, 12, 1, 6, 45)),
    ]
    with pytest.raises(ValidationFailed, match="before the start"):
        reminder_times(START, [timedelta(minutes=-5)])


def test_each_reminder_is_due_once_when_its_time_comes() -> None:
    sent: set[ReminderKey] = set()
    timeline = {}
    for now in (
        utc(2026, 11, 30, 6, 59),
        utc(2026, 11, 30, 7, 0),
        utc(2026, 11, 30, 7, 1),
        utc(2026, 12, 1, 6, 44),
        utc(2026, 12, 1, 6, 45),
        utc(2026, 12, 1, 6, 50),
    ):
        due = due_reminders([SESSION], OFFSETS, sent, now, GRACE)
        sent |= {r.key for r in due}
        timeline[now] = [r.key.offset for r in due]
    assert list(timeline.values()) == [[], [timedelta(hours=24)], [], [], [timedelta(minutes=15)], []]


def test_after_a_restart_the_missed_reminder_is_caught_up() -> None:
    sent_before_the_crash = {key(timedelta(hours=24))}
    restarted_at = utc(2026, 12, 1, 6, 50)  # the 15-minute reminder was due at 06:45, while down
    due = due_reminders([SESSION], OFFSETS, sent_before_the_crash, restarted_at, GRACE)
    assert [(r.key, r.at) for r in due] == [(key(timedelta(minutes=15)), utc(2026, 12, 1, 6, 45))]


def test_after_a_long_outage_only_the_latest_reminder_is_sent_not_a_stale_one_with_it() -> None:
    due = due_reminders([SESSION], OFFSETS, set(), utc(2026, 12, 1, 6, 55), GRACE)
    assert [r.key.offset for r in due] == [timedelta(minutes=15)]


def test_no_reminder_for_a_session_running_longer_than_the_grace() -> None:
    just_inside = START + GRACE - timedelta(seconds=1)
    assert [r.key.offset for r in due_reminders([SESSION], OFFSETS, set(), just_inside, GRACE)] == [
        timedelta(minutes=15)
    ]
    assert due_reminders([SESSION], OFFSETS, set(), START + GRACE, GRACE) == []
    assert due_reminders([SESSION], OFFSETS, set(), START + timedelta(days=3), GRACE) == []


def test_a_moved_session_is_reminded_again_at_its_new_time() -> None:
    moved = replace(SESSION, starts_at=START + timedelta(days=1), ends_at=START + timedelta(days=1, hours=1))
    due = due_reminders([moved], OFFSETS, {key(timedelta(hours=24))}, utc(2026, 12, 1, 7, 0), GRACE)
    assert [r.key for r in due] == [key(timedelta(hours=24), moved)]


def test_reminder_keys_are_the_same_in_every_process_and_differ_per_offset() -> None:
    assert key(timedelta(minutes=15)).text == "7/20261201T140000/900/20261201T070000Z"
    assert key(timedelta(minutes=15)).text == key(timedelta(minutes=15)).text
    assert key(timedelta(minutes=15)).text != key(timedelta(hours=24)).text


def test_the_scheduler_knows_when_to_wake_next() -> None:
    assert next_reminder_at([SESSION], OFFSETS, utc(2026, 11, 30, 8)) == utc(2026, 12, 1, 6, 45)
    assert next_reminder_at([SESSION], OFFSETS, utc(2026, 12, 1, 6, 45)) is None


# -- the conference room --------------------------------------------------------------------------------------

END = START + timedelta(minutes=90)


def enter(now: datetime, *, invited: bool = True, host: bool = False, admitted: bool = False) -> Entry:
    return may_enter(invited, host, admitted, now, START, END)


def test_the_room_opens_to_invitees_15_minutes_before_the_start() -> None:
    assert room_opens_at(START) == utc(2026, 12, 1, 6, 45)
    assert enter(utc(2026, 12, 1, 6, 44, 59)) is Entry.CLOSED
    assert enter(utc(2026, 12, 1, 6, 45)) is Entry.ENTER
    assert enter(utc(2026, 12, 1, 6, 44, 59), host=True) is Entry.CLOSED


def test_the_uninvited_and_the_late_wait_in_the_lobby_until_the_host_admits_them() -> None:
    assert enter(START, invited=False) is Entry.LOBBY
    assert enter(START, invited=False, admitted=True) is Entry.ENTER
    assert enter(START + timedelta(minutes=9)) is Entry.ENTER
    assert enter(START + timedelta(minutes=10)) is Entry.LOBBY
    assert enter(START + timedelta(minutes=30), host=True) is Entry.ENTER


def test_the_room_closes_at_the_end() -> None:
    assert enter(END - timedelta(seconds=1), host=True) is Entry.ENTER
    assert enter(END, host=True) is Entry.CLOSED
    assert enter(END, admitted=True) is Entry.CLOSED
