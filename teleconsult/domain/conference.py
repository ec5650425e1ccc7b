"""Multi-site teleconferences: booking rules, recurrence, conflicts, reminders and the lobby. Pure: no clock,
no I/O.

Times are entered and shown as wall-clock time in the booking's zone (Asia/Ho_Chi_Minh) and stored in UTC.
Recurrences are expanded in local time, so "every Tuesday 14:00" stays 14:00 local whatever the zone's offset
does. An occurrence's ``recurrence_id`` is its original local start (a naive wall-clock datetime in the
series' zone): exactly what RFC 5545's ``RECURRENCE-ID;TZID=...`` carries, and it stays the same when that one
occurrence is moved, so cancellations, moves and sent reminders can refer to it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence, Set
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from itertools import islice
from zoneinfo import ZoneInfo

from dateutil import rrule as _rrule

from teleconsult.domain.errors import ValidationFailed

VIETNAM = "Asia/Ho_Chi_Minh"


class Purpose(StrEnum):
    CASE_REVIEW = "case_review"
    MDT = "mdt"
    TRAINING = "training"
    OTHER = "other"


class Rsvp(StrEnum):
    NEEDS_ACTION = "needs_action"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    TENTATIVE = "tentative"


@dataclass(frozen=True, slots=True)
class Limits:
    """Booking limits. Defaults are what the UI offers; services pass the deployment's settings."""

    max_title_chars: int = 200
    max_duration: timedelta = timedelta(hours=8)
    max_occurrences: int = 200
    max_sites: int = 100
    max_people: int = 300
    max_cases: int = 50


# -- local wall-clock time ------------------------------------------------------------------------------------


def local_to_utc(day: date, at: time, tz: str, *, field: str = "start") -> datetime:
    """A wall-clock time entered in ``tz`` as a UTC instant. Refuses a time the clocks skip or pass twice
    (only zones with daylight saving have them; Vietnam has none): guessing would put a session an hour off."""
    zone = ZoneInfo(tz)
    wall = datetime.combine(day, at.replace(tzinfo=None))
    local = wall.replace(tzinfo=zone)
    if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall:
        raise ValidationFailed(f"{wall:%d/%m/%Y %H:%M} does not exist in {tz}: the clocks skip it", field=field)
    if local.utcoffset() != local.replace(fold=1).utcoffset():
        raise ValidationFailed(f"{wall:%d/%m/%Y %H:%M} happens twice in {tz}: choose another time", field=field)
    return local.astimezone(UTC)


def utc_to_local(instant: datetime, tz: str) -> datetime:
    """The naive wall-clock time of a UTC instant in ``tz``."""
    return instant.astimezone(ZoneInfo(tz)).replace(tzinfo=None)


def _wall_to_utc(wall: datetime, tz: str) -> datetime:
    # For expanded occurrences RFC 5545 decides, not the user: a skipped time takes the offset before the gap
    # and a doubled one its first instance, which is what zoneinfo does with fold=0.
    return wall.replace(tzinfo=ZoneInfo(tz), fold=0).astimezone(UTC)


# -- recurrence rules -----------------------------------------------------------------------------------------


class Frequency(StrEnum):
    DAILY = "DAILY"
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"


WEEKDAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")  # index = date.weekday()
MAX_INTERVAL = 99
_RULE_PARTS = ("FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY")
_FREQ = {Frequency.DAILY: _rrule.DAILY, Frequency.WEEKLY: _rrule.WEEKLY, Frequency.MONTHLY: _rrule.MONTHLY}


def _invalid_rule(message: str) -> ValidationFailed:
    return ValidationFailed(message, field="rrule")


