"""The consultation lifecycle through the services: request, accept, the room, notes, close, cancel."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from teleconsult.clock import FakeClock
from teleconsult.domain.consultation import CaseNote, Outcome, Status, Urgency
from teleconsult.domain.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationFailed
from teleconsult.services import Services
from teleconsult.services.notify import RequestCard
from teleconsult.settings import Settings
from teleconsult.storage.models import AuditEventRow, CaseNoteRow, ConsultationRow, ParticipationRow
from tests.conftest import PATIENT_DRAFT, MakeServices, World
from tests.service.support import audit_rows, count, rows

SUMMARY = "Bệnh nhân nữ 36 tuổi, đau ngực trái 2 giờ, ST chênh lên DII, DIII, aVF. HA 90/60."


async def request_cardiology(services: Services, world: World, urgency: str = "urgent") -> int:
    consultation = await services.consultations.request(
        world.clin_a, world.patient.id, "cardiology", urgency, SUMMARY, source="t"
    )
    return consultation.id


async def in_progress(services: Services, world: World) -> int:
    cid = await request_cardiology(services, world)
    await services.consultations.accept(world.spec_cardio, cid, source="t")
    await services.consultations.join(world.spec_cardio, cid, "sid-spec", source="t")
    return cid


async def status_of(services: Services, cid: int) -> Status:
    [row] = await rows(services, ConsultationRow, ConsultationRow.id == cid)
    return Status(row.status)


async def warm_twin(services: Services, settings: Settings, clock: FakeClock, make_services: MakeServices) -> Services:
    """Services of a second "process" on the same database, with both connection pools already open."""
    other = await make_services(settings, clock)
    await asyncio.gather(services.directory.specialties(), other.directory.specialties())
    return other


@dataclass
class RecordingNotifier:
    """What a transport would push to browsers; stands in for socket.io, a boundary the services do not own."""

    changes: list[RequestCard] = field(default_factory=list)
    notes: list[CaseNote] = field(default_factory=list)

    async def consultation_changed(self, card: RequestCard) -> None:
        self.changes.append(card)

    async def note_added(self, note: CaseNote) -> None:
        self.notes.append(note)


class BrokenNotifier:
    async def consultation_changed(self, card: RequestCard) -> None:
        raise ConnectionError("socket.io is down")

    async def note_added(self, note: CaseNote) -> None:
        raise ConnectionError("socket.io is down")


# -- the whole story -----------------------------------------------------------------------------------------


async def test_request_accept_join_note_close_lands_in_the_record(
    services: Services, world: World, clock: FakeClock
) -> None:
    consultations = services.consultations
    requested = await consultations.request(
        world.clin_a, world.patient.id, "cardiology", "emergency", f"  {SUMMARY}\r\n", source="t"
    )
    assert (requested.status, requested.urgency, requested.summary) == (Status.REQUESTED, Urgency.EMERGENCY, SUMMARY)
    assert requested.requesting_facility_id == world.tyt_a.id

    # The cardiologists see it, with enough to decide; the neurologist does not.
    [card] = await consultations.open_requests(world.spec_cardio2)
    assert (card.consultation.id, card.patient_name, card.patient_age, card.facility_name) == (
        requested.id,
        PATIENT_DRAFT.full_name,
        36,
        world.tyt_a.name,
    )
    assert await consultations.open_requests(world.spec_neuro) == []

    clock.advance(40)
    accepted = await consultations.accept(world.spec_cardio, requested.id, source="t")
    assert (accepted.status, accepted.specialist_user_id, accepted.accepted_at) == (
        Status.ACCEPTED,
        world.spec_cardio.user_id,
        clock.now(),
    )
    assert await consultations.open_requests(world.spec_cardio2) == []
    assert [c.consultation.id for c in await consultations.active_for(world.spec_cardio)] == [requested.id]
    assert [c.consultation.id for c in await consultations.active_for(world.clin_a)] == [requested.id]

    clock.advance(5)
    joined_clinician = clock.now()
    after_clinician = await consultations.join(world.clin_a, requested.id, "sid-a", source="t")
    assert after_clinician.status is Status.ACCEPTED  # the clinician waiting does not start it
    clock.advance(10)
    joined_specialist = clock.now()
    after_specialist = await consultations.join(world.spec_cardio, requested.id, "sid-s", source="t")
    assert after_specialist.status is Status.IN_PROGRESS

    card, patient, notes = await consultations.room(world.spec_cardio, requested.id, source="t")
    assert (card.consultation.status, patient.cccd, notes) == (Status.IN_PROGRESS, PATIENT_DRAFT.cccd, [])

    clock.advance(60)
    await consultations.add_note(
        world.clin_a, requested.id, "Troponin I 2.3 ng/mL lúc 09:10.", "note-a-0001", source="t"
    )
    clock.advance(30)
    await consultations.add_note(
        world.spec_cardio, requested.id, "Nghĩ NMCT cấp thành dưới. Aspirin 300 mg.", "note-s-0001", source="t"
    )
    clock.advance(20)
    left_clinician = clock.now()
    await consultations.leave(world.clin_a.user_id, requested.id, "sid-a")
    clock.advance(100)
    closed_at = clock.now()
    closed = await consultations.close(
        world.spec_cardio,
        requested.id,
        "Chuyển tuyến tỉnh can thiệp mạch vành cấp cứu.",
        "i214",
        "transfer",
        source="t",
    )
    assert (closed.status, closed.icd10_code, closed.outcome, closed.ended_at) == (
        Status.COMPLETED,
        "I21.4",
        Outcome.TRANSFER,
        closed_at,
    )

    record = await services.patients.record(world.clin_a, world.patient.id, source="t")
    [entry] = record.consultations
    assert entry.consultation.recommendation == "Chuyển tuyến tỉnh can thiệp mạch vành cấp cứu."
    assert entry.consultation.outcome is Outcome.TRANSFER
    assert (entry.requested_by_name, entry.specialist_name, entry.facility_name) == (
        world.clin_a.display_name,
        world.spec_cardio.display_name,
        world.tyt_a.name,
    )
    assert [(n.author_name, n.text) for n in entry.notes] == [
        (world.clin_a.display_name, "Troponin I 2.3 ng/mL lúc 09:10."),
        (world.spec_cardio.display_name, "Nghĩ NMCT cấp thành dưới. Aspirin 300 mg."),
    ]
    assert [(p.user_id, p.role, p.joined_at, p.left_at) for p in entry.participations] == [
        (world.clin_a.user_id, "clinician", joined_clinician, left_clinician),
        (world.spec_cardio.user_id, "specialist", joined_specialist, closed_at),  # closing ends every stay
    ]

    trail = await audit_rows(services, entity_type="consultation", entity_id=str(requested.id))
    assert [(e.action, e.actor_user_id, e.outcome) for e in trail] == [
        ("consultation.create", world.clin_a.user_id, "success"),
        # Nobody in this world is on call: pairing hands the request to the hub's coordinator at once.
        ("consultation.escalate", None, "success"),
        ("consultation.accept", world.spec_cardio.user_id, "success"),
        ("consultation.join", world.clin_a.user_id, "success"),
        ("consultation.join", world.spec_cardio.user_id, "success"),
        ("consultation.room.open", world.spec_cardio.user_id, "success"),
        ("consultation.complete", world.spec_cardio.user_id, "success"),
    ]
    assert all(e.patient_id == world.patient.id for e in trail)
    assert len(await audit_rows(services, action="note.create", patient_id=world.patient.id)) == 2

    # The room is closed now, for everyone.
    with pytest.raises(PermissionDenied):
        await consultations.room(world.spec_cardio, requested.id, source="t")
    with pytest.raises(PermissionDenied):
        await consultations.add_note(world.spec_cardio, requested.id, "late", "note-s-0002", source="t")


async def test_people_concerned_are_told_of_each_change(services: Services, world: World) -> None:
    notifier = RecordingNotifier()
    services.set_notifier(notifier)
    cid = await in_progress(services, world)
    note, _ = await services.consultations.add_note(world.clin_a, cid, "HA 85/50", "note-a-0001", source="t")
    await services.consultations.close(world.spec_cardio, cid, "Chuyển tuyến", "I21", "transfer", source="t")

    assert [c.consultation.status for c in notifier.changes] == [
        Status.REQUESTED,
        Status.ACCEPTED,
        Status.IN_PROGRESS,
        Status.COMPLETED,
    ]
    assert notifier.notes == [note]


async def test_a_failed_push_does_not_undo_the_change(services: Services, world: World) -> None:
    services.set_notifier(BrokenNotifier())
    cid = await request_cardiology(services, world)
    accepted = await services.consultations.accept(world.spec_cardio, cid, source="t")
    note, created = await services.consultations.add_note(world.clin_a, cid, "SpO2 91%", "note-a-0001", source="t")
    assert accepted.status is Status.ACCEPTED and created
    assert await status_of(services, cid) is Status.ACCEPTED
    assert await count(services, CaseNoteRow) == 1


# -- requesting ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("specialty", "urgency", "summary", "error"),
    [
        ("cardiology", "whenever", SUMMARY, ValidationFailed),
        ("dermatology", "urgent", SUMMARY, ValidationFailed),
        ("cardiology", "urgent", "   ", ValidationFailed),
        ("cardiology", "urgent", "x" * 4001, ValidationFailed),
    ],
)
async def test_bad_requests_store_nothing(
    services: Services, world: World, specialty: str, urgency: str, summary: str, error: type[DomainError]
) -> None:
    with pytest.raises(error):
        await services.consultations.request(world.clin_a, world.patient.id, specialty, urgency, summary, source="t")
    assert await count(services, ConsultationRow) == 0


async def test_request_for_a_missing_patient_is_not_found(services: Services, world: World) -> None:
    with pytest.raises(NotFound):
        await services.consultations.request(
            world.clin_a, world.patient.id + 1, "cardiology", "routine", "x", source="t"
        )


async def test_only_clinicians_request(services: Services, world: World) -> None:
    with pytest.raises(PermissionDenied):
        await services.consultations.request(
            world.spec_cardio, world.patient.id, "cardiology", "urgent", SUMMARY, source="t"
        )
    assert await count(services, ConsultationRow) == 0
    [denied] = await audit_rows(services, action="consultation.create")
    assert (denied.actor_user_id, denied.outcome) == (world.spec_cardio.user_id, "denied")


async def test_open_requests_put_emergencies_first(services: Services, world: World, clock: FakeClock) -> None:
    routine = await request_cardiology(services, world, "routine")
    clock.advance(1)
    emergency = await request_cardiology(services, world, "emergency")
    clock.advance(1)
    urgent = await request_cardiology(services, world, "urgent")
    cards = await services.consultations.open_requests(world.spec_cardio)
    assert [c.consultation.id for c in cards] == [emergency, urgent, routine]
    assert await services.consultations.open_requests(world.clin_a) == []


# -- accepting -----------------------------------------------------------------------------------------------


async def test_first_accept_wins(
    db_settings: Settings, services: Services, world: World, clock: FakeClock, make_services: MakeServices
) -> None:
    # Two browsers, two server processes: separate engines on the same database, both warm so they race.
    other = await warm_twin(services, db_settings, clock, make_services)
    for _ in range(5):
        cid = await request_cardiology(services, world)
        results = await asyncio.gather(
            services.consultations.accept(world.spec_cardio, cid, source="t"),
            other.consultations.accept(world.spec_cardio2, cid, source="t"),
            return_exceptions=True,
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        losers = [r for r in results if isinstance(r, BaseException)]
        assert len(winners) == 1, results
        assert len(losers) == 1 and isinstance(losers[0], Conflict), results
        [row] = await rows(services, ConsultationRow, ConsultationRow.id == cid)
        assert (row.status, row.specialist_user_id) == ("accepted", winners[0].specialist_user_id)
        accepts = await audit_rows(services, action="consultation.accept", entity_id=str(cid))
        assert [(a.actor_user_id, a.outcome) for a in accepts] == [(winners[0].specialist_user_id, "success")]


async def test_a_taken_request_cannot_be_accepted_again(services: Services, world: World) -> None:
    cid = await request_cardiology(services, world)
    await services.consultations.accept(world.spec_cardio, cid, source="t")
    with pytest.raises(Conflict):
        await services.consultations.accept(world.spec_cardio2, cid, source="t")
    [row] = await rows(services, ConsultationRow, ConsultationRow.id == cid)
    assert row.specialist_user_id == world.spec_cardio.user_id


async def test_a_neurologist_cannot_take_a_cardiology_request(services: Services, world: World) -> None:
    cid = await request_cardiology(services, world)
    with pytest.raises(PermissionDenied):
        await services.consultations.accept(world.spec_neuro, cid, source="t")
    assert await status_of(services, cid) is Status.REQUESTED
    [denied] = await audit_rows(services, action="consultation.accept")
    assert (denied.actor_user_id, denied.outcome, denied.patient_id) == (
        world.spec_neuro.user_id,
        "denied",
        world.patient.id,
    )
    with pytest.raises(PermissionDenied):
        await services.consultations.get(world.spec_neuro, cid, source="t")


async def test_accepting_a_missing_consultation_is_not_found(services: Services, world: World) -> None:
    with pytest.raises(NotFound):
        await services.consultations.accept(world.spec_cardio, 999, source="t")


# -- the room and notes --------------------------------------------------------------------------------------


async def test_outsiders_cannot_join_and_are_audited(services: Services, world: World) -> None:
    cid = await in_progress(services, world)
    for outsider in (world.clin_b, world.spec_cardio2, world.admin):
        with pytest.raises(PermissionDenied):
            await services.consultations.join(outsider, cid, "sid-x", source="t")
        with pytest.raises(PermissionDenied):
            await services.consultations.participants(outsider, cid)
    denied = await audit_rows(services, action="consultation.join", outcome="denied")
    assert [d.actor_user_id for d in denied] == [
        world.clin_b.user_id,
        world.spec_cardio2.user_id,
        world.admin.user_id,
    ]
    assert [p.user_id for p in await services.consultations.participants(world.clin_a, cid)] == [
        world.spec_cardio.user_id
    ]


async def test_a_resent_note_is_stored_once(services: Services, world: World) -> None:
    cid = await in_progress(services, world)
    first, created = await services.consultations.add_note(
        world.clin_a, cid, "Mạch 112 l/p, HA 90/60", "c1a2-0001-offline", source="t"
    )
    assert created
    again, created_again = await services.consultations.add_note(
        world.clin_a, cid, "Mạch 112 l/p, HA 90/60", "c1a2-0001-offline", source="t"
    )
    assert (created_again, again.id, again.text, again.created_at) == (False, first.id, first.text, first.created_at)
    # The same client_id from another author is another note.
    _, other_created = await services.consultations.add_note(
        world.spec_cardio, cid, "Cho thở oxy 3 l/p", "c1a2-0001-offline", source="t"
    )
    assert other_created
    assert await count(services, CaseNoteRow) == 2
    assert len(await audit_rows(services, action="note.create")) == 2


async def test_concurrent_resends_of_a_note_store_it_once(
    db_settings: Settings, services: Services, world: World, clock: FakeClock, make_services: MakeServices
) -> None:
    # The old socket's send and the reconnected socket's resend can reach two server processes at once.
    other = await warm_twin(services, db_settings, clock, make_services)
    cid = await in_progress(services, world)
    for i in range(5):
        client_id = f"dup-note-{i:04d}"
        results = await asyncio.gather(
            services.consultations.add_note(world.clin_a, cid, "Đã cho aspirin 300 mg", client_id, source="t"),
            other.consultations.add_note(world.clin_a, cid, "Đã cho aspirin 300 mg", client_id, source="t"),
        )
        assert sorted(created for _, created in results) == [False, True]
        assert results[0][0].id == results[1][0].id
    assert await count(services, CaseNoteRow) == 5
    assert len(await audit_rows(services, action="note.create")) == 5


async def test_a_too_long_note_is_refused_and_nothing_stored(services: Services, world: World) -> None:
    cid = await in_progress(services, world)
    limit = services.settings.max_note_chars
    with pytest.raises(ValidationFailed) as raised:
        await services.consultations.add_note(world.clin_a, cid, "x" * (limit + 1), "long-note-0001", source="t")
    assert raised.value.field == "text"
    assert await count(services, CaseNoteRow) == 0
    assert await audit_rows(services, action="note.create") == []
    note, created = await services.consultations.add_note(world.clin_a, cid, "y" * limit, "long-note-0002", source="t")
    assert created and len(note.text) == limit


@pytest.mark.parametrize(("text", "client_id"), [("   ", "blank-note-01"), ("ok", "short"), ("ok", "has space 001")])
async def test_malformed_notes_are_refused(services: Services, world: World, text: str, client_id: str) -> None:
    cid = await in_progress(services, world)
    with pytest.raises(ValidationFailed):
        await services.consultations.add_note(world.clin_a, cid, text, client_id, source="t")
    assert await count(services, CaseNoteRow) == 0


async def test_outsiders_cannot_write_notes(services: Services, world: World) -> None:
    cid = await in_progress(services, world)
    with pytest.raises(PermissionDenied):
        await services.consultations.add_note(world.clin_b, cid, "spam", "outsider-0001", source="t")
    assert await count(services, CaseNoteRow) == 0
    [denied] = await audit_rows(services, action="note.create")
    assert (denied.actor_user_id, denied.outcome) == (world.clin_b.user_id, "denied")


# -- closing and cancelling ----------------------------------------------------------------------------------


async def test_the_clinician_cannot_close(services: Services, world: World) -> None:
    cid = await in_progress(services, world)
    for actor in (world.clin_a, world.spec_cardio2):
        with pytest.raises(PermissionDenied):
            await services.consultations.close(actor, cid, "Điều trị tại chỗ", "I20.0", "treat_locally", source="t")
    assert await status_of(services, cid) is Status.IN_PROGRESS
    denied = await audit_rows(services, action="consultation.complete")
    assert [(d.actor_user_id, d.outcome) for d in denied] == [
        (world.clin_a.user_id, "denied"),
        (world.spec_cardio2.user_id, "denied"),
    ]


async def test_closing_twice_is_a_conflict(services: Services, world: World) -> None:
    cid = await in_progress(services, world)
    await services.consultations.close(world.spec_cardio, cid, "Theo dõi tại trạm", "I20.0", "follow_up", source="t")
    with pytest.raises(Conflict):
        await services.consultations.close(world.spec_cardio, cid, "Chuyển tuyến", "I21.4", "transfer", source="t")
    [row] = await rows(services, ConsultationRow, ConsultationRow.id == cid)
    assert (row.recommendation, row.icd10_code, row.outcome) == ("Theo dõi tại trạm", "I20.0", "follow_up")


async def test_an_accepted_consultation_can_close_without_a_call(services: Services, world: World) -> None:
    cid = await request_cardiology(services, world)
    await services.consultations.accept(world.spec_cardio, cid, source="t")
    closed = await services.consultations.close(
        world.spec_cardio, cid, "Đọc ECG: bình thường", "Z03.4", "treat_locally", source="t"
    )
    assert closed.status is Status.COMPLETED


async def test_an_invalid_closing_changes_nothing(services: Services, world: World) -> None:
    cid = await in_progress(services, world)
    with pytest.raises(ValidationFailed):
        await services.consultations.close(
            world.spec_cardio, cid, "Chuyển tuyến", "heart attack", "transfer", source="t"
        )
    assert await status_of(services, cid) is Status.IN_PROGRESS


async def test_the_requesting_station_cancels(services: Services, world: World, clock: FakeClock) -> None:
    cid = await request_cardiology(services, world)
    clock.advance(120)
    with pytest.raises(PermissionDenied):
        await services.consultations.cancel(world.clin_b, cid, source="t")
    cancelled = await services.consultations.cancel(world.clin_a, cid, source="t")
    assert (cancelled.status, cancelled.ended_at) == (Status.CANCELLED, clock.now())

    with pytest.raises(Conflict):
        await services.consultations.accept(world.spec_cardio, cid, source="t")
    with pytest.raises(Conflict):
        await services.consultations.cancel(world.clin_a, cid, source="t")
    assert await services.consultations.open_requests(world.spec_cardio) == []
    trail = await audit_rows(services, action="consultation.cancel")
    assert [(e.actor_user_id, e.outcome) for e in trail] == [
        (world.clin_b.user_id, "denied"),
        (world.clin_a.user_id, "success"),
    ]


async def test_a_consultation_under_way_cannot_be_cancelled(services: Services, world: World) -> None:
    cid = await in_progress(services, world)
    with pytest.raises(Conflict):
        await services.consultations.cancel(world.clin_a, cid, source="t")
    with pytest.raises(PermissionDenied):
        await services.consultations.cancel(world.spec_cardio, cid, source="t")
    assert await status_of(services, cid) is Status.IN_PROGRESS


async def test_stays_left_open_by_a_dead_process_are_closed(services: Services, world: World, clock: FakeClock) -> None:
    cid = await request_cardiology(services, world)
    await services.consultations.accept(world.spec_cardio, cid, source="t")
    await services.presence.hold("node1", world.clin_a.user_id)
    await services.presence.hold("node2", world.spec_cardio.user_id)
    await services.consultations.join(world.clin_a, cid, "node1:sid-a", source="t")
    await services.consultations.join(world.spec_cardio, cid, "node2:sid-s", source="t")
    # node2 keeps renewing its leases; node1 was killed and its lease runs out.
    for _ in range(4):
        clock.advance(10)
        await services.presence.renew("node2", [world.spec_cardio.user_id])
    assert await services.consultations.close_stale_participations() == 1
    stays = {p.user_id: p.left_at for p in await services.consultations.participants(world.clin_a, cid)}
    assert stays == {world.clin_a.user_id: clock.now(), world.spec_cardio.user_id: None}
    assert await services.consultations.close_stale_participations() == 0

    await services.presence.release_instance("node2")  # node2 shut down cleanly
    assert await services.consultations.close_stale_participations() == 1
    assert await count(services, ParticipationRow, ParticipationRow.left_at.is_(None)) == 0


# -- the audit trail never holds patient data ----------------------------------------------------------------


async def test_audit_detail_never_holds_the_patients_name_or_cccd(services: Services, world: World) -> None:
    cid = await in_progress(services, world)
    await services.patients.search(world.clin_a, "Trần Thị Hồng Nhung", source="t")
    await services.patients.search(world.clin_b, PATIENT_DRAFT.cccd, source="t")
    await services.patients.record(world.spec_cardio, world.patient.id, source="t")
    with pytest.raises(PermissionDenied):
        await services.patients.record(world.clin_b, world.patient.id, source="t")
    await services.consultations.add_note(
        world.clin_a, cid, f"Bệnh nhân {PATIENT_DRAFT.full_name}, CCCD {PATIENT_DRAFT.cccd}", "note-pii-01", source="t"
    )
    await services.consultations.close(world.spec_cardio, cid, "Chuyển tuyến", "I21.4", "transfer", source="t")

    events = await rows(services, AuditEventRow)
    assert len(events) > 15
    forbidden = [PATIENT_DRAFT.cccd, PATIENT_DRAFT.bhyt, "nhung", "hong", "tran thi", PATIENT_DRAFT.full_name.lower()]
    for event in events:
        text = f"{event.detail} {event.entity_id} {event.source}".lower()
        for needle in forbidden:
            assert needle and needle.lower() not in text, (event.action, event.detail)


async def test_a_clinician_cannot_request_for_a_patient_of_another_station(services: Services, world: World) -> None:
    with pytest.raises(PermissionDenied):
        await services.consultations.request(
            world.clin_b, world.patient.id, "cardiology", "urgent", SUMMARY, source="t"
        )
    assert await count(services, ConsultationRow) == 0
    denied = await audit_rows(services, action="consultation.create")
    assert [(r.outcome, r.actor_user_id) for r in denied] == [("denied", world.clin_b.user_id)]


async def test_a_note_resent_after_closing_returns_the_saved_note(services: Services, world: World) -> None:
    cid = await in_progress(services, world)
    note, created = await services.consultations.add_note(world.clin_a, cid, "HR 52", "late-ack-0001", source="t")
    await services.consultations.close(
        world.spec_cardio, cid, "Beta-blocker stop.", "I49.5", "treat_locally", source="t"
    )
    again, created_again = await services.consultations.add_note(
        world.clin_a, cid, "HR 52", "late-ack-0001", source="t"
    )
    assert created and not created_again and again.id == note.id
    with pytest.raises(PermissionDenied):
        await services.consultations.add_note(world.clin_a, cid, "new after close", "late-new-0001", source="t")


async def test_an_ineligible_accept_of_a_taken_request_is_denied_and_audited(services: Services, world: World) -> None:
    cid = await request_cardiology(services, world)
    await services.consultations.accept(world.spec_cardio, cid, source="t")
    with pytest.raises(PermissionDenied):
        await services.consultations.accept(world.spec_neuro, cid, source="t")
    denied = [r for r in await audit_rows(services, action="consultation.accept") if r.outcome == "denied"]
    assert [r.actor_user_id for r in denied] == [world.spec_neuro.user_id]
