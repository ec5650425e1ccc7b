"""The conference room through the service, on SQLite and PostgreSQL, with a fake clock: when the room opens,
the lobby and the host's admissions, notes and decisions saved to the patient's record, attendance per person
and site and its CSV export, the session closing by itself, one session per occurrence across processes, and
stays of a killed process closed by lease. No SFU here: media is tested against a real Janus in transport."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import timedelta

import pytest

from teleconsult.clock import FakeClock
from teleconsult.domain.conference import AgendaItem, Entry
from teleconsult.domain.conference_room import Outcome
from teleconsult.domain.errors import Conflict, PermissionDenied, Unavailable, ValidationFailed
from teleconsult.services import Services
from teleconsult.storage.models import (
    ConferenceAttendanceRow,
    ConferenceDecisionRow,
    ConferenceNoteRow,
    ConferenceSessionRow,
)
from tests.conftest import MakeServices, World
from tests.service.support import audit_rows, count, rows
from tests.service.test_conferences import FIRST_START_UTC, draft


def at(clock: FakeClock, minutes_from_start: float) -> None:
    """Move the fake clock to the first session's start plus ``minutes_from_start``."""
    target = FIRST_START_UTC + timedelta(minutes=minutes_from_start)
    clock.advance((target - clock.now()).total_seconds())


async def booked(services: Services, world: World) -> int:
    """A weekly case review hosted by the central hospital, the commune station and the provincial hospital
    invited, the clinician presenting one case. clin_b (another commune) is not invited."""
    result = await services.conferences.book(
        world.coord,
        draft(world, agenda=(AgendaItem(world.clin_a.user_id, patient_id=world.patient.id),)),
        source="t",
    )
    return result.conference.id


async def test_the_room_opens_fifteen_minutes_before_and_the_lobby_waits_for_the_host(
    services: Services, world: World, clock: FakeClock
) -> None:
    room = services.conference_room
    cid = await booked(services, world)
    at(clock, -20)
    early = await room.enter(world.clin_a, cid, "p1:a", source="t")
    assert early.entry is Entry.CLOSED and early.opens_at == FIRST_START_UTC - timedelta(minutes=15)
    assert await count(services, ConferenceSessionRow) == 0

    at(clock, -15)
    inside = await room.enter(world.clin_a, cid, "p1:a", source="t")
    assert inside.entry is Entry.ENTER and not inside.is_host
    assert [c.patient_name for c in inside.cases] == [world.patient.full_name]
    assert inside.session is not None
    session_id = inside.session.id

    # Not invited: waits in the lobby, can neither write nor see the cases, and is not counted present.
    knocking = await services.conference_room.enter(world.clin_b, cid, "p1:b", source="t")
    assert knocking.entry is Entry.LOBBY and knocking.cases == () and knocking.knocked
    again_waiting = await room.enter(world.clin_b, cid, "p1:b", source="t")  # the page asks again later
    assert again_waiting.entry is Entry.LOBBY and not again_waiting.knocked
    assert len(await audit_rows(services, action="conference.knock")) == 1
    with pytest.raises(PermissionDenied):
        await room.add_note(world.clin_b, session_id, inside.cases[0].item_id, "n1", "Xin vào", source="t")
    with pytest.raises(PermissionDenied):
        await room.cases(world.clin_b, session_id)
    assert [s.user_id for s in await room.present(session_id)] == [world.clin_a.user_id]

    # Only the host admits; the host sees who waits on entering.
    with pytest.raises(PermissionDenied):
        await room.admit(world.clin_a, session_id, world.clin_b.user_id, True, source="t")
    host = await room.enter(world.coord, cid, "p1:c", source="t")
    assert host.is_host and [e.user_id for e in host.lobby] == [world.clin_b.user_id]
    admitted = await room.admit(world.coord, session_id, world.clin_b.user_id, True, source="t")
    assert admitted.status == "admitted"
    again = await room.enter(world.clin_b, cid, "p1:b", source="t")
    assert again.entry is Entry.ENTER
    assert [a.detail for a in await audit_rows(services, action="conference.admit")] == [f"user={world.clin_b.user_id}"]


async def test_a_late_invitee_waits_and_a_refused_one_stays_out(
    services: Services, world: World, clock: FakeClock
) -> None:
    room = services.conference_room
    cid = await booked(services, world)
    at(clock, 11)  # more than ten minutes late
    late = await room.enter(world.spec_cardio, cid, "p1:s", source="t")
    assert late.entry is Entry.LOBBY
    assert late.session is not None
    await room.admit(world.coord, late.session.id, world.spec_cardio.user_id, False, source="t")
    with pytest.raises(PermissionDenied):
        await room.enter(world.spec_cardio, cid, "p1:s", source="t")


