"""iCalendar (RFC 5545, with RFC 5546 methods) for teleconferences: invitations, cancellations and the
private subscription feed.

Privacy rule: calendars sync to third-party servers (Google, Microsoft, Apple, a hospital's Exchange), so
nothing that identifies a patient goes into any text we emit — no name, citizen ID, insurance number or
record number. The agenda is told at the level "Case 1: cardiology, 62-year-old male": build it with
:func:`agenda_description` from :class:`CaseSummary`, which has no place for an identity. Titles are typed by
coordinators, so every function also takes ``patient_identifiers`` (names, citizen IDs, insurance numbers of the
patients on the agenda) and refuses text that mentions one, with or without Vietnamese diacritics.

One conference is one UID for its whole life (derived from the booking id and the deployment's domain), so an
edit replaces the event in the attendee's calendar instead of adding a second one; each edit or cancellation
must carry a higher SEQUENCE than the last one sent. Times are written with TZID=<booking zone> and a
VTIMEZONE, so calendar apps show 14:00 in Vietnam whatever their own zone.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, Timezone, vCalAddress, vRecur, vText

from teleconsult.domain.conference import Rsvp, Series, recurrence_ids, utc_to_local
from teleconsult.domain.errors import ValidationFailed

PRODID = "-//teleconsult//Teleconference//EN"
FEED_REFRESH = timedelta(hours=1)


class Method(StrEnum):
    REQUEST = "REQUEST"
    CANCEL = "CANCEL"
    PUBLISH = "PUBLISH"


class AttendeeRole(StrEnum):
    CHAIR = "CHAIR"
    REQUIRED = "REQ-PARTICIPANT"
    OPTIONAL = "OPT-PARTICIPANT"


_PARTSTAT = {
    Rsvp.NEEDS_ACTION: "NEEDS-ACTION",
    Rsvp.ACCEPTED: "ACCEPTED",
    Rsvp.DECLINED: "DECLINED",
    Rsvp.TENTATIVE: "TENTATIVE",
}


@dataclass(frozen=True, slots=True)
class Person:
    """An organizer or attendee. ``address`` is a cal-address URI, usually ``mailto:``."""

    name: str
    address: str


@dataclass(frozen=True, slots=True)
class Attendee:
    person: Person
    rsvp: Rsvp = Rsvp.NEEDS_ACTION
    role: AttendeeRole = AttendeeRole.REQUIRED


@dataclass(frozen=True, slots=True)
class EventText:
    """What the calendar shows. Must not identify a patient (see the module's privacy rule)."""

    summary: str
    description: str = ""
    location: str = ""
    url: str | None = None  # the join link; it needs the user's own login, so it leaks nothing


@dataclass(frozen=True, slots=True)
class CaseSummary:
    """A case as a calendar may tell it: specialty, age and sex, never who."""

    specialty: str
    age_years: int | None = None
    sex: str | None = None  # "male", "female", as the caller wants it shown


@dataclass(frozen=True, slots=True)
class FeedEntry:
    series: Series
    text: EventText
    sequence: int
    cancelled: bool = False


def agenda_description(cases: Sequence[CaseSummary], intro: str = "") -> str:
    """ "Case 1: cardiology, 62-year-old male", one line per case, after an optional introduction."""
    lines = [intro] if intro else []
    for number, case in enumerate(cases, start=1):
        who = " ".join(p for p in (f"{case.age_years}-year-old" if case.age_years is not None else "", case.sex) if p)
        lines.append(f"Case {number}: {case.specialty}" + (f", {who}" if who else ""))
    return "\n".join(lines)


def uid_for(booking_id: int, domain: str) -> str:
    """Stable for the booking's whole life; the domain keeps two deployments' UIDs apart."""
    if not re.fullmatch(r"[A-Za-z0-9.-]+", domain):
        raise ValueError("the calendar domain must be a host name, e.g. teleconsult.bachmai.vn")
    return f"conference-{booking_id}@{domain}"


def invite(
    series: Series,
    text: EventText,
    attendees: Iterable[Attendee],
    organizer: Person,
    *,
    sequence: int,
    dtstamp: datetime,
    domain: str,
    patient_identifiers: Collection[str] = (),
    method: Method = Method.REQUEST,
) -> bytes:
    """A METHOD:REQUEST invitation for a whole series: the master event (RRULE, EXDATE for cancelled
    sessions) and one overriding event per moved session. Send it again, with ``sequence`` raised, after
    every change."""
    check_private(text, patient_identifiers)
    people = list(attendees)
    calendar = _calendar(method, [series])
    for event in _series_events(series, text, sequence, dtstamp, domain, status="CONFIRMED"):
        _add_people(event, organizer, people)
        calendar.add_component(event)
    return bytes(calendar.to_ical())


def cancel(
    series: Series,
    text: EventText,
    attendees: Iterable[Attendee],
    organizer: Person,
    *,
    sequence: int,
    dtstamp: datetime,
    domain: str,
    recurrence_id: datetime | None = None,
    patient_identifiers: Collection[str] = (),
) -> bytes:
    """A METHOD:CANCEL for the whole series, or for one session when ``recurrence_id`` is given. Also what an
    attendee removed from the invitation list receives. ``sequence`` must be above the last one sent."""
    check_private(text, patient_identifiers)
    calendar = _calendar(Method.CANCEL, [series])
    event = _event(series, text, sequence, dtstamp, domain, status="CANCELLED")
    if recurrence_id is None:
        if series.rule is not None:
            event.add("rrule", vRecur.from_ical(series.rule.to_ical()))
    else:
        moved = {o.recurrence_id: o for o in series.overrides}.get(recurrence_id)
        duration = series.ends_at - series.starts_at
        starts_at = moved.starts_at if moved else _local(recurrence_id, series.tz).astimezone(UTC)
        _set_times(event, starts_at, moved.ends_at if moved else starts_at + duration, series.tz)
        event.add("recurrence-id", _local(recurrence_id, series.tz))
    _add_people(event, organizer, list(attendees))
    calendar.add_component(event)
    return bytes(calendar.to_ical())


def feed(
    entries: Iterable[FeedEntry],
    *,
    name: str,
    dtstamp: datetime,
    domain: str,
    patient_identifiers: Collection[str] = (),
) -> bytes:
    """A user's subscription feed (METHOD:PUBLISH): their conferences, cancelled ones marked so. No attendee
    list: a feed is read by a calendar app, not answered, and need not carry colleagues' addresses."""
    items = list(entries)
    for entry in items:
        check_private(entry.text, patient_identifiers)
    calendar = _calendar(Method.PUBLISH, [e.series for e in items])
    calendar.add("x-wr-calname", name)
    calendar.add("refresh-interval", FEED_REFRESH, parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", FEED_REFRESH)
    for entry in items:
        status = "CANCELLED" if entry.cancelled else "CONFIRMED"
        for event in _series_events(entry.series, entry.text, entry.sequence, dtstamp, domain, status=status):
            calendar.add_component(event)
    return bytes(calendar.to_ical())


def _series_events(
    series: Series, text: EventText, sequence: int, dtstamp: datetime, domain: str, *, status: str
) -> list[Event]:
    """The master event (RRULE, EXDATE for cancelled sessions) and one overriding event per moved session."""
    master = _event(series, text, sequence, dtstamp, domain, status=status)
    if series.rule is not None:
        master.add("rrule", vRecur.from_ical(series.rule.to_ical()))
    if series.exdates:
        master.add("exdate", [_local(rid, series.tz) for rid in sorted(series.exdates)])
    events = [master]
    for moved in sorted(series.overrides, key=lambda o: o.recurrence_id):
        event = _event(series, text, sequence, dtstamp, domain, status=status)
        _set_times(event, moved.starts_at, moved.ends_at, series.tz)
        event.add("recurrence-id", _local(moved.recurrence_id, series.tz))
        events.append(event)
    return events


def check_private(text: EventText, patient_identifiers: Collection[str]) -> None:
    """Refuse calendar text that mentions a patient's name or number, diacritics or not ("Nguyễn Văn An" and
    "Nguyen Van An" are the same person to a reader). Whole words only, so "An" does not catch "Anh"."""
    fields = {"summary": text.summary, "description": text.description, "location": text.location}
    fields["url"] = text.url or ""
    for name in filter(None, (_fold(n) for n in patient_identifiers)):
        pattern = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)")
        for field, value in fields.items():
            if pattern.search(_fold(value)):
                raise ValidationFailed(
                    "calendar invitations leave the hospital: remove who the patient is from the "
                    f"{field} (describe the case instead, e.g. 'cardiology, 62-year-old male')",
                    field=field,
                )


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.casefold().replace("đ", "d"))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.split())


