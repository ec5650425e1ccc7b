"""iCalendar output, read back with the icalendar package the way a calendar app would read it."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from icalendar import Calendar, Event

from teleconsult.calendar import (
    Attendee,
    AttendeeRole,
    CaseSummary,
    EventText,
    FeedEntry,
    Person,
    agenda_description,
    cancel,
    feed,
    invite,
    uid_for,
)
from teleconsult.domain.conference import (
    AgendaItem,
    BookingDraft,
    Purpose,
    Rsvp,
    Series,
    cancel_occurrence,
    move_occurrence,
    series_of,
    validate_booking,
)
from teleconsult.domain.errors import ValidationFailed

DOMAIN = "teleconsult.bachmai.vn"
STAMP = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
HOA = Person("Coordinator Trần Thị Hoa", "mailto:hoa@bachmai.vn")
LAN = Person("Dr Phạm Lan", "mailto:lan@bachmai.vn")
MINH = Person("Dr Lê Minh", "mailto:minh@thaibinh.vn")
PEOPLE = [
    Attendee(LAN, Rsvp.ACCEPTED, AttendeeRole.CHAIR),
    Attendee(MINH, Rsvp.TENTATIVE),
    Attendee(Person("Dr Vũ An", "mailto:an@namdinh.vn"), Rsvp.DECLINED, AttendeeRole.OPTIONAL),
    Attendee(Person("Nurse Đỗ Thu", "mailto:thu@namdinh.vn")),
]
# The patient on the agenda, as the record knows them: none of it may reach a calendar.
PATIENT_NAME, PATIENT_CCCD = "Nguyễn Văn Bình", "001203004567"
PATIENT = (PATIENT_NAME, PATIENT_CCCD)
TEXT = EventText(
    summary="Weekly cardiology case review",
    description=agenda_description([CaseSummary("cardiology", 62, "male")], "Bach Mai with its provinces"),
    location="Teleconsult conference room",
    url=f"https://{DOMAIN}/conferences/7",
)


def weekly() -> Series:
    booking = validate_booking(
        BookingDraft(
            title="Weekly cardiology case review",
            purpose=Purpose.CASE_REVIEW,
            day=date(2026, 12, 1),
            start=time(14, 0),
            end=time(15, 30),
            host_facility_id=1,
            invited_site_ids=(2, 3),
            invited_user_ids=(10, 11),
            agenda=(AgendaItem(presenter_user_id=10, patient_id=501),),
            rrule="FREQ=WEEKLY;BYDAY=TU;COUNT=8",
        )
    )
    return series_of(7, booking)


def parse(ics: bytes) -> tuple[Calendar, list[Event]]:
    calendar = Calendar.from_ical(ics)
    return calendar, list(calendar.walk("VEVENT"))


def send(series: Series, sequence: int) -> bytes:
    return invite(series, TEXT, PEOPLE, HOA, sequence=sequence, dtstamp=STAMP, domain=DOMAIN)


def test_an_invitation_is_a_request_with_a_vietnam_timezone_and_the_right_instants() -> None:
    calendar, (event,) = parse(send(weekly(), 0))
    assert calendar["METHOD"] == "REQUEST"
    (zone,) = calendar.walk("VTIMEZONE")
    assert zone["TZID"] == "Asia/Ho_Chi_Minh"
    assert all(part["TZOFFSETTO"].td == timedelta(hours=7) for part in zone.walk("STANDARD"))
    assert not zone.walk("DAYLIGHT")
    assert event["DTSTART"].params["TZID"] == "Asia/Ho_Chi_Minh"
    assert event["DTSTART"].dt.astimezone(UTC) == datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    assert event["DTSTART"].dt.replace(tzinfo=None) == datetime(2026, 12, 1, 14, 0)
    assert event["DTEND"].dt.astimezone(UTC) == datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    assert event["DTSTAMP"].dt == STAMP
    assert event["RRULE"].to_ical() == b"FREQ=WEEKLY;COUNT=8;BYDAY=TU"
    assert event["STATUS"] == "CONFIRMED"


def test_the_uid_stays_and_the_sequence_rises_across_edits() -> None:
    first = weekly()
    edited = cancel_occurrence(first, datetime(2026, 12, 15, 14))
    edited = move_occurrence(
        edited,
        datetime(2026, 12, 22, 14),
        datetime(2026, 12, 23, 7, tzinfo=UTC),
        datetime(2026, 12, 23, 8, 30, tzinfo=UTC),
    )
    _, (before,) = parse(send(first, 0))
    _, after = parse(send(edited, 1))
    assert {str(e["UID"]) for e in after} == {str(before["UID"])} == {uid_for(7, DOMAIN)}
    assert [int(e["SEQUENCE"]) for e in after] == [1, 1]
    assert int(before["SEQUENCE"]) == 0


def test_a_cancelled_session_is_an_exdate_and_a_moved_one_an_overriding_event() -> None:
    edited = cancel_occurrence(weekly(), datetime(2026, 12, 15, 14))
    edited = move_occurrence(
        edited,
        datetime(2026, 12, 22, 14),
        datetime(2026, 12, 23, 7, tzinfo=UTC),
        datetime(2026, 12, 23, 8, 30, tzinfo=UTC),
    )
    _, (master, moved) = parse(send(edited, 1))
    exdates = [d.dt for d in master["EXDATE"].dts]
    assert [d.astimezone(UTC) for d in exdates] == [datetime(2026, 12, 15, 7, tzinfo=UTC)]
    assert moved["RECURRENCE-ID"].params["TZID"] == "Asia/Ho_Chi_Minh"
    assert moved["RECURRENCE-ID"].dt.replace(tzinfo=None) == datetime(2026, 12, 22, 14)
    assert moved["DTSTART"].dt.astimezone(UTC) == datetime(2026, 12, 23, 7, tzinfo=UTC)
    assert "RRULE" not in moved


def test_one_attendee_per_person_each_asked_to_reply_with_their_answer_so_far() -> None:
    _, (event,) = parse(send(weekly(), 0))
    attendees = event["ATTENDEE"]
    assert len(attendees) == len(PEOPLE)
    by_address = {str(a): a.params for a in attendees}
    assert by_address["mailto:lan@bachmai.vn"]["PARTSTAT"] == "ACCEPTED"
    assert by_address["mailto:lan@bachmai.vn"]["ROLE"] == "CHAIR"
    assert by_address["mailto:lan@bachmai.vn"]["CN"] == "Dr Phạm Lan"
    assert by_address["mailto:minh@thaibinh.vn"]["PARTSTAT"] == "TENTATIVE"
    assert by_address["mailto:an@namdinh.vn"]["PARTSTAT"] == "DECLINED"
    assert by_address["mailto:thu@namdinh.vn"]["PARTSTAT"] == "NEEDS-ACTION"
    assert all(p["RSVP"] == "TRUE" and p["CUTYPE"] == "INDIVIDUAL" for p in by_address.values())
    assert str(event["ORGANIZER"]) == "mailto:hoa@bachmai.vn"
    assert event["ORGANIZER"].params["CN"] == "Coordinator Trần Thị Hoa"


def test_cancelling_the_series_sends_method_cancel_with_the_same_uid_and_a_higher_sequence() -> None:
    ics = cancel(weekly(), TEXT, PEOPLE, HOA, sequence=2, dtstamp=STAMP, domain=DOMAIN)
    calendar, (event,) = parse(ics)
    assert calendar["METHOD"] == "CANCEL"
    assert event["STATUS"] == "CANCELLED"
    assert str(event["UID"]) == uid_for(7, DOMAIN)
    assert int(event["SEQUENCE"]) == 2
    assert "RECURRENCE-ID" not in event
    assert len(event["ATTENDEE"]) == len(PEOPLE)


def test_cancelling_one_session_names_it_by_its_recurrence_id() -> None:
    ics = cancel(
        weekly(),
        TEXT,
        PEOPLE[:1],
        HOA,
        sequence=3,
        dtstamp=STAMP,
        domain=DOMAIN,
        recurrence_id=datetime(2026, 12, 8, 14),
    )
    calendar, (event,) = parse(ics)
    assert calendar["METHOD"] == "CANCEL"
    assert event["RECURRENCE-ID"].dt.astimezone(UTC) == datetime(2026, 12, 8, 7, tzinfo=UTC)
    assert event["DTSTART"].dt.astimezone(UTC) == datetime(2026, 12, 8, 7, tzinfo=UTC)
    assert "RRULE" not in event


def test_a_feed_publishes_many_conferences_without_attendee_addresses() -> None:
    other = Series(8, datetime(2026, 12, 3, 2, tzinfo=UTC), datetime(2026, 12, 3, 3, tzinfo=UTC))
    ics = feed(
        [FeedEntry(weekly(), TEXT, 1), FeedEntry(other, EventText("ECHO training: stroke"), 4, cancelled=True)],
        name="Dr Phạm Lan — teleconferences",
        dtstamp=STAMP,
        domain=DOMAIN,
    )
    calendar, events = parse(ics)
    assert calendar["METHOD"] == "PUBLISH"
    assert calendar["X-WR-CALNAME"] == "Dr Phạm Lan — teleconferences"
    assert [(str(e["UID"]), e["STATUS"]) for e in events] == [
        (uid_for(7, DOMAIN), "CONFIRMED"),
        (uid_for(8, DOMAIN), "CANCELLED"),
    ]
    assert all("ATTENDEE" not in e for e in events)
    assert len(calendar.walk("VTIMEZONE")) == 1


def test_the_agenda_tells_the_case_not_the_patient() -> None:
    ics = invite(
        weekly(), TEXT, PEOPLE, HOA, sequence=0, dtstamp=STAMP, domain=DOMAIN, patient_identifiers=PATIENT
    ).decode()
    _, (event,) = parse(ics.encode())
    assert "Case 1: cardiology, 62-year-old male" in str(event["DESCRIPTION"])
    unfolded = ics.replace("\r\n ", "")
    assert PATIENT_NAME not in unfolded and "Nguyen Van Binh" not in unfolded and PATIENT_CCCD not in unfolded


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (EventText("Review: Nguyễn Văn Bình"), "summary"),
        (EventText("Review", description="Case 1: NGUYEN VAN BINH, 62"), "description"),
        (EventText("Review", description="Case 1: CCCD 001203004567"), "description"),
    ],
)
def test_a_text_naming_a_patient_on_the_agenda_is_refused_with_or_without_diacritics(
    text: EventText, field: str
) -> None:
    with pytest.raises(ValidationFailed, match="leave the hospital") as refused:
        invite(weekly(), text, PEOPLE, HOA, sequence=0, dtstamp=STAMP, domain=DOMAIN, patient_identifiers=PATIENT)
    assert refused.value.field == field
    with pytest.raises(ValidationFailed):
        cancel(weekly(), text, PEOPLE, HOA, sequence=1, dtstamp=STAMP, domain=DOMAIN, patient_identifiers=PATIENT)
    with pytest.raises(ValidationFailed):
        feed([FeedEntry(weekly(), text, 1)], name="x", dtstamp=STAMP, domain=DOMAIN, patient_identifiers=PATIENT)


def test_place_names_and_words_that_merely_contain_part_of_a_name_are_not_refused() -> None:
    invite(
        weekly(),
        EventText("Thái Bình and Vũng Tàu sites: review with Dr Vũ Anh"),
        PEOPLE,
        HOA,
        sequence=0,
        dtstamp=STAMP,
        domain=DOMAIN,
        patient_identifiers=("Vũ An", PATIENT_NAME),
    )


def test_the_uid_domain_must_be_a_host_name() -> None:
    with pytest.raises(ValueError):
        uid_for(7, "bad domain\r\nX-EVIL:1")