async def test_notes_and_decisions_land_in_the_patients_record(
    services: Services, world: World, clock: FakeClock
) -> None:
    room = services.conference_room
    cid = await booked(services, world)
    at(clock, 0)
    clinician = await room.enter(world.clin_a, cid, "p1:a", source="t")
    await room.enter(world.spec_cardio, cid, "p1:s", source="t")
    assert clinician.session is not None
    sid, item = clinician.session.id, clinician.cases[0].item_id

    note = await room.add_note(world.clin_a, sid, item, "c-1", "  Đau ngực 3 ngày, ECG ST chênh lên.  ", source="t")
    resent = await room.add_note(world.clin_a, sid, item, "c-1", "Đau ngực 3 ngày, ECG ST chênh lên.", source="t")
    assert resent.id == note.id and note.text == "Đau ngực 3 ngày, ECG ST chênh lên."
    assert await count(services, ConferenceNoteRow) == 1
    [note_audit] = await audit_rows(services, action="conference.note")
    assert note_audit.patient_id == world.patient.id

    # Bad decisions change nothing.
    for bad in (
        {"recommendation": "", "icd10": "I21.4", "outcome": "transfer"},
        {"recommendation": "Chuyển tuyến", "icd10": "chest pain", "outcome": "transfer"},
        {"recommendation": "Chuyển tuyến", "icd10": "I21.4", "outcome": "wait and see"},
    ):
        with pytest.raises(ValidationFailed):
            await room.decide(world.spec_cardio, sid, item, **bad, expected_version=0, source="t")
    with pytest.raises(PermissionDenied):  # a clinician in the room presents; the specialists decide
        await room.decide(world.clin_a, sid, item, "Chuyển tuyến", "I21.4", "transfer", expected_version=0, source="t")
    assert await count(services, ConferenceDecisionRow) == 0

    first = await room.decide(
        world.spec_cardio,
        sid,
        item,
        "Chuyển tuyến trung ương can thiệp",
        "i214",
        "transfer",
        expected_version=0,
        source="t",
    )
    assert (first.icd10, first.outcome, first.version) == ("I21.4", Outcome.TRANSFER, 1)
    with pytest.raises(Conflict):  # written against version 0 while version 1 exists
        await room.decide(
            world.coord, sid, item, "Điều trị tại chỗ", "I20.0", "manage_locally", expected_version=0, source="t"
        )
    second = await room.decide(
        world.coord,
        sid,
        item,
        "Điều trị tại chỗ, hội chẩn lại",
        "I20.0",
        "review_again",
        expected_version=1,
        source="t",
    )
    assert second.version == 2 and second.decided_by_user_id == world.coord.user_id

    record = await services.patients.record(world.clin_a, world.patient.id, source="t")
    [review] = record.reviews
    assert review.conference_id == cid and review.session_starts_at == FIRST_START_UTC
    assert review.decision is not None and review.decision.recommendation == "Điều trị tại chỗ, hội chẩn lại"
    assert [n.text for n in review.notes] == ["Đau ngực 3 ngày, ECG ST chênh lên."]


async def test_attendance_per_person_and_site_and_its_export(
    services: Services, world: World, clock: FakeClock
) -> None:
    room = services.conference_room
    cid = await booked(services, world)
    at(clock, -5)
    entered = await room.enter(world.coord, cid, "p1:c", source="t")
    assert entered.session is not None
    sid = entered.session.id
    await room.enter(world.clin_a, cid, "p1:a", source="t")
    at(clock, 20)
    assert [s.user_id for s in await room.leave("p1:a")] == [world.clin_a.user_id]  # the link dropped
    at(clock, 25)
    back = await room.enter(world.clin_a, cid, "p1:a2", source="t")  # late, but was in: no lobby
    assert back.entry is Entry.ENTER
    item = entered.cases[0].item_id
    await room.decide(world.coord, sid, item, "Chuyển tuyến", "I21.4", "transfer", expected_version=0, source="t")
    at(clock, 60)
    await room.end(world.coord, sid, source="t")

    with pytest.raises(PermissionDenied):
        await room.attendance(world.clin_a, cid, source="t")
    lines = {line.user_id: line for line in await room.attendance(world.coord, cid, source="t")}
    assert lines[world.coord.user_id].minutes_present == 65
    clinician = lines[world.clin_a.user_id]
    assert clinician.stays == 2 and clinician.minutes_present == 25 + 35  # joined at -5, dropped at +20
    assert clinician.facility_name == world.tyt_a.name

    exported = await room.export_csv(world.coord, cid, source="t")
    table = list(csv.reader(io.StringIO(exported)))
    people = [row for row in table if len(row) == 8 and row[0] != "session start"]
    assert {(row[1], row[3], row[6]) for row in people} == {
        (world.coord.display_name, world.bvtw.name, "65"),
        (world.clin_a.display_name, world.tyt_a.name, "60"),
    }
    decisions = [row for row in table if len(row) == 9 and row[0] != "session start"]
    assert [(row[1], row[2], row[4], row[5]) for row in decisions] == [
        ("1", world.patient.full_name, "I21.4", "transfer")
    ]
    assert [a.action for a in await audit_rows(services, action="conference.export")] == ["conference.export"]
    with pytest.raises(PermissionDenied):
        await room.export_csv(world.spec_cardio, cid, source="t")