def _calendar(method: Method, series: Sequence[Series]) -> Calendar:
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", str(method))
    for tz, (first, last) in sorted(_spans(series).items()):
        # Built from the tz database for the span the events cover: for Vietnam one STANDARD block (+07).
        calendar.add_component(Timezone.from_tzid(tz, first_date=first, last_date=last))
    return calendar


def _spans(series: Sequence[Series]) -> dict[str, tuple[date, date]]:
    spans: dict[str, tuple[date, date]] = {}
    for s in series:
        starts = [*recurrence_ids(s), *(utc_to_local(o.starts_at, s.tz) for o in s.overrides)]
        first, last = min(starts).date() - timedelta(days=1), max(starts).date() + timedelta(days=2)
        if s.tz in spans:
            first, last = min(first, spans[s.tz][0]), max(last, spans[s.tz][1])
        spans[s.tz] = (first, last)
    return spans


def _event(series: Series, text: EventText, sequence: int, dtstamp: datetime, domain: str, *, status: str) -> Event:
    event = Event()
    event.add("uid", uid_for(series.booking_id, domain))
    event.add("sequence", sequence)
    event.add("dtstamp", dtstamp.astimezone(UTC))
    _set_times(event, series.starts_at, series.ends_at, series.tz)
    event.add("summary", text.summary)
    if text.description:
        event.add("description", text.description)
    if text.location:
        event.add("location", text.location)
    if text.url:
        event.add("url", text.url)
    event.add("status", status)
    event.add("transp", "OPAQUE")
    return event


def _set_times(event: Event, starts_at: datetime, ends_at: datetime, tz: str) -> None:
    zone = ZoneInfo(tz)
    event.pop("dtstart", None)
    event.pop("dtend", None)
    event.add("dtstart", starts_at.astimezone(zone))
    event.add("dtend", ends_at.astimezone(zone))


def _local(wall: datetime, tz: str) -> datetime:
    return wall.replace(tzinfo=ZoneInfo(tz))


def _add_people(event: Event, organizer: Person, attendees: Sequence[Attendee]) -> None:
    chair = vCalAddress(organizer.address)
    chair.params["CN"] = vText(organizer.name)
    event.add("organizer", chair)
    for attendee in attendees:
        address = vCalAddress(attendee.person.address)
        address.params["CN"] = vText(attendee.person.name)
        address.params["CUTYPE"] = "INDIVIDUAL"
        address.params["ROLE"] = str(attendee.role)
        address.params["PARTSTAT"] = _PARTSTAT[attendee.rsvp]
        address.params["RSVP"] = "TRUE"
        event.add("attendee", address)
