"""FHIR R4 resources built from domain values: they validate with fhir.resources R4B, carry the codes a
receiving system looks for, and give back the stored ECG samples exactly."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wfdb
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient as FhirPatient
from numpy.typing import NDArray

from teleconsult.domain import fhir
from teleconsult.domain.consultation import Consultation, Outcome, Status, Urgency
from teleconsult.domain.patients import Patient, Sex
from teleconsult.domain.vitals import VitalKind, VitalSign, VitalSource

PHYSIONET = Path(__file__).resolve().parents[1] / "data" / "physionet"
T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
LOINC = "http://loinc.org"
MDC = "urn:oid:2.16.840.1.113883.6.24"

PATIENT = Patient(
    id=7,
    cccd="010190012345",
    full_name="Trần Thị Hồng Nhung",
    date_of_birth=date(1990, 3, 14),
    sex=Sex.FEMALE,
    bhyt="DN4010123456789",
    address="Thôn Na Lốc, xã Bản Phiệt",
    province="Lào Cai",
    registered_by_facility_id=3,
)


def consultation(status: Status, ended: bool = False) -> Consultation:
    return Consultation(
        id=12,
        patient_id=7,
        requesting_facility_id=3,
        requested_by_user_id=1,
        specialty="cardiology",
        urgency=Urgency.URGENT,
        summary="Đau ngực trái 2 giờ, ST chênh lên DII, DIII, aVF.",
        status=status,
        specialist_user_id=4 if status is not Status.REQUESTED else None,
        created_at=T0,
        accepted_at=T0 + timedelta(minutes=2) if status is not Status.REQUESTED else None,
        ended_at=T0 + timedelta(minutes=40) if ended else None,
        recommendation="Chuyển tuyến" if ended else None,
        icd10_code="I21.1" if ended else None,
        outcome=Outcome.TRANSFER if ended else None,
    )


def vital(kind: VitalKind, value: float, value2: float | None = None, consultation_id: int | None = 12) -> VitalSign:
    return VitalSign(
        id=5,
        patient_id=7,
        consultation_id=consultation_id,
        kind=kind,
        value=value,
        value2=value2,
        unit="",
        observed_at=T0 + timedelta(minutes=5),
        source=VitalSource.MANUAL,
        recorded_by_user_id=1,
        recorded_by_name="YS. Lò Văn Sáng",
        client_id="abcdefgh",
    )


def codes(concept: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for c in concept["coding"]]


def digits(data: str) -> NDArray[np.int64]:
    """A SampledData ``data`` string parsed independently of the code under test."""
    return np.array([int(v) for v in data.split(" ")], dtype=np.int64)


# --- Patient and Encounter -----------------------------------------------------------------------------------


def test_patient_carries_cccd_bhyt_name_and_address() -> None:
    resource = fhir.patient_resource(PATIENT, managing_organization="Trạm Y tế xã Bản Phiệt")
    model = FhirPatient.model_validate(resource)

    assert model.id == "7" and model.gender == "female" and model.birthDate == date(1990, 3, 14)
    identifiers = {i["system"]: i["value"] for i in resource["identifier"]}
    assert identifiers == {fhir.CCCD_SYSTEM: "010190012345", fhir.BHYT_SYSTEM: "DN4010123456789"}
    [name] = resource["name"]
    assert (name["text"], name["family"], name["given"]) == ("Trần Thị Hồng Nhung", "Trần", ["Thị", "Hồng", "Nhung"])
    [address] = resource["address"]
    assert (address["text"], address["state"], address["country"]) == ("Thôn Na Lốc, xã Bản Phiệt", "Lào Cai", "VN")
    assert resource["managingOrganization"] == {"display": "Trạm Y tế xã Bản Phiệt"}


def test_patient_without_bhyt_or_address_leaves_them_out() -> None:
    bare = Patient(8, "001085004321", "Mỷ", date(1958, 1, 1), Sex.OTHER, None, "", "", 3)
    resource = fhir.patient_resource(bare)
    FhirPatient.model_validate(resource)
    assert [i["system"] for i in resource["identifier"]] == [fhir.CCCD_SYSTEM]
    assert "address" not in resource and "given" not in resource["name"][0]
    assert resource["gender"] == "other"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (Status.REQUESTED, "planned"),
        (Status.OFFERED, "planned"),
        (Status.ACCEPTED, "planned"),
        (Status.IN_PROGRESS, "in-progress"),
        (Status.COMPLETED, "finished"),
        (Status.CANCELLED, "cancelled"),
        (Status.EXPIRED, "cancelled"),
    ],
)
def test_encounter_status_follows_the_consultation(status: Status, expected: str) -> None:
    resource = fhir.encounter_resource(
        consultation(status), facility_name="TYT", requested_by_name="YS. Sáng", specialist_name=None
    )
    Encounter.model_validate(resource)
    assert resource["status"] == expected


def test_encounter_is_virtual_with_period_reason_provider_and_participants() -> None:
    resource = fhir.encounter_resource(
        consultation(Status.COMPLETED, ended=True),
        facility_name="Trạm Y tế xã Bản Phiệt",
        requested_by_name="YS. Lò Văn Sáng",
        specialist_name="PGS.TS. Phạm Quang Hưng",
    )
    model = Encounter.model_validate(resource)

    assert (model.class_fhir.system, model.class_fhir.code) == (
        "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "VR",
    )
    assert resource["subject"] == {"reference": "Patient/7"}
    assert resource["period"] == {"start": "2026-11-22T02:00:00Z", "end": "2026-11-22T02:40:00Z"}
    assert resource["reasonCode"] == [{"text": "Đau ngực trái 2 giờ, ST chênh lên DII, DIII, aVF."}]
    assert resource["serviceProvider"] == {"display": "Trạm Y tế xã Bản Phiệt"}
    roles = {p["type"][0]["coding"][0]["code"]: p["individual"]["display"] for p in resource["participant"]}
    assert roles == {"REF": "YS. Lò Văn Sáng", "CON": "PGS.TS. Phạm Quang Hưng"}
    assert codes(resource["priority"]) == [("http://terminology.hl7.org/CodeSystem/v3-ActPriority", "UR")]


# --- Vital signs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "loinc", "unit"),
    [
        (VitalKind.HEART_RATE, 72.0, ["8867-4"], "/min"),
        (VitalKind.SPO2, 97.0, ["59408-5", "2708-6"], "%"),
        (VitalKind.RESPIRATORY_RATE, 18.0, ["9279-1"], "/min"),
        (VitalKind.TEMPERATURE, 38.2, ["8310-5"], "Cel"),
    ],
)
def test_vital_sign_observation(kind: VitalKind, value: float, loinc: list[str], unit: str) -> None:
    resource = fhir.vital_observation(vital(kind, value))
    Observation.model_validate(resource)

    assert resource["id"] == "vital-5" and resource["status"] == "final"
    assert codes(resource["code"]) == [(LOINC, code) for code in loinc]
    assert codes(resource["category"][0]) == [
        ("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs")
    ]
    assert resource["valueQuantity"] == {
        "value": value,
        "unit": unit,
        "system": "http://unitsofmeasure.org",
        "code": unit,
    }
    assert resource["effectiveDateTime"] == "2026-11-22T02:05:00Z"
    assert resource["subject"] == {"reference": "Patient/7"}
    assert resource["encounter"] == {"reference": "Encounter/12"}


def test_blood_pressure_is_one_panel_with_systolic_and_diastolic_components() -> None:
    resource = fhir.vital_observation(vital(VitalKind.BLOOD_PRESSURE, 135.0, 85.0, consultation_id=None))
    Observation.model_validate(resource)

    assert codes(resource["code"]) == [(LOINC, "85354-9")]
    assert "valueQuantity" not in resource and "encounter" not in resource
    parts = {codes(c["code"])[0][1]: c["valueQuantity"] for c in resource["component"]}
    assert parts["8480-6"] == {"value": 135, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
    assert parts["8462-4"]["value"] == 85 and set(parts) == {"8480-6", "8462-4"}


# --- Waveforms -----------------------------------------------------------------------------------------------


def segments_of(record: wfdb.Record, stream_id: int = 3) -> list[fhir.WaveformSegment]:
    signals = tuple(
        fhir.WaveformSignal(name, units, float(gain), int(baseline))
        for name, units, gain, baseline in zip(
            record.sig_name, record.units, record.adc_gain, record.baseline, strict=True
        )
    )
    rate_mhz = round(record.fs * 1000)
    samples = record.d_signal.astype(np.int64)
    return [
        fhir.WaveformSegment(
            stream_id=stream_id,
            index=i,
            patient_id=7,
            consultation_id=12,
            label=record.record_name,
            rate_mhz=rate_mhz,
            signals=signals,
            stream_started_at=T0,
            first_sample=start,
            samples=samples[start:end],
        )
        for i, (start, end) in enumerate(fhir.segment_ranges(len(samples), rate_mhz, len(signals)))
    ]


@pytest.mark.parametrize("name", ["100", "s0010_re"])
def test_ecg_sampled_data_gives_back_the_stored_samples_exactly(name: str) -> None:
    record = wfdb.rdrecord(str(PHYSIONET / name), physical=False)
    stored = record.d_signal.astype(np.int64)
    observations = [o for s in segments_of(record) for o in fhir.waveform_observations(s)]

    assert len(observations) > 1  # both records are longer than one Observation may hold
    columns: list[list[NDArray[np.int64]]] = [[] for _ in record.sig_name]
    for index, resource in enumerate(observations):
        model = Observation.model_validate(resource)
        assert resource["id"] == f"ecg-3-{index}"
        assert codes(resource["code"]) == [(LOINC, "11524-6")]
        assert len(model.component) == record.n_sig
        for lead, component in enumerate(resource["component"]):
            columns[lead].append(digits(component["valueSampledData"]["data"]))
    for lead in range(record.n_sig):
        assert np.array_equal(np.concatenate(columns[lead]), stored[:, lead])


def test_sampled_data_scale_is_baseline_gain_and_period_in_ms() -> None:
    record = wfdb.rdrecord(str(PHYSIONET / "100"), physical=False)
    first = fhir.waveform_observations(segments_of(record)[0])[0]
    [mlii, v5] = first["component"]
    data = mlii["valueSampledData"]

    assert data["origin"] == {"value": 1024, "unit": "mV", "system": "http://unitsofmeasure.org", "code": "mV"}
    assert data["factor"] == 1 / 200 and data["dimensions"] == 1
    assert data["period"] == pytest.approx(1000 / 360)
    assert data["extension"][0]["url"] == fhir.SCALING_EXTENSION
    model = Observation.model_validate(first)
    assert model.component[0].valueSampledData.factor == Decimal("0.005")
    # Physical values per the documented rule agree with wfdb's own conversion.
    physical = (digits(data["data"]) - data["origin"]["value"]) * data["factor"]
    expected = wfdb.rdrecord(str(PHYSIONET / "100"), sampto=len(physical)).p_signal[:, 0]
    assert np.allclose(physical, expected)
    # MLII and V5 have no standard lead code of their own: the generic ECG potential code, named in text.
    assert codes(mlii["code"]) == [(MDC, "131328")] and (mlii["code"]["text"], v5["code"]["text"]) == ("MLII", "V5")


def test_twelve_lead_components_carry_mdc_lead_codes() -> None:
    record = wfdb.rdrecord(str(PHYSIONET / "s0010_re"), physical=False)
    first = fhir.waveform_observations(segments_of(record)[0])[0]
    by_label = {c["code"]["text"]: codes(c["code"])[0] for c in first["component"]}

    expected = {"I": 131329, "II": 131330, "III": 131389, "aVR": 131390, "aVL": 131391, "aVF": 131392}
    expected |= {f"V{i}": 131330 + i for i in range(1, 7)}
    for label, code in expected.items():
        assert by_label[label] == (MDC, str(code))
    assert by_label["vx"] == (MDC, "131328")


def test_segments_are_bounded_and_contiguous_in_time() -> None:
    record = wfdb.rdrecord(str(PHYSIONET / "100"), physical=False)
    segments = segments_of(record)
    observations = [fhir.waveform_observations(s)[0] for s in segments]

    assert len(observations) == 31  # 650000 samples at 360 Hz: 30 full minutes and 5.6 s
    for before, after in zip(observations, observations[1:], strict=False):
        assert before["effectivePeriod"]["end"] == after["effectivePeriod"]["start"]
    assert observations[0]["effectivePeriod"] == {"start": "2026-11-22T02:00:00Z", "end": "2026-11-22T02:01:00Z"}
    assert observations[-1]["effectivePeriod"]["end"] == "2026-11-22T02:30:05.555556Z"
    for segment in segments:
        assert segment.samples.size <= fhir.SEGMENT_MAX_VALUES and len(segment.samples) <= 60 * 360
    # 15 leads at 1000 Hz: the value cap, not the minute, bounds the segment.
    assert fhir.segment_length(1_000_000, 15) == fhir.SEGMENT_MAX_VALUES // 15


def test_other_signals_go_to_a_separate_waveform_observation() -> None:
    signals = (
        fhir.WaveformSignal("II", "mV", 200.0, 0),
        fhir.WaveformSignal("PLETH", "NU", 0.0, 0),
        fhir.WaveformSignal("ABP", "mmHg", 10.0, -100),
    )
    samples = np.array([[1, 2, 3], [4, 5, 6], [-7, 8, 9]], dtype=np.int64)
    segment = fhir.WaveformSegment(9, 0, 7, None, "bedside", 125_000, signals, T0, 0, samples, final=False)
    ecg, other = fhir.waveform_observations(segment)

    for resource in (ecg, other):
        Observation.model_validate(resource)
        assert resource["status"] == "preliminary" and "encounter" not in resource
    assert (ecg["id"], other["id"]) == ("ecg-9-0", "wave-9-0")
    assert [c["code"]["text"] for c in ecg["component"]] == ["II"]
    assert digits(ecg["component"][0]["valueSampledData"]["data"]).tolist() == [1, 4, -7]
    pleth, abp = other["component"]
    assert "factor" not in pleth["valueSampledData"]  # uncalibrated: no scale to claim
    assert abp["valueSampledData"]["origin"]["code"] == "mm[Hg]" and abp["valueSampledData"]["factor"] == 0.1
    assert digits(abp["valueSampledData"]["data"]).tolist() == [3, 6, 9]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("vital-5", ("vital", (5,))),
        ("ecg-3-0", ("ecg", (3, 0))),
        ("wave-3-12", ("wave", (3, 12))),
        ("ecg-3", None),
        ("vital-5-1", None),
        ("vital-", None),
        ("vital-٣", None),
        ("patient-1", None),
        ("ecg-1-99999999999999999999", None),
    ],
)
def test_observation_ids_parse_back(text: str, parsed: tuple[str, tuple[int, ...]] | None) -> None:
    assert fhir.parse_observation_id(text) == parsed


# --- Bundle and errors ---------------------------------------------------------------------------------------


def test_bundle_of_a_record_validates_and_entries_resolve() -> None:
    record = wfdb.rdrecord(str(PHYSIONET / "100"), physical=False, sampto=3000)
    resources = [
        fhir.patient_resource(PATIENT),
        fhir.encounter_resource(
            consultation(Status.IN_PROGRESS), facility_name="TYT", requested_by_name="A", specialist_name="B"
        ),
        fhir.vital_observation(vital(VitalKind.HEART_RATE, 80)),
        *[o for s in segments_of(record) for o in fhir.waveform_observations(s)],
    ]
    for bundle_type in ("collection", "searchset"):
        bundle = fhir.bundle(resources, bundle_type=bundle_type, base_url="https://h.example/fhir/", timestamp=T0)
        model = Bundle.model_validate(bundle)
        fhir.validate_bundle(bundle)
        assert model.type == bundle_type and len(model.entry) == 4
        urls = [e["fullUrl"] for e in bundle["entry"]]
        assert urls[:3] == [
            "https://h.example/fhir/Patient/7",
            "https://h.example/fhir/Encounter/12",
            "https://h.example/fhir/Observation/vital-5",
        ]
    assert bundle["total"] == 1
    assert [e["search"]["mode"] for e in bundle["entry"]] == ["match", "include", "include", "include"]


def test_operation_outcome() -> None:
    outcome = fhir.operation_outcome("forbidden", "no access")
    model = OperationOutcome.model_validate(outcome)
    assert model.issue[0].code == "forbidden" and model.issue[0].severity == "error"