async def test_a_session_closes_at_its_end_and_then_takes_no_notes(
    services: Services, world: World, clock: FakeClock
) -> None:
    room = services.conference_room
    cid = await booked(services, world)
    at(clock, 0)
    entered = await room.enter(world.clin_a, cid, "p1:a", source="t")
    assert entered.session is not None
    at(clock, 89)
    assert await room.close_due_sessions() == []
    at(clock, 90)
    assert await room.close_due_sessions() == [entered.session.id]
    [stay] = await rows(services, ConferenceAttendanceRow)
    assert stay.left_at == FIRST_START_UTC + timedelta(minutes=90)
    with pytest.raises(Conflict):
        await room.add_note(world.clin_a, entered.session.id, entered.cases[0].item_id, "x", "late", source="t")
    after = await room.enter(world.clin_a, cid, "p1:a", source="t")
    assert after.entry is Entry.CLOSED and after.opens_at == FIRST_START_UTC + timedelta(days=7, minutes=-15)


async def test_media_needs_an_sfu_and_a_presence_in_the_room(
    services: Services, world: World, clock: FakeClock
) -> None:
    room = services.conference_room
    cid = await booked(services, world)
    at(clock, 0)
    entered = await room.enter(world.clin_a, cid, "p1:a", source="t")
    assert entered.session is not None
    with pytest.raises(Unavailable):
        await room.media_access(world.clin_a, entered.session.id, "p1:a")


async def test_two_processes_opening_one_occurrence_share_one_session(
    db_settings: object, world: World, clock: FakeClock, make_services: MakeServices
) -> None:
    first, second = await make_services(db_settings, clock), await make_services(db_settings, clock)
    cid = await booked(first, world)
    at(clock, -1)
    entries = await asyncio.gather(
        *(
            (first if i % 2 else second).conference_room.enter(actor, cid, f"p{i}:x", source="t")
            for i, actor in enumerate([world.clin_a, world.spec_cardio, world.coord, world.admin] * 3)
        )
    )
    assert {e.session.id for e in entries if e.session is not None} == {(await rows(first, ConferenceSessionRow))[0].id}
    assert await count(first, ConferenceSessionRow) == 1


async def test_stays_of_a_killed_process_are_closed_by_lease(
    services: Services, world: World, clock: FakeClock
) -> None:
    room = services.conference_room
    cid = await booked(services, world)
    at(clock, 0)
    await services.presence.hold("alive", world.coord.user_id)
    await room.enter(world.coord, cid, "alive:c", source="t")
    await room.enter(world.clin_a, cid, "dead:a", source="t")  # its process never renews a lease
    assert await room.close_stale_stays() == 1
    open_stays = [s.connection_id for s in await rows(services, ConferenceAttendanceRow) if s.left_at is None]
    assert open_stays == ["alive:c"]


async def test_two_cases_of_one_patient_are_two_reviews_in_the_record(
    services: Services, world: World, clock: FakeClock
) -> None:
    room = services.conference_room
    # The patient's chest pain (registered case) and the consultation about her diabetes: two cases.
    consultation = await services.consultations.request(
        world.clin_a, world.patient.id, "cardiology", "routine", "Đái tháo đường, đường huyết cao.", source="t"
    )
    two = (
        AgendaItem(world.clin_a.user_id, patient_id=world.patient.id),
        AgendaItem(world.spec_cardio.user_id, consultation_id=consultation.id),
    )
    cid = (await services.conferences.book(world.coord, draft(world, agenda=two), source="t")).conference.id
    at(clock, 0)
    entered = await room.enter(world.coord, cid, "p1:c", source="t")
    assert entered.session is not None
    first, second = (c.item_id for c in entered.cases)
    sid = entered.session.id
    await room.decide(world.coord, sid, first, "Chuyển tuyến", "I21.0", "transfer", expected_version=0, source="t")
    await room.decide(world.coord, sid, second, "Theo dõi", "E11.9", "manage_locally", expected_version=0, source="t")
    await room.add_note(world.coord, sid, second, "n", "Đường huyết 12 mmol/L", source="t")
    record = await services.patients.record(world.clin_a, world.patient.id, source="t")
    assert [
        (r.agenda_item_id, r.decision.icd10 if r.decision else None, [n.text for n in r.notes]) for r in record.reviews
    ] == [
        (first, "I21.0", []),
        (second, "E11.9", ["Đường huyết 12 mmol/L"]),
    ]