@dataclass(frozen=True, slots=True)
class Rule:
    """The part of RFC 5545 RRULE the booking form offers. Always bounded: a series must end."""

    freq: Frequency
    interval: int = 1
    count: int | None = None
    until: datetime | None = None  # UTC, inclusive
    by_day: tuple[int, ...] = ()  # weekdays, Monday = 0; weekly rules only

    def __post_init__(self) -> None:
        if not 1 <= self.interval <= MAX_INTERVAL:
            raise _invalid_rule(f"INTERVAL must be a whole number from 1 to {MAX_INTERVAL}")
        if self.count is not None and self.until is not None:
            raise _invalid_rule("give COUNT or UNTIL, not both")
        if self.count is None and self.until is None:
            raise _invalid_rule("a recurring conference must end: give COUNT or UNTIL")
        if self.count is not None and self.count < 1:
            raise _invalid_rule("COUNT must be at least 1")
        if self.until is not None and self.until.utcoffset() != timedelta(0):
            raise _invalid_rule("UNTIL must be in UTC")
        if self.by_day and self.freq is not Frequency.WEEKLY:
            raise _invalid_rule("BYDAY is offered only with FREQ=WEEKLY")
        if any(not 0 <= d <= 6 for d in self.by_day):
            raise _invalid_rule("BYDAY takes the weekdays MO, TU, WE, TH, FR, SA, SU")

    def to_ical(self) -> str:
        parts = [f"FREQ={self.freq}"]
        if self.interval != 1:
            parts.append(f"INTERVAL={self.interval}")
        if self.by_day:
            parts.append("BYDAY=" + ",".join(WEEKDAY_CODES[d] for d in self.by_day))
        if self.count is not None:
            parts.append(f"COUNT={self.count}")
        if self.until is not None:
            parts.append(f"UNTIL={self.until.astimezone(UTC):%Y%m%dT%H%M%SZ}")
        return ";".join(parts)


def parse_rrule(text: str, tz: str = VIETNAM) -> Rule:
    """An RRULE value (with or without the ``RRULE:`` prefix) as a :class:`Rule`, or a clear refusal."""
    parts = _rule_parts(text)
    if "FREQ" not in parts:
        raise _invalid_rule("the recurrence rule needs FREQ (DAILY, WEEKLY or MONTHLY)")
    if parts["FREQ"] not in Frequency.__members__:
        raise _invalid_rule("FREQ must be DAILY, WEEKLY or MONTHLY")
    return Rule(
        freq=Frequency(parts["FREQ"]),
        interval=_whole(parts.get("INTERVAL", "1"), "INTERVAL"),
        count=_whole(parts["COUNT"], "COUNT") if "COUNT" in parts else None,
        until=_until(parts["UNTIL"], tz) if "UNTIL" in parts else None,
        by_day=_weekdays(parts["BYDAY"]) if "BYDAY" in parts else (),
    )


def _rule_parts(text: str) -> dict[str, str]:
    body = text.strip()
    if body.upper().startswith("RRULE:"):
        body = body[len("RRULE:") :]
    parts: dict[str, str] = {}
    for chunk in filter(None, (c.strip() for c in body.split(";"))):
        name, sep, value = chunk.partition("=")
        name, value = name.strip().upper(), value.strip().upper()
        if not sep or not name or not value:
            raise _invalid_rule(f"'{chunk[:40]}' in the recurrence rule is not NAME=VALUE")
        if name not in _RULE_PARTS:
            raise _invalid_rule(f"{name[:40]} is not offered: a rule may use FREQ, INTERVAL, COUNT, UNTIL and BYDAY")
        if name in parts:
            raise _invalid_rule(f"{name} appears twice in the recurrence rule")
        parts[name] = value
    if not parts:
        raise _invalid_rule("the recurrence rule is empty")
    return parts


