"""FHIR export of a patient's record through the service, on SQLite and PostgreSQL: what is in the Bundle,
that the ECG comes back sample for sample, who may have it, and the audit trail of every attempt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient as FhirPatient

from teleconsult.clock import FakeClock
from teleconsult.domain.errors import NotFound, PermissionDenied, ValidationFailed
from teleconsult.domain.fhir import CCCD_SYSTEM
from teleconsult.services import Services
from tests.conftest import World
from tests.service.stored_record import Recording, physionet, store_stream, store_vitals
from tests.service.support import audit_rows

BASE = "https://teleconsult.example.org/fhir"
SUMMARY = "Đau ngực trái 2 giờ, ST chênh lên DII, DIII, aVF."


@dataclass
class Record:
    consultation_id: int
    vital_ids: list[int]
    holter: Recording  # 3.5 minutes of MIT-BIH 100, still streaming, partly compacted
    holter_id: int
    twelve_lead: Recording  # PTB s0010_re, whole, outside any consultation
    twelve_lead_id: int


@pytest.fixture
async def record(services: Services, world: World, clock: FakeClock) -> Record:
    consultation = await services.consultations.request(
        world.clin_a, world.patient.id, "cardiology", "urgent", SUMMARY, source="t"
    )
    await services.consultations.accept(world.spec_cardio, consultation.id, source="t")
    holter = physionet("100", sampto=int(3.5 * 60 * 360))
    twelve_lead = physionet("s0010_re")
    return Record(
        consultation_id=consultation.id,
        vital_ids=await store_vitals(
            services,
            patient_id=world.patient.id,
            recorded_by=world.clin_a.user_id,
            at=clock.now(),
            consultation_id=consultation.id,
        ),
        holter=holter,
        holter_id=await store_stream(
            services,
            holter,
            patient_id=world.patient.id,
            source_user_id=world.clin_a.user_id,
            started_at=clock.now(),
            consultation_id=consultation.id,
            compact_samples=90 * 360,
            ended=False,
        ),
        twelve_lead=twelve_lead,
        twelve_lead_id=await store_stream(
            services,
            twelve_lead,
            patient_id=world.patient.id,
            source_user_id=world.clin_a.user_id,
            started_at=clock.now() - timedelta(days=2),
            frame_seconds=5.0,
        ),
    )


def entries(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def stream_samples(observations: list[dict[str, Any]], stream_id: int, n_signals: int) -> np.ndarray:
    """The stream's samples, rebuilt from its ECG observations' SampledData in id order."""
    mine = [o for o in observations if o["id"].startswith(f"ecg-{stream_id}-")]
    mine.sort(key=lambda o: int(o["id"].rsplit("-", 1)[1]))
    columns = [
        np.concatenate([[int(v) for v in o["component"][lead]["valueSampledData"]["data"].split(" ")] for o in mine])
        for lead in range(n_signals)
    ]
    return np.stack(columns, axis=1)


async def test_bundle_holds_the_whole_record_and_the_exact_samples(
    services: Services, world: World, record: Record
) -> None:
    bundle = await services.fhir.patient_bundle(world.clin_a, world.patient.id, source="t", base_url=BASE)
    Bundle.model_validate(bundle)

    [patient] = entries(bundle, "Patient")
    assert {"system": CCCD_SYSTEM, "value": world.patient.cccd}.items() <= patient["identifier"][0].items()
    [encounter] = entries(bundle, "Encounter")
    assert (encounter["id"], encounter["status"]) == (str(record.consultation_id), "planned")
    assert encounter["participant"][1]["individual"]["display"] == world.spec_cardio.display_name
    observations = entries(bundle, "Observation")
    vitals = {o["id"]: o for o in observations if o["id"].startswith("vital-")}
    loinc = [[c["code"] for c in vitals[f"vital-{i}"]["code"]["coding"]] for i in record.vital_ids]
    assert loinc == [["8867-4"], ["59408-5", "2708-6"], ["85354-9"], ["9279-1"], ["8310-5"]]
    assert vitals[f"vital-{record.vital_ids[2]}"]["component"][1]["valueQuantity"]["value"] == 58
    assert all(v["encounter"] == {"reference": f"Encounter/{record.consultation_id}"} for v in vitals.values())

    holter = stream_samples(observations, record.holter_id, 2)
    twelve = stream_samples(observations, record.twelve_lead_id, 15)
    assert np.array_equal(holter, record.holter.samples)
    assert np.array_equal(twelve, record.twelve_lead.samples)
    holter_obs = [o for o in observations if o["id"].startswith(f"ecg-{record.holter_id}-")]
    assert [o["status"] for o in holter_obs] == ["final", "final", "final", "preliminary"]
    assert all(o["encounter"]["reference"] == f"Encounter/{record.consultation_id}" for o in holter_obs)
    assert all("encounter" not in o for o in observations if o["id"].startswith(f"ecg-{record.twelve_lead_id}-"))
    assert bundle["entry"][0]["fullUrl"] == f"{BASE}/Patient/{world.patient.id}"

    [audit] = await audit_rows(services, action="fhir.export")
    assert (audit.actor_user_id, audit.patient_id, audit.outcome, audit.source) == (
        world.clin_a.user_id,
        world.patient.id,
        "success",
        "t",
    )
    assert world.patient.cccd not in audit.detail and world.patient.full_name not in audit.detail


async def test_the_specialist_on_the_case_may_export(services: Services, world: World, record: Record) -> None:
    bundle = await services.fhir.patient_bundle(
        world.spec_cardio, world.patient.id, source="t", base_url=BASE, bundle_type="searchset"
    )
    assert Bundle.model_validate(bundle).type == "searchset"
    assert bundle["total"] == 1 and bundle["entry"][0]["search"]["mode"] == "match"


async def test_command_line_export_is_audited_as_the_system(services: Services, world: World, record: Record) -> None:
    patient_id = await services.fhir.patient_id_by_cccd("0101 9001 2345")
    bundle = await services.fhir.patient_bundle(None, patient_id, source="cli", base_url=BASE)

    assert entries(bundle, "Patient")[0]["id"] == str(world.patient.id)
    [audit] = await audit_rows(services, action="fhir.export")
    assert (audit.actor_user_id, audit.source, audit.outcome) == (None, "cli", "success")


@pytest.mark.parametrize("who", ["clin_b", "spec_cardio2", "spec_neuro", "coord"])
async def test_others_are_denied_and_the_attempt_is_audited(
    services: Services, world: World, record: Record, who: str
) -> None:
    actor = getattr(world, who)
    with pytest.raises(PermissionDenied):
        await services.fhir.patient_bundle(actor, world.patient.id, source="t", base_url=BASE)
    with pytest.raises(PermissionDenied):
        await services.fhir.observation_resource(actor, f"ecg-{record.holter_id}-0", source="t")
    with pytest.raises(PermissionDenied):
        await services.fhir.encounter_resource(actor, record.consultation_id, source="t")

    denied = await audit_rows(services, outcome="denied", actor_user_id=actor.user_id)
    assert [(a.action, a.patient_id) for a in denied] == [
        ("fhir.export", world.patient.id),
        ("fhir.read", world.patient.id),
        ("fhir.read", world.patient.id),
    ]
    assert await audit_rows(services, action="fhir.export", outcome="success") == []


async def test_single_resources_match_the_bundle(services: Services, world: World, record: Record) -> None:
    bundle = await services.fhir.patient_bundle(world.clin_a, world.patient.id, source="t", base_url=BASE)
    by_id = {(e["resource"]["resourceType"], e["resource"]["id"]): e["resource"] for e in bundle["entry"]}
    fhir_service = services.fhir

    patient = await fhir_service.patient_resource(world.clin_a, world.patient.id, source="t")
    FhirPatient.model_validate(patient)
    assert patient == by_id[("Patient", str(world.patient.id))]
    encounter = await fhir_service.encounter_resource(world.clin_a, record.consultation_id, source="t")
    Encounter.model_validate(encounter)
    assert encounter == by_id[("Encounter", str(record.consultation_id))]
    for observation_id in (
        f"vital-{record.vital_ids[2]}",
        f"ecg-{record.holter_id}-3",
        f"ecg-{record.twelve_lead_id}-1",
    ):
        observation = await fhir_service.observation_resource(world.clin_a, observation_id, source="t")
        Observation.model_validate(observation)
        assert observation == by_id[("Observation", observation_id)]

    reads = await audit_rows(services, action="fhir.read", outcome="success")
    assert [a.detail for a in reads] == [
        f"Patient/{world.patient.id}",
        f"Encounter/{record.consultation_id}",
        f"Observation/vital-{record.vital_ids[2]}",
        f"Observation/ecg-{record.holter_id}-3",
        f"Observation/ecg-{record.twelve_lead_id}-1",
    ]


async def test_unknown_observations_are_not_found(services: Services, world: World, record: Record) -> None:
    holter = record.holter_id
    for observation_id in ("vital-999", "ecg-999-0", f"ecg-{holter}-4", f"wave-{holter}-0", "bogus", "vital-1-2"):
        with pytest.raises(NotFound):
            await services.fhir.observation_resource(world.clin_a, observation_id, source="t")
    assert await audit_rows(services, action="fhir.read") == []


async def test_unknown_patients_are_not_found(services: Services, world: World) -> None:
    with pytest.raises(NotFound):
        await services.fhir.patient_bundle(world.admin, world.patient.id + 100, source="t", base_url=BASE)
    with pytest.raises(NotFound):
        await services.fhir.patient_resource(world.clin_a, 0, source="t")
    with pytest.raises(NotFound):
        await services.fhir.patient_id_by_cccd("999999999999")
    with pytest.raises(ValidationFailed):
        await services.fhir.patient_id_by_cccd("12345")
    assert await audit_rows(services, action="fhir.export") == []


async def test_a_record_without_consultations_or_signals(services: Services, world: World) -> None:
    bundle = await services.fhir.patient_bundle(world.admin, world.patient.id, source="t", base_url=BASE)
    Bundle.model_validate(bundle)
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Patient"]
