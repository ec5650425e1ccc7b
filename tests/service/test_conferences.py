"""Teleconferences through the service, on SQLite and PostgreSQL, with a fake clock: booking and who may,
conflict warnings, edits raising SEQUENCE under a stable UID, cancellations, RSVP, the private feed, and
reminders sent once across two processes and again after a restart."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from icalendar import Calendar

from teleconsult.clock import FakeClock
from teleconsult.domain.conference import AgendaItem, BookingDraft, ConflictKind, Purpose, Rsvp
from teleconsult.domain.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from teleconsult.services import Services
from teleconsult.settings import Settings
from teleconsult.storage.models import (
    ConferenceReminderRow,
    ConferenceRow,
    NotificationRow,
    OnCallShiftRow,
)
from tests.conftest import PATIENT_DRAFT, MakeServices, World
from tests.service.support import audit_rows, count, rows

FIRST_DAY = date(2026, 12, 1)  # a Tuesday; 14:00 in Vietnam is 07:00 UTC
FIRST_START_UTC = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)


def draft(world: World, **changes: Any) -> BookingDraft:
    base = BookingDraft(
        title="Weekly cardiology case review",
        purpose=Purpose.CASE_REVIEW,
        day=FIRST_DAY,
        start=time(14, 0),
        end=time(15, 30),
        host_facility_id=world.bvtw.id,
        invited_site_ids=(world.tyt_a.id, world.bvt_lc.id),
        invited_user_ids=(world.clin_a.user_id, world.spec_cardio.user_id),
        agenda=(AgendaItem(world.clin_a.user_id, patient_id=world.patient.id),),
        rrule="FREQ=WEEKLY;BYDAY=TU;COUNT=4",
    )
    return replace(base, **changes)


def events(ics: bytes) -> tuple[Calendar, list[Any]]:
    calendar = Calendar.from_ical(ics)
    return calendar, [c for c in calendar.walk("VEVENT")]


async def test_a_coordinator_books_a_series_and_a_clinician_is_refused_and_audited(
    services: Services, world: World
) -> None:
    booked = await services.conferences.book(world.coord, draft(world), source="t")
    conference = booked.conference
    assert conference.starts_at == FIRST_START_UTC
    assert conference.uid == f"conference-{conference.id}@{services.settings.calendar_domain}"
    assert conference.sequence == 0 and conference.status == "booked"
    assert set(conference.site_ids) == {world.tyt_a.id, world.bvt_lc.id}
    assert {i.user_id: i.rsvp for i in conference.invitees} == {
        world.clin_a.user_id: Rsvp.NEEDS_ACTION,
        world.spec_cardio.user_id: Rsvp.NEEDS_ACTION,
    }
    assert [a.action for a in await audit_rows(services, action="conference.book")] == ["conference.book"]

    with pytest.raises(PermissionDenied):
        await services.conferences.book(world.clin_a, draft(world), source="t")
    denied = await audit_rows(services, action="conference.book", outcome="denied")
    assert [d.actor_user_id for d in denied] == [world.clin_a.user_id]
    assert await count(services, ConferenceRow) == 1

    upcoming = await services.conferences.upcoming(world.clin_a, days=60)
    assert [u.starts_at for u in upcoming] == [FIRST_START_UTC + timedelta(weeks=w) for w in range(4)]


async def test_a_title_naming_the_patient_is_refused(services: Services, world: World) -> None:
    with pytest.raises(ValidationFailed):
        await services.conferences.book(world.coord, draft(world, title="Case of Tran Thi Hong Nhung"), source="t")
    assert await count(services, ConferenceRow) == 0


async def test_conflicts_are_reported_and_the_booking_is_still_saved(
    services: Services, world: World, clock: FakeClock
) -> None:
    first = await services.conferences.book(world.coord, draft(world), source="t")
    assert first.warnings == []
    async with services.db.transaction() as tx:
        tx.add(
            OnCallShiftRow(
                hub_id=world.bvtw.id,
                specialty="neurology",
                user_id=world.spec_neuro.user_id,
                starts_at=FIRST_START_UTC - timedelta(hours=1),
                ends_at=FIRST_START_UTC + timedelta(hours=11),
                created_at=clock.now(),
            )
        )
    # A one-off MDT on the first Tuesday, half an hour later: same cardiologist, same commune station.
    second = await services.conferences.book(
        world.coord,
        draft(
            world,
            title="MDT",
            purpose=Purpose.MDT,
            start=time(14, 30),
            end=time(16, 0),
            invited_site_ids=(world.tyt_a.id,),
            invited_user_ids=(world.spec_cardio.user_id, world.spec_neuro.user_id),
            agenda=(),
            rrule=None,
        ),
        source="t",
    )
    found = {(w.kind, w.user_id, w.site_id, w.other_booking_id) for w in second.warnings}
    other = first.conference.id
    assert (ConflictKind.PERSON_DOUBLE_BOOKED, world.spec_cardio.user_id, None, other) in found
    assert (ConflictKind.SITE_BUSY, None, world.tyt_a.id, other) in found
    assert (ConflictKind.SITE_BUSY, None, world.bvtw.id, other) in found  # the host's room
    assert (ConflictKind.PERSON_ON_CALL, world.spec_neuro.user_id, None, None) in found
    assert await count(services, ConferenceRow) == 2


async def test_an_edit_raises_the_sequence_under_the_same_uid(services: Services, world: World) -> None:
    booked = (await services.conferences.book(world.coord, draft(world), source="t")).conference
    _, before = events(await services.conferences.invitation(world.clin_a, booked.id, source="t"))
    edited = await services.conferences.edit(
        world.coord, booked.id, draft(world, start=time(15, 0), end=time(16, 0)), source="t"
    )
    assert edited.conference.sequence == 1
    calendar, after = events(await services.conferences.invitation(world.clin_a, booked.id, source="t"))
    assert str(calendar["METHOD"]) == "REQUEST"
    assert str(before[0]["UID"]) == str(after[0]["UID"]) == booked.uid
    assert int(before[0]["SEQUENCE"]) == 0 and int(after[0]["SEQUENCE"]) == 1
    start = after[0]["DTSTART"].dt
    assert start.tzinfo is not None and start.replace(tzinfo=None) == datetime(2026, 12, 1, 15, 0)
    assert start.astimezone(UTC) == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert "RRULE" in after[0]
    attendees = [str(a) for a in after[0].get("ATTENDEE")]
    assert len(attendees) == 2
    text = (await services.conferences.invitation(world.clin_a, booked.id, source="t")).decode()
    assert PATIENT_DRAFT.full_name not in text and PATIENT_DRAFT.cccd not in text
    assert len(await audit_rows(services, action="conference.ics")) == 3

    with pytest.raises(PermissionDenied):
        await services.conferences.invitation(world.clin_b, booked.id, source="t")
    with pytest.raises(PermissionDenied):
        await services.conferences.edit(world.clin_a, booked.id, draft(world), source="t")
    assert len(await audit_rows(services, outcome="denied")) == 2


async def test_cancelling_a_session_then_the_series_gives_method_cancel(services: Services, world: World) -> None:
    booked = (await services.conferences.book(world.coord, draft(world), source="t")).conference
    second_session = datetime(2026, 12, 8, 14, 0)
    calendar, cancelled = events(
        await services.conferences.cancel(world.coord, booked.id, recurrence_id=second_session, source="t")
    )
    assert str(calendar["METHOD"]) == "CANCEL"
    assert cancelled[0]["RECURRENCE-ID"].dt.replace(tzinfo=None) == second_session
    assert int(cancelled[0]["SEQUENCE"]) == 1
    upcoming = await services.conferences.upcoming(world.clin_a, days=60)
    assert len(upcoming) == 3 and second_session not in [u.recurrence_id for u in upcoming]
    _, invited = events(await services.conferences.invitation(world.clin_a, booked.id, source="t"))
    assert "EXDATE" in invited[0]

    calendar, whole = events(await services.conferences.cancel(world.coord, booked.id, source="t"))
    assert str(calendar["METHOD"]) == "CANCEL" and "RECURRENCE-ID" not in whole[0]
    assert int(whole[0]["SEQUENCE"]) == 2 and str(whole[0]["UID"]) == booked.uid
    assert await services.conferences.upcoming(world.clin_a, days=60) == []
    with pytest.raises(Conflict):
        await services.conferences.cancel(world.coord, booked.id, source="t")
    calendar, _ = events(await services.conferences.invitation(world.spec_cardio, booked.id, source="t"))
    assert str(calendar["METHOD"]) == "CANCEL"


async def test_invitees_answer_and_the_coordinator_sees_responses_per_site(services: Services, world: World) -> None:
    booked = (await services.conferences.book(world.coord, draft(world), source="t")).conference
    answer = await services.conferences.rsvp(world.clin_a, booked.id, "accepted", source="t")
    assert answer.rsvp is Rsvp.ACCEPTED
    await services.conferences.rsvp(world.spec_cardio, booked.id, "tentative", source="t")
    with pytest.raises(PermissionDenied):
        await services.conferences.rsvp(world.clin_b, booked.id, "accepted", source="t")
    with pytest.raises(ValidationFailed):
        await services.conferences.rsvp(world.clin_a, booked.id, "maybe", source="t")
    assert [a.outcome for a in await audit_rows(services, action="conference.rsvp")] == [
        "success",
        "success",
        "denied",
    ]
    sites = await services.conferences.responses(world.coord, booked.id, source="t")
    by_site = {s.facility_id: {i.user_id: i.rsvp for i in s.invitees} for s in sites}
    assert by_site == {
        world.tyt_a.id: {world.clin_a.user_id: Rsvp.ACCEPTED},
        world.bvtw.id: {world.spec_cardio.user_id: Rsvp.TENTATIVE},
    }
    with pytest.raises(PermissionDenied):
        await services.conferences.responses(world.clin_a, booked.id, source="t")
    # The answer survives an edit, and the invitation shows it.
    await services.conferences.edit(world.coord, booked.id, draft(world, title="Case review"), source="t")
    _, invited = events(await services.conferences.invitation(world.clin_a, booked.id, source="t"))
    partstats = sorted(a.params["PARTSTAT"] for a in invited[0].get("ATTENDEE"))
    assert partstats == ["ACCEPTED", "TENTATIVE"]


async def test_the_feed_refuses_a_wrong_or_revoked_token(services: Services, world: World) -> None:
    booked = (await services.conferences.book(world.coord, draft(world), source="t")).conference
    token = await services.conferences.issue_feed_token(world.clin_a, source="t")
    calendar, found = events(await services.conferences.feed(token, source="t"))
    assert str(calendar["METHOD"]) == "PUBLISH"
    assert [str(e["UID"]) for e in found] == [booked.uid]

    with pytest.raises(NotFound):
        await services.conferences.feed(token[:-2] + "xx", source="t")
    rotated = await services.conferences.issue_feed_token(world.clin_a, source="t")
    with pytest.raises(NotFound):
        await services.conferences.feed(token, source="t")
    await services.conferences.feed(rotated, source="t")
    assert await services.conferences.revoke_feed_token(world.clin_a, source="t") == 1
    with pytest.raises(NotFound):
        await services.conferences.feed(rotated, source="t")
    outcomes = [a.outcome for a in await audit_rows(services, action="calendar.feed")]
    assert outcomes == ["success", "denied", "denied", "success", "denied"]


async def _notifications(services: Services, world: World) -> dict[int, int]:
    found = await rows(services, NotificationRow)
    return {
        user: sum(1 for n in found if n.user_id == user) for user in (world.clin_a.user_id, world.spec_cardio.user_id)
    }


async def test_a_reminder_is_sent_once_across_two_processes_and_after_a_restart(
    services: Services, world: World, clock: FakeClock, db_settings: Settings, make_services: MakeServices
) -> None:
    await services.conferences.book(world.coord, draft(world, rrule=None), source="t")
    other_process = await make_services(db_settings, clock)
    assert await services.conferences.send_due_reminders() == 0  # ten days ahead: nothing yet

    clock.advance((FIRST_START_UTC - timedelta(hours=24) - clock.now()).total_seconds())
    sent = await asyncio.gather(
        services.conferences.send_due_reminders(), other_process.conferences.send_due_reminders()
    )
    assert sorted(sent) == [0, 1]
    assert await _notifications(services, world) == {world.clin_a.user_id: 1, world.spec_cardio.user_id: 1}
    notes = await services.conferences.notifications(world.clin_a)
    assert "14:00 01/12/2026" in notes[0].text and PATIENT_DRAFT.full_name not in notes[0].text
    assert await other_process.conferences.send_due_reminders() == 0

    # Both processes stop; a fresh one starts 15 minutes before the session.
    await services.db.dispose()
    await other_process.db.dispose()
    restarted = await make_services(db_settings, clock)
    clock.advance((FIRST_START_UTC - timedelta(minutes=15) - clock.now()).total_seconds())
    assert await restarted.conferences.send_due_reminders() == 1
    assert await restarted.conferences.send_due_reminders() == 0
    clock.advance(60)
    assert await restarted.conferences.send_due_reminders() == 0
    assert await _notifications(restarted, world) == {world.clin_a.user_id: 2, world.spec_cardio.user_id: 2}
    assert await count(restarted, ConferenceReminderRow) == 2


async def test_a_declined_invitee_gets_no_reminder(services: Services, world: World, clock: FakeClock) -> None:
    booked = (await services.conferences.book(world.coord, draft(world, rrule=None), source="t")).conference
    await services.conferences.rsvp(world.spec_cardio, booked.id, "declined", source="t")
    clock.advance((FIRST_START_UTC - timedelta(minutes=10) - clock.now()).total_seconds())
    assert await services.conferences.send_due_reminders() == 1
    assert await _notifications(services, world) == {world.clin_a.user_id: 1, world.spec_cardio.user_id: 0}
    marked = await services.conferences.mark_read(
        world.clin_a, [n.id for n in await services.conferences.notifications(world.clin_a)]
    )
    assert marked == 1
    assert await services.conferences.notifications(world.clin_a, unread_only=True) == []


async def test_the_reminder_loop_sends_on_its_own_and_stops_on_close(
    services: Services, world: World, clock: FakeClock, db_settings: Settings, make_services: MakeServices
) -> None:
    await services.conferences.book(world.coord, draft(world, rrule=None), source="t")
    clock.advance((FIRST_START_UTC - timedelta(minutes=15) - clock.now()).total_seconds())
    running = await make_services(db_settings.model_copy(update={"conference_reminder_tick_s": 0.05}), clock)
    running.conferences.start()
    try:
        for _ in range(200):  # up to 10 s on a loaded machine
            if await count(services, NotificationRow) >= 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await running.conferences.close()
    assert await count(services, NotificationRow) == 2
    assert await count(services, ConferenceReminderRow) == 1


async def test_moving_one_session_keeps_its_recurrence_id_and_gets_its_reminder_at_the_new_time(
    services: Services, world: World, clock: FakeClock
) -> None:
    booked = (await services.conferences.book(world.coord, draft(world), source="t")).conference
    second = datetime(2026, 12, 8, 14, 0)
    with pytest.raises(PermissionDenied):
        await services.conferences.move(
            world.clin_a, booked.id, second, date(2026, 12, 9), time(9, 0), time(10, 0), source="t"
        )
    with pytest.raises(ValidationFailed):
        await services.conferences.move(
            world.coord, booked.id, datetime(2026, 12, 9, 14, 0), date(2026, 12, 9), time(9, 0), time(10, 0), source="t"
        )
    moved = await services.conferences.move(
        world.coord, booked.id, second, date(2026, 12, 9), time(9, 0), time(10, 0), source="t"
    )
    assert moved.sequence == 1
    sessions = await services.conferences.upcoming(world.clin_a, days=60)
    assert [(s.recurrence_id, s.starts_at) for s in sessions][1] == (
        second,
        datetime(2026, 12, 9, 2, 0, tzinfo=UTC),
    )
    _, invited = events(await services.conferences.invitation(world.clin_a, booked.id, source="t"))
    override = [e for e in invited if "RECURRENCE-ID" in e]
    assert len(override) == 1 and override[0]["RECURRENCE-ID"].dt.replace(tzinfo=None) == second
    assert override[0]["DTSTART"].dt.replace(tzinfo=None) == datetime(2026, 12, 9, 9, 0)

    clock.advance((datetime(2026, 12, 9, 1, 50, tzinfo=UTC) - clock.now()).total_seconds())
    assert await services.conferences.send_due_reminders() == 1
    notes = await services.conferences.notifications(world.clin_a)
    assert "09:00 09/12/2026" in notes[0].text


# -- the booking form: conflicts before booking, people and cases to choose -----------------------------------


async def _neurologist_on_call_all_day(services: Services, world: World, clock: FakeClock) -> None:
    async with services.db.transaction() as tx:
        tx.add(
            OnCallShiftRow(
                hub_id=world.bvtw.id,
                specialty="neurology",
                user_id=world.spec_neuro.user_id,
                starts_at=FIRST_START_UTC - timedelta(hours=1),
                ends_at=FIRST_START_UTC + timedelta(hours=11),
                created_at=clock.now(),
            )
        )


async def test_check_gives_the_warnings_of_booking_with_names_and_saves_nothing(
    services: Services, world: World, clock: FakeClock
) -> None:
    first = (await services.conferences.book(world.coord, draft(world), source="t")).conference
    await _neurologist_on_call_all_day(services, world, clock)
    mdt = draft(
        world,
        title="MDT",
        purpose=Purpose.MDT,
        start=time(14, 30),
        end=time(16, 0),
        invited_site_ids=(world.tyt_a.id,),
        invited_user_ids=(world.spec_cardio.user_id, world.spec_neuro.user_id),
        agenda=(),
        rrule=None,
    )
    audits_before = len(await audit_rows(services))

    warnings = await services.conferences.check(world.coord, mdt, source="t")

    found = {(w.kind, w.user_id, w.site_id, w.other_booking_id) for w in warnings}
    assert found == {
        (ConflictKind.PERSON_DOUBLE_BOOKED, world.spec_cardio.user_id, None, first.id),
        (ConflictKind.SITE_BUSY, None, world.tyt_a.id, first.id),
        (ConflictKind.SITE_BUSY, None, world.bvtw.id, first.id),
        (ConflictKind.PERSON_ON_CALL, world.spec_neuro.user_id, None, None),
    }
    assert {w.starts_at for w in warnings} == {FIRST_START_UTC + timedelta(minutes=30)}
    assert await count(services, ConferenceRow) == 1
    assert len(await audit_rows(services)) == audits_before  # a read of the schedule, like upcoming()
    # Booking it gives the same warnings.
    booked = await services.conferences.book(world.coord, mdt, source="t")
    assert set(booked.warnings) == set(warnings)

    notes = {n.conflict.kind: n for n in await services.conferences.explain(world.coord, warnings, source="t")}
    assert notes[ConflictKind.PERSON_ON_CALL].person_name == "BS.CKII Vũ Đức Thành"
    assert notes[ConflictKind.PERSON_DOUBLE_BOOKED].person_name == "PGS.TS. Phạm Quang Hưng"
    assert notes[ConflictKind.PERSON_DOUBLE_BOOKED].other_title == "Weekly cardiology case review"
    site_names = {n.site_name for n in await services.conferences.explain(world.coord, warnings, source="t")}
    assert {"Trạm Y tế xã Bản Phiệt", "Bệnh viện Trung ương"} <= site_names


async def test_checking_an_edit_does_not_warn_about_the_sessions_it_replaces(services: Services, world: World) -> None:
    booked = (await services.conferences.book(world.coord, draft(world), source="t")).conference
    assert len(await services.conferences.check(world.coord, draft(world), source="t")) > 0
    assert await services.conferences.check(world.coord, draft(world), conference_id=booked.id, source="t") == []
    with pytest.raises(PermissionDenied):
        await services.conferences.check(world.spec_cardio, draft(world), conference_id=booked.id, source="t")
    await services.conferences.cancel(world.coord, booked.id, source="t")
    with pytest.raises(Conflict):
        await services.conferences.check(world.coord, draft(world), conference_id=booked.id, source="t")


async def test_check_refuses_clinicians_specialists_and_bad_input_and_writes_no_booking(
    services: Services, world: World
) -> None:
    for actor in (world.clin_a, world.spec_cardio):
        with pytest.raises(PermissionDenied):
            await services.conferences.check(actor, draft(world), source="t")
    denied = await audit_rows(services, action="conference.check")
    assert [(d.actor_user_id, d.outcome) for d in denied] == [
        (world.clin_a.user_id, "denied"),
        (world.spec_cardio.user_id, "denied"),
    ]
    with pytest.raises(ValidationFailed) as bad_time:
        await services.conferences.check(world.coord, draft(world, end=time(13, 0)), source="t")
    assert bad_time.value.field == "end"
    with pytest.raises(ValidationFailed) as wrong_day:
        await services.conferences.check(world.coord, draft(world, rrule="FREQ=WEEKLY;BYDAY=WE;COUNT=8"), source="t")
    assert wrong_day.value.field == "rrule"
    with pytest.raises(ValidationFailed):
        await services.conferences.check(world.coord, draft(world, invited_user_ids=(999_999,)), source="t")
    assert await count(services, ConferenceRow) == 0


async def test_bookers_find_staff_to_invite_by_name_role_and_specialty(services: Services, world: World) -> None:
    found = await services.conferences.find_people(world.coord, "vu duc", source="t")
    assert [(p.user_id, p.display_name, p.specialty, p.facility_name) for p in found] == [
        (world.spec_neuro.user_id, "BS.CKII Vũ Đức Thành", "neurology", "Bệnh viện Trung ương")
    ]
    cardiologists = await services.conferences.find_people(world.admin, "", specialty="cardiology", source="t")
    assert {p.user_id for p in cardiologists} == {world.spec_cardio.user_id, world.spec_cardio2.user_id}
    clinicians = await services.conferences.find_people(world.coord, "", role="clinician", source="t")
    assert {p.user_id for p in clinicians} == {world.clin_a.user_id, world.clin_b.user_id}
    with pytest.raises(ValidationFailed):
        await services.conferences.find_people(world.coord, "", role="patient", source="t")
    with pytest.raises(PermissionDenied):
        await services.conferences.find_people(world.clin_a, "vu", source="t")


async def test_bookers_find_cases_for_the_agenda_and_the_search_is_audited(services: Services, world: World) -> None:
    cases = await services.conferences.find_cases(world.coord, "hong nhung", source="t")
    assert [(c.patient_id, c.patient_name, c.sex) for c in cases] == [
        (world.patient.id, PATIENT_DRAFT.full_name, "female")
    ]
    assert cases[0].age == 36 and cases[0].consultations == ()
    by_cccd = await services.conferences.find_cases(world.coord, PATIENT_DRAFT.cccd, source="t")
    assert [c.patient_id for c in by_cccd] == [world.patient.id]
    with pytest.raises(ValidationFailed):
        await services.conferences.find_cases(world.coord, "n", source="t")
    with pytest.raises(PermissionDenied):
        await services.conferences.find_cases(world.spec_cardio, "nhung", source="t")
    searches = await audit_rows(services, action="conference.case_search")
    assert [(a.outcome, a.detail) for a in searches] == [
        ("success", "cases=1"),
        ("success", "cases=1"),
        ("denied", ""),
    ]
    assert all("nhung" not in (a.detail or "").lower() for a in searches)


async def test_the_edit_form_names_the_people_and_cases_and_is_audited(services: Services, world: World) -> None:
    booked = (await services.conferences.book(world.coord, draft(world), source="t")).conference
    form = await services.conferences.booking_form(world.coord, booked.id, source="t")
    assert form.conference.id == booked.id
    assert {p.user_id for p in form.people} == {world.clin_a.user_id, world.spec_cardio.user_id, world.coord.user_id}
    assert [c.patient_name if c else None for c in form.cases] == [PATIENT_DRAFT.full_name]
    assert [a.outcome for a in await audit_rows(services, action="conference.form")] == ["success"]
    with pytest.raises(PermissionDenied):
        await services.conferences.booking_form(world.clin_a, booked.id, source="t")