def _whole(value: str, name: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 6:
        raise _invalid_rule(f"{name} must be a whole number")
    return int(value)


def _until(value: str, tz: str) -> datetime:
    """RFC 5545 wants UNTIL in UTC when DTSTART has a TZID; a bare date (what a date picker gives) means
    "through the end of that local day"."""
    try:
        if re.fullmatch(r"\d{8}T\d{6}Z", value):
            return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if re.fullmatch(r"\d{8}", value):
            day = datetime.strptime(value, "%Y%m%d").date()
            return datetime.combine(day, time(23, 59, 59), tzinfo=ZoneInfo(tz)).astimezone(UTC)
    except ValueError:
        raise _invalid_rule(f"UNTIL {value[:20]} is not a real date") from None
    raise _invalid_rule("UNTIL must be a date (YYYYMMDD) or a UTC time (YYYYMMDDTHHMMSSZ)")


def _weekdays(value: str) -> tuple[int, ...]:
    days: set[int] = set()
    for code in value.split(","):
        if code.strip() not in WEEKDAY_CODES:
            raise _invalid_rule("BYDAY takes the weekdays MO, TU, WE, TH, FR, SA, SU, without a number")
        days.add(WEEKDAY_CODES.index(code.strip()))
    return tuple(sorted(days))


def local_starts(first_local: datetime, rule: Rule | None, tz: str, *, cap: int) -> list[datetime]:
    """The original local starts of a series, at most ``cap`` of them (a one-off has just its own)."""
    if rule is None:
        return [first_local]
    until = None if rule.until is None else utc_to_local(rule.until, tz)
    # wkst is pinned: with INTERVAL>1 and BYDAY it decides which weeks count, and dateutil's default
    # follows the process locale.
    recurrence = _rrule.rrule(
        _FREQ[rule.freq],
        dtstart=first_local,
        interval=rule.interval,
        count=rule.count,
        until=until,
        byweekday=rule.by_day or None,
        wkst=_rrule.MO,
        cache=False,
    )
    return [start for start in islice(recurrence, cap)]


def check_rule(first_local: datetime, rule: Rule, tz: str, limits: Limits) -> None:
    """A rule must start on the first session and stay within the occurrence limit."""
    starts = local_starts(first_local, rule, tz, cap=limits.max_occurrences + 1)
    if not starts:
        raise _invalid_rule("the recurrence rule ends before the first session")
    if starts[0] != first_local:
        raise _invalid_rule(
            f"the first session ({first_local:%d/%m/%Y}, {WEEKDAY_CODES[first_local.weekday()]}) "
            "is not one of the rule's days"
        )
    if len(starts) > limits.max_occurrences:
        raise _invalid_rule(f"the rule gives more than {limits.max_occurrences} sessions; shorten it")


# -- booking --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgendaItem:
    """A case to review, in agenda order: a patient and/or one of their consultations, and who presents it."""

    presenter_user_id: int
    patient_id: int | None = None
    consultation_id: int | None = None


@dataclass(frozen=True, slots=True)
class BookingDraft:
    """What the coordinator entered: a local day and wall-clock times in ``tz``."""

    title: str
    purpose: Purpose
    day: date
    start: time
    end: time
    host_facility_id: int
    invited_site_ids: tuple[int, ...] = ()
    invited_user_ids: tuple[int, ...] = ()
    agenda: tuple[AgendaItem, ...] = ()
    rrule: str | None = None
    tz: str = VIETNAM


@dataclass(frozen=True, slots=True)
class Booking:
    """A validated booking; ``starts_at``/``ends_at`` are the first session's, in UTC."""

    title: str
    purpose: Purpose
    starts_at: datetime
    ends_at: datetime
    tz: str
    host_facility_id: int
    invited_site_ids: tuple[int, ...]
    invited_user_ids: tuple[int, ...]
    agenda: tuple[AgendaItem, ...]
    rule: Rule | None

    @property
    def site_ids(self) -> frozenset[int]:
        """Every room the session occupies: the host's and the invited sites'."""
        return frozenset((self.host_facility_id, *self.invited_site_ids))


def validate_booking(draft: BookingDraft, limits: Limits = Limits()) -> Booking:
    title = " ".join(draft.title.split())
    if not title:
        raise ValidationFailed("give the conference a title", field="title")
    if len(title) > limits.max_title_chars:
        raise ValidationFailed(f"the title may have at most {limits.max_title_chars} characters", field="title")
    starts_at = local_to_utc(draft.day, draft.start, draft.tz, field="start")
    ends_at = local_to_utc(draft.day, draft.end, draft.tz, field="end")
    validate_times(starts_at, ends_at, limits)
    sites = _unique(s for s in draft.invited_site_ids if s != draft.host_facility_id)
    people = _unique(draft.invited_user_ids)
    if not sites and not people:
        raise ValidationFailed("invite at least one site or one person", field="invited_site_ids")
    if len(sites) > limits.max_sites:
        raise ValidationFailed(f"at most {limits.max_sites} sites may be invited", field="invited_site_ids")
    if len(people) > limits.max_people:
        raise ValidationFailed(f"at most {limits.max_people} people may be invited", field="invited_user_ids")
    _check_agenda(draft.agenda, people, limits)
    rule = None
    if draft.rrule is not None and draft.rrule.strip():
        rule = parse_rrule(draft.rrule, draft.tz)
        check_rule(datetime.combine(draft.day, draft.start.replace(tzinfo=None)), rule, draft.tz, limits)
    return Booking(
        title, draft.purpose, starts_at, ends_at, draft.tz, draft.host_facility_id, sites, people, draft.agenda, rule
    )


def validate_times(starts_at: datetime, ends_at: datetime, limits: Limits = Limits()) -> None:
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        # A naive time would be read in the server's own zone: never the user's, and never UTC by accident.
        raise ValueError("conference times must be timezone-aware")
    if ends_at <= starts_at:
        raise ValidationFailed("a conference must end after it starts", field="end")
    if ends_at - starts_at > limits.max_duration:
        hours = limits.max_duration.total_seconds() / 3600
        raise ValidationFailed(f"a conference may last at most {hours:g} hours", field="end")


def _unique(ids: Iterable[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(ids))  # keeps the order the coordinator chose


def _check_agenda(agenda: Sequence[AgendaItem], invited: Collection[int], limits: Limits) -> None:
    if len(agenda) > limits.max_cases:
        raise ValidationFailed(f"an agenda may have at most {limits.max_cases} cases", field="agenda")
    seen: set[tuple[int | None, int | None]] = set()
    for number, item in enumerate(agenda, start=1):
        if item.patient_id is None and item.consultation_id is None:
            raise ValidationFailed(f"case {number} names no patient or consultation", field="agenda")
        if (item.patient_id, item.consultation_id) in seen:
            raise ValidationFailed(f"case {number} is already on the agenda", field="agenda")
        seen.add((item.patient_id, item.consultation_id))
        if item.presenter_user_id not in invited:
            raise ValidationFailed(f"the presenter of case {number} is not among the invited people", field="agenda")


# -- series and occurrences -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Override:
    """One occurrence moved: RFC 5545's overriding VEVENT with a RECURRENCE-ID."""

    recurrence_id: datetime  # original local start
    starts_at: datetime  # UTC
    ends_at: datetime


@dataclass(frozen=True, slots=True)
class Series:
    """A booking as the calendar sees it. A draft not saved yet uses ``booking_id`` 0."""

    booking_id: int
    starts_at: datetime  # the first session, UTC
    ends_at: datetime
    tz: str = VIETNAM
    rule: Rule | None = None
    exdates: frozenset[datetime] = frozenset()  # cancelled recurrence ids
    overrides: tuple[Override, ...] = ()

    @property
    def first_local(self) -> datetime:
        return utc_to_local(self.starts_at, self.tz)


@dataclass(frozen=True, slots=True)
class Occurrence:
    booking_id: int
    recurrence_id: datetime  # original local start, naive, in the series' zone
    starts_at: datetime  # UTC
    ends_at: datetime
    moved: bool = False


# A guard for series built without validate_booking; validated ones stay far below it.
_EXPANSION_CAP = 10_000


def series_of(booking_id: int, booking: Booking) -> Series:
    return Series(booking_id, booking.starts_at, booking.ends_at, booking.tz, booking.rule)


def recurrence_ids(series: Series) -> list[datetime]:
    """Every original local start, cancelled ones included."""
    return local_starts(series.first_local, series.rule, series.tz, cap=_EXPANSION_CAP)


def cancel_occurrence(series: Series, recurrence_id: datetime) -> Series:
    """Cancel one session (an EXDATE); a move of it is dropped with it."""
    if recurrence_id not in recurrence_ids(series):
        raise ValidationFailed("there is no session at that time in this series", field="recurrence_id")
    overrides = tuple(o for o in series.overrides if o.recurrence_id != recurrence_id)
    return replace(series, exdates=series.exdates | {recurrence_id}, overrides=overrides)


def move_occurrence(
    series: Series, recurrence_id: datetime, starts_at: datetime, ends_at: datetime, limits: Limits = Limits()
) -> Series:
    """Move one session; it keeps its recurrence id, so invites and reminders still know it."""
    if recurrence_id not in recurrence_ids(series):
        raise ValidationFailed("there is no session at that time in this series", field="recurrence_id")
    if recurrence_id in series.exdates:
        raise ValidationFailed("that session was cancelled", field="recurrence_id")
    validate_times(starts_at, ends_at, limits)
    others = tuple(o for o in series.overrides if o.recurrence_id != recurrence_id)
    moved = Override(recurrence_id, starts_at.astimezone(UTC), ends_at.astimezone(UTC))
    return replace(series, overrides=(*others, moved))


def expand(series: Series, window_start: datetime, window_end: datetime) -> list[Occurrence]:
    """The sessions overlapping [window_start, window_end), in UTC, by start. Expanded in local time; a moved
    session counts where it was moved to, a cancelled one not at all."""
    duration = series.ends_at - series.starts_at
    moves = {o.recurrence_id: o for o in series.overrides}
    found = []
    for rid in recurrence_ids(series):
        if rid in series.exdates:
            continue
        if rid in moves:
            occurrence = Occurrence(series.booking_id, rid, moves[rid].starts_at, moves[rid].ends_at, moved=True)
        else:
            starts_at = _wall_to_utc(rid, series.tz)
            # RFC 5545: every instance lasts exactly as long as the first.
            occurrence = Occurrence(series.booking_id, rid, starts_at, starts_at + duration)
        if overlaps(occurrence.starts_at, occurrence.ends_at, window_start, window_end):
            found.append(occurrence)
    return sorted(found, key=lambda o: (o.starts_at, o.recurrence_id))


def overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    """Half-open intervals: a session ending at 15:00 does not clash with one starting at 15:00."""
    return a_start < b_end and b_start < a_end


# -- conflicts ------------------------------------------------------------------------------------------------


class ConflictKind(StrEnum):
    PERSON_DOUBLE_BOOKED = "person_double_booked"
    PERSON_ON_CALL = "person_on_call"
    SITE_BUSY = "site_busy"


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A session of another booking, with the people and rooms (host and invited sites) it takes."""

    occurrence: Occurrence
    user_ids: frozenset[int]
    site_ids: frozenset[int]


@dataclass(frozen=True, slots=True)
class OnCallShift:
    user_id: int
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True, slots=True)
class ScheduleConflict:
    """A warning shown before booking; the coordinator may book anyway. (Named apart from
    ``errors.Conflict``, the exception for lost races.)"""

    kind: ConflictKind
    recurrence_id: datetime  # the candidate session's
    starts_at: datetime
    user_id: int | None = None
    site_id: int | None = None
    other_booking_id: int | None = None


def conflicts(
    candidates: Iterable[Occurrence],
    existing: Iterable[Scheduled],
    on_call_shifts: Iterable[OnCallShift],
    invited_user_ids: Iterable[int],
    site_ids: Iterable[int],
) -> list[ScheduleConflict]:
    """Who and which rooms are already taken during the candidate sessions. ``site_ids`` are the rooms the
    candidate takes (``Booking.site_ids``). Sessions of the candidate's own booking are skipped, so editing a
    booking does not warn about itself."""
    people, sites = frozenset(invited_user_ids), frozenset(site_ids)
    others, shifts = list(existing), [s for s in on_call_shifts if s.user_id in people]
    found: set[ScheduleConflict] = set()
    for occ in candidates:
        for other in others:
            theirs = other.occurrence
            if theirs.booking_id == occ.booking_id or not overlaps(
                occ.starts_at, occ.ends_at, theirs.starts_at, theirs.ends_at
            ):
                continue
            for user in people & other.user_ids:
                found.add(_clash(ConflictKind.PERSON_DOUBLE_BOOKED, occ, user=user, other=theirs.booking_id))
            for site in sites & other.site_ids:
                found.add(_clash(ConflictKind.SITE_BUSY, occ, site=site, other=theirs.booking_id))
        for shift in shifts:
            if overlaps(occ.starts_at, occ.ends_at, shift.starts_at, shift.ends_at):
                found.add(_clash(ConflictKind.PERSON_ON_CALL, occ, user=shift.user_id))
    kinds = list(ConflictKind)
    return sorted(
        found,
        key=lambda c: (c.starts_at, kinds.index(c.kind), c.user_id or 0, c.site_id or 0, c.other_booking_id or 0),
    )


def _clash(
    kind: ConflictKind, occ: Occurrence, *, user: int | None = None, site: int | None = None, other: int | None = None
) -> ScheduleConflict:
    return ScheduleConflict(kind, occ.recurrence_id, occ.starts_at, user, site, other)


# -- reminders ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReminderKey:
    """What makes a reminder unique. The start is part of it: a moved session gets fresh reminders."""

    booking_id: int
    recurrence_id: datetime
    offset: timedelta
    starts_at: datetime

    @property
    def text(self) -> str:
        """Deterministic, for a unique database column: every process computes the same key."""
        seconds = int(self.offset.total_seconds())
        return f"{self.booking_id}/{self.recurrence_id:%Y%m%dT%H%M%S}/{seconds}/{self.starts_at:%Y%m%dT%H%M%SZ}"


@dataclass(frozen=True, slots=True)
class Reminder:
    key: ReminderKey
    occurrence: Occurrence
    at: datetime


def reminder_times(starts_at: datetime, offsets: Iterable[timedelta]) -> list[tuple[timedelta, datetime]]:
    """(offset, when) for each offset before the start, earliest first."""
    unique = set(offsets)
    if any(o < timedelta(0) for o in unique):
        raise ValidationFailed("reminders are sent before the start, not after", field="offsets")
    return sorted(((o, starts_at - o) for o in unique), key=lambda pair: pair[1])


def due_reminders(
    occurrences: Iterable[Occurrence],
    offsets: Iterable[timedelta],
    already_sent: Set[ReminderKey],
    now: datetime,
    grace: timedelta,
) -> list[Reminder]:
    """The reminders to send now. Per session only the latest whose time has come: after a restart one timely
    "starts in 10 minutes" beats a stale "tomorrow" arriving with it (the missed one is never due again,
    since a later one has come). Nothing once a session has been running longer than ``grace``."""
    wanted = list(offsets)
    due = []
    for occ in occurrences:
        if now >= occ.starts_at + grace:
            continue
        come = [(offset, at) for offset, at in reminder_times(occ.starts_at, wanted) if at <= now]
        if not come:
            continue
        offset, at = come[-1]
        key = ReminderKey(occ.booking_id, occ.recurrence_id, offset, occ.starts_at)
        if key not in already_sent:
            due.append(Reminder(key, occ, at))
    return sorted(due, key=lambda r: (r.at, r.key.booking_id, r.key.recurrence_id))


def next_reminder_at(occurrences: Iterable[Occurrence], offsets: Iterable[timedelta], now: datetime) -> datetime | None:
    """When a reminder next falls due after ``now``: how long a scheduler may sleep."""
    wanted = list(offsets)
    later = [at for occ in occurrences for _, at in reminder_times(occ.starts_at, wanted) if at > now]
    return min(later, default=None)


# -- the conference room --------------------------------------------------------------------------------------


class Entry(StrEnum):
    ENTER = "enter"
    LOBBY = "lobby"  # wait for the host to admit
    CLOSED = "closed"


ROOM_OPENS_MINUTES = 15


def room_opens_at(starts_at: datetime, minutes: int = ROOM_OPENS_MINUTES) -> datetime:
    return starts_at - timedelta(minutes=minutes)


def may_enter(
    actor_is_invited: bool,
    actor_is_host: bool,
    admitted: bool,
    now: datetime,
    starts_at: datetime,
    ends_at: datetime,
    *,
    opens_minutes: int = ROOM_OPENS_MINUTES,
    late_after: timedelta = timedelta(minutes=10),
) -> Entry:
    """The room opens ``opens_minutes`` before the start and closes at the end. The host and those the host
    admitted walk in; invitees walk in until ``late_after`` past the start, then wait in the lobby like
    anyone uninvited, so a late arrival does not interrupt a case without the host knowing."""
    if now < room_opens_at(starts_at, opens_minutes) or now >= ends_at:
        return Entry.CLOSED
    if actor_is_host or admitted:
        return Entry.ENTER
    if actor_is_invited and now < starts_at + late_after:
        return Entry.ENTER
    return Entry.LOBBY
