"""Registering, finding and reading patients; who may read a record, and the audit trail of it."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from teleconsult.domain.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from teleconsult.domain.patients import PatientDraft, Sex
from teleconsult.services import Services
from teleconsult.storage.models import PatientRow
from tests.conftest import PATIENT_DRAFT, World
from tests.service.support import audit_rows, count

DUC = PatientDraft(
    cccd="001 085 004321",
    full_name="  Nguyễn   Văn Đức ",
    date_of_birth=date(1985, 7, 30),
    sex=Sex.MALE,
    bhyt="gd4 01 0987654321",
    address="Bản Khoang",
    province="Lào Cai",
)


async def test_register_cleans_and_stores_the_patient(services: Services, world: World) -> None:
    patient = await services.patients.register(world.clin_a, DUC, source="t")

    assert (patient.cccd, patient.full_name, patient.bhyt) == ("001085004321", "Nguyễn Văn Đức", "GD4010987654321")
    assert patient.registered_by_facility_id == world.tyt_a.id
    assert await services.patients.get(world.clin_a, patient.id, source="t") == patient
    [created] = await audit_rows(services, action="patient.create", patient_id=patient.id)
    assert (created.actor_user_id, created.outcome, created.entity_id) == (
        world.clin_a.user_id,
        "success",
        str(patient.id),
    )


async def test_duplicate_cccd_is_a_conflict(services: Services, world: World) -> None:
    same_person_retyped = replace(DUC, cccd="0101 9001 2345", full_name="Trần Thị Nhung")
    with pytest.raises(Conflict) as raised:
        await services.patients.register(world.clin_b, same_person_retyped, source="t")

    assert raised.value.field == "cccd"
    assert await count(services, PatientRow) == 1


async def test_invalid_patient_is_not_stored(services: Services, world: World) -> None:
    with pytest.raises(ValidationFailed) as raised:
        await services.patients.register(world.clin_a, replace(DUC, cccd="12345"), source="t")
    assert raised.value.field == "cccd"
    # "Today" is the clinic's local date: 22/11/2026 in Hà Nội.
    with pytest.raises(ValidationFailed):
        await services.patients.register(world.clin_a, replace(DUC, date_of_birth=date(2026, 11, 23)), source="t")
    assert await count(services, PatientRow) == 1


async def test_specialists_do_not_register_patients(services: Services, world: World) -> None:
    with pytest.raises(PermissionDenied):
        await services.patients.register(world.spec_cardio, DUC, source="t")
    [denied] = await audit_rows(services, action="patient.create", outcome="denied")
    assert denied.actor_user_id == world.spec_cardio.user_id
    assert await count(services, PatientRow) == 1


async def test_search_by_cccd(services: Services, world: World) -> None:
    await services.patients.register(world.clin_a, DUC, source="t")
    found = await services.patients.search(world.clin_b, "0101 9001 2345", source="t")
    assert [p.id for p in found] == [world.patient.id]


@pytest.mark.parametrize("query", ["tran thi hong nhung", "hong nhung", "TRẦN THỊ", "Nhung", "  thi   hong "])
async def test_search_by_name_without_diacritics(services: Services, world: World, query: str) -> None:
    await services.patients.register(world.clin_a, DUC, source="t")
    found = await services.patients.search(world.clin_a, query, source="t")
    assert [p.full_name for p in found] == [PATIENT_DRAFT.full_name]


async def test_search_results_are_sorted_by_name(services: Services, world: World) -> None:
    await services.patients.register(world.clin_a, DUC, source="t")
    found = await services.patients.search(world.clin_a, "van", source="t")
    assert [p.full_name for p in found] == ["Nguyễn Văn Đức"]
    both = await services.patients.search(world.clin_a, "ng", source="t")  # Nguyễn ... and ... Hồng Nhung
    assert [p.full_name for p in both] == ["Nguyễn Văn Đức", "Trần Thị Hồng Nhung"]


@pytest.mark.parametrize("query", ["%%", "__", "nguyen%duc", "tr_n"])
async def test_wildcards_in_the_query_match_literally(services: Services, world: World, query: str) -> None:
    await services.patients.register(world.clin_a, DUC, source="t")
    assert await services.patients.search(world.clin_a, query, source="t") == []


@pytest.mark.parametrize("query", ["a", "  ", "01019001234", "0101900123456"])
async def test_too_vague_or_malformed_queries_are_refused(services: Services, world: World, query: str) -> None:
    with pytest.raises(ValidationFailed):
        await services.patients.search(world.clin_a, query, source="t")


async def test_search_is_audited_without_the_query(services: Services, world: World) -> None:
    await services.patients.search(world.clin_b, "hong nhung", source="t")
    await services.patients.search(world.clin_b, PATIENT_DRAFT.cccd, source="t")
    searches = await audit_rows(services, action="patient.search")
    assert [(s.actor_user_id, s.outcome, s.detail) for s in searches] == [
        (world.clin_b.user_id, "success", "results=1")
    ] * 2
    for event in searches:
        assert "nhung" not in event.detail.lower() and PATIENT_DRAFT.cccd not in (
            event.detail + (event.entity_id or "")
        )


async def test_specialists_cannot_search_the_register(services: Services, world: World) -> None:
    with pytest.raises(PermissionDenied):
        await services.patients.search(world.spec_neuro, "nhung", source="t")
    [denied] = await audit_rows(services, action="patient.search")
    assert (denied.actor_user_id, denied.outcome) == (world.spec_neuro.user_id, "denied")


async def test_the_registering_station_reads_the_record(services: Services, world: World) -> None:
    record = await services.patients.record(world.clin_a, world.patient.id, source="10.0.0.5")
    assert record.patient == world.patient
    assert record.registered_by == world.tyt_a.name
    assert record.consultations == []
    [read] = await audit_rows(services, action="patient.read")
    assert (read.actor_user_id, read.patient_id, read.outcome, read.source) == (
        world.clin_a.user_id,
        world.patient.id,
        "success",
        "10.0.0.5",
    )


async def test_another_station_is_denied_and_the_denial_audited(services: Services, world: World) -> None:
    with pytest.raises(PermissionDenied):
        await services.patients.record(world.clin_b, world.patient.id, source="10.0.0.6")
    with pytest.raises(PermissionDenied):
        await services.patients.get(world.clin_b, world.patient.id, source="10.0.0.6")

    reads = await audit_rows(services, action="patient.read")
    assert [(r.actor_user_id, r.patient_id, r.outcome) for r in reads] == [
        (world.clin_b.user_id, world.patient.id, "denied")
    ] * 2


async def _accepted_consultation(services: Services, world: World) -> int:
    consultation = await services.consultations.request(
        world.clin_a, world.patient.id, "cardiology", "urgent", "Đau ngực trái 2 giờ, vã mồ hôi", source="t"
    )
    await services.consultations.accept(world.spec_cardio, consultation.id, source="t")
    return consultation.id


async def test_specialists_read_only_the_records_of_their_consultations(services: Services, world: World) -> None:
    with pytest.raises(PermissionDenied):
        await services.patients.record(world.spec_cardio, world.patient.id, source="t")
    consultation_id = await _accepted_consultation(services, world)

    record = await services.patients.record(world.spec_cardio, world.patient.id, source="t")
    assert [e.consultation.id for e in record.consultations] == [consultation_id]
    for outsider in (world.spec_cardio2, world.spec_neuro, world.coord, world.clin_b):
        with pytest.raises(PermissionDenied):
            await services.patients.record(outsider, world.patient.id, source="t")

    reads = await audit_rows(services, action="patient.read")
    assert [(r.actor_user_id, r.outcome) for r in reads] == [
        (world.spec_cardio.user_id, "denied"),
        (world.spec_cardio.user_id, "success"),
        (world.spec_cardio2.user_id, "denied"),
        (world.spec_neuro.user_id, "denied"),
        (world.coord.user_id, "denied"),
        (world.clin_b.user_id, "denied"),
    ]


async def test_admin_reads_any_record(services: Services, world: World) -> None:
    record = await services.patients.record(world.admin, world.patient.id, source="t")
    assert record.patient.cccd == PATIENT_DRAFT.cccd


async def test_missing_patient_is_not_found(services: Services, world: World) -> None:
    with pytest.raises(NotFound):
        await services.patients.record(world.admin, world.patient.id + 100, source="t")
