"""FHIR R4 resources of a patient's record: Patient, Encounter (one per consultation), vital-sign and
waveform Observations, and the Bundle around them. Pure: domain values in, JSON-able dicts out, each
checked against the fhir.resources R4B model before it is returned.

Choices a receiver needs to know:

- Identifiers. Vietnam has no registered FHIR naming system for the citizen ID (CCCD) or the health-insurance
  card (BHYT), so both use project URIs (``CCCD_SYSTEM``, ``BHYT_SYSTEM``) and carry the HL7 v2 identifier
  type (``NI`` national identifier, ``NH`` national health plan) so that a receiver can tell them apart.
- Resource ids: ``Patient/{patient id}``, ``Encounter/{consultation id}``, ``Observation/vital-{id}`` for a
  vital sign, ``Observation/ecg-{stream}-{segment}`` for the ECG leads of one segment of a stored stream and
  ``Observation/wave-{stream}-{segment}`` for its other signals (PLETH, ABP, RESP, ...), if any.
- Waveforms. A stream is cut into segments of at most ``SEGMENT_SECONDS`` and at most ``SEGMENT_MAX_VALUES``
  values (samples x signals), so that no Observation grows past a few megabytes: 30 minutes of a 2-lead
  360 Hz Holter become 30 Observations. Segment boundaries are multiples of one length per stream, so an id
  keeps naming the same samples while a live stream grows. Concatenating the segments' ``data`` in id order
  gives back the stored samples exactly.
- SampledData carries the stored *digital* samples: ``data`` = the integers as the device gave them,
  ``origin.value`` = the signal's digital baseline, ``factor`` = 1/gain, ``period`` = milliseconds between
  samples, ``dimensions`` = 1. The unit on ``origin`` is the signal's physical unit. Physical values are
  ``(data - origin.value) * factor`` (WFDB's ``(digital - baseline) / gain``); the ``SCALING_EXTENSION`` on
  every SampledData says so, because FHIR's generic rule ``data * factor + origin`` only agrees with it when
  the baseline is 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient as FhirPatient
from numpy.typing import NDArray

from teleconsult.domain.consultation import Consultation, Status, Urgency
from teleconsult.domain.patients import Patient
from teleconsult.domain.signals import MDC_SYSTEM, SignalKind, describe
from teleconsult.domain.vitals import LOINC_DIASTOLIC, LOINC_SPO2_EXTRA, LOINC_SYSTOLIC, SPECS, VitalKind, VitalSign

Resource = dict[str, Any]

PROJECT_URI = "https://teleconsult.example/fhir"
CCCD_SYSTEM = f"{PROJECT_URI}/sid/cccd"
BHYT_SYSTEM = f"{PROJECT_URI}/sid/bhyt"
SCALING_EXTENSION = f"{PROJECT_URI}/StructureDefinition/sampleddata-digital-scaling"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ACT_PRIORITY = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ECG_STUDY = ("11524-6", "EKG study")
MDC_ECG_ELEC_POTL = 131328  # an ECG lead without a standard code of its own (MLII, Frank X/Y/Z, ...)
SEGMENT_SECONDS = 60
SEGMENT_MAX_VALUES = 240_000
SCALING_NOTE = (
    "data are the stored digital samples and origin.value is the digital baseline: "
    "physical value (unit of origin) = (data - origin.value) * factor"
)

_ENCOUNTER_STATUS = {
    Status.REQUESTED: "planned",
    Status.OFFERED: "planned",
    Status.ACCEPTED: "planned",
    Status.IN_PROGRESS: "in-progress",
    Status.COMPLETED: "finished",
    Status.CANCELLED: "cancelled",
    Status.EXPIRED: "cancelled",
}
_PRIORITY = {
    Urgency.EMERGENCY: ("EM", "emergency"),
    Urgency.URGENT: ("UR", "urgent"),
    Urgency.ROUTINE: ("R", "routine"),
}
# WFDB unit strings -> UCUM codes; a unit not listed travels as text only.
_UCUM_UNITS = {
    "mV": "mV",
    "uV": "uV",
    "V": "V",
    "mmHg": "mm[Hg]",
    "%": "%",
    "bpm": "/min",
    "degC": "Cel",
    "Ohm": "Ohm",
    "L/min": "L/min",
    "mL": "mL",
    "cmH2O": "cm[H2O]",
}


class FhirInvalid(Exception):
    """A resource this module built does not validate: a bug here, never the user's input."""


def _checked(model: Any, resource: Resource) -> Resource:
    try:
        model.model_validate(resource)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise FhirInvalid(f"{resource.get('resourceType')}/{resource.get('id')}: {exc}") from exc
    return resource


def instant(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetime in a FHIR resource")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    return {"system": system, "code": code, **({"display": display} if display else {})}


def _category(code: str, display: str) -> list[dict[str, Any]]:
    return [{"coding": [_coding(OBSERVATION_CATEGORY, code, display)]}]


# --- Patient -------------------------------------------------------------------------------------------------


def patient_resource(patient: Patient, *, managing_organization: str | None = None) -> Resource:
    """Vietnamese names are family name first: "Trần Thị Hồng Nhung" is family Trần, given Thị Hồng Nhung."""
    identifiers = [_identifier(CCCD_SYSTEM, patient.cccd, "NI", "CCCD")]
    if patient.bhyt:
        identifiers.append(_identifier(BHYT_SYSTEM, patient.bhyt, "NH", "BHYT"))
    resource: Resource = {
        "resourceType": "Patient",
        "id": str(patient.id),
        "identifier": identifiers,
        "active": True,
        "name": [_human_name(patient.full_name)],
        "gender": patient.sex.value,
        "birthDate": patient.date_of_birth.isoformat(),
    }
    if patient.address or patient.province:
        address: dict[str, Any] = {"use": "home", "country": "VN"}
        if patient.address:
            address.update(text=patient.address, line=[patient.address])
        if patient.province:
            address["state"] = patient.province
        resource["address"] = [address]
    if managing_organization:
        resource["managingOrganization"] = {"display": managing_organization}
    return _checked(FhirPatient, resource)


def _human_name(full_name: str) -> dict[str, Any]:
    family, *given = full_name.split()
    name: dict[str, Any] = {"use": "official", "text": full_name, "family": family}
    if given:
        name["given"] = given
    return name


def _identifier(system: str, value: str, type_code: str, label: str) -> dict[str, Any]:
    return {
        "use": "official",
        "type": {"coding": [_coding(IDENTIFIER_TYPE, type_code)], "text": label},
        "system": system,
        "value": value,
    }


# --- Encounter -----------------------------------------------------------------------------------------------


def encounter_resource(
    consultation: Consultation, *, facility_name: str, requested_by_name: str, specialist_name: str | None
) -> Resource:
    """One consultation as a virtual encounter. Its period runs from the request to the close; the case
    summary is the reason. The bundle goes only to those allowed to read the record."""
    participants = [
        _participant("REF", "referrer", requested_by_name),
        _participant("CON", "consultant", specialist_name),
    ]
    period = {"start": instant(consultation.created_at)}
    if consultation.ended_at:
        period["end"] = instant(consultation.ended_at)
    priority, priority_display = _PRIORITY[consultation.urgency]
    resource: Resource = {
        "resourceType": "Encounter",
        "id": str(consultation.id),
        "status": _ENCOUNTER_STATUS[consultation.status],
        "class": _coding(ACT_CODE, "VR", "virtual"),
        "serviceType": {"text": consultation.specialty},
        "priority": {"coding": [_coding(ACT_PRIORITY, priority, priority_display)]},
        "subject": {"reference": f"Patient/{consultation.patient_id}"},
        "participant": [p for p in participants if p],
        "period": period,
        "reasonCode": [{"text": consultation.summary}],
    }
    if not resource["participant"]:
        del resource["participant"]
    if facility_name:
        resource["serviceProvider"] = {"display": facility_name}
    return _checked(Encounter, resource)


def _participant(code: str, display: str, name: str | None) -> dict[str, Any]:
    if not name:
        return {}
    return {"type": [{"coding": [_coding(PARTICIPATION_TYPE, code, display)]}], "individual": {"display": name}}


# --- Vital signs ---------------------------------------------------------------------------------------------


def vital_observation_id(vital_id: int) -> str:
    return f"vital-{vital_id}"


def vital_observation(vital: VitalSign) -> Resource:
    spec = SPECS[vital.kind]
    codings = [_coding(LOINC, spec.loinc, spec.loinc_display)]
    if vital.kind is VitalKind.SPO2:
        codings.append(_coding(LOINC, *LOINC_SPO2_EXTRA))
    resource: Resource = {
        "resourceType": "Observation",
        "id": vital_observation_id(vital.id),
        "status": "final",
        "category": _category("vital-signs", "Vital Signs"),
        "code": {"coding": codings, "text": spec.loinc_display},
        "subject": {"reference": f"Patient/{vital.patient_id}"},
        "effectiveDateTime": instant(vital.observed_at),
    }
    if vital.consultation_id is not None:
        resource["encounter"] = {"reference": f"Encounter/{vital.consultation_id}"}
    if vital.recorded_by_name:
        resource["performer"] = [{"display": vital.recorded_by_name}]
    if vital.kind is VitalKind.BLOOD_PRESSURE:
        resource["component"] = [
            {"code": {"coding": [_coding(LOINC, *LOINC_SYSTOLIC)]}, "valueQuantity": _quantity(vital.value, spec.unit)},
            {
                "code": {"coding": [_coding(LOINC, *LOINC_DIASTOLIC)]},
                "valueQuantity": _quantity(vital.value2, spec.unit),
            },
        ]
    else:
        resource["valueQuantity"] = _quantity(vital.value, spec.unit)
    return _checked(Observation, resource)


def _quantity(value: float | None, ucum: str) -> dict[str, Any]:
    if value is None:
        raise ValueError("a blood pressure without its diastolic value")
    return {"value": _number(value), "unit": ucum, "system": UCUM, "code": ucum}


# --- Waveforms -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WaveformSignal:
    """One signal of a stream and its scale: physical = (digital - baseline) / gain, in ``units``."""

    name: str
    units: str
    gain: float
    baseline: int


@dataclass(frozen=True)
class WaveformSegment:
    """Samples [first_sample, first_sample + len(samples)) of one stored stream: shape (n, signals)."""

    stream_id: int
    index: int
    patient_id: int
    consultation_id: int | None
    label: str
    rate_mhz: int
    signals: tuple[WaveformSignal, ...]
    stream_started_at: datetime
    first_sample: int
    samples: NDArray[np.int64]
    final: bool = True

    def time_of(self, sample: int) -> datetime:
        return self.stream_started_at + timedelta(microseconds=round(sample * 1_000_000_000 / self.rate_mhz))


def segment_length(rate_mhz: int, n_signals: int) -> int:
    """Samples per segment of a stream: at most SEGMENT_SECONDS long and SEGMENT_MAX_VALUES values."""
    by_time = SEGMENT_SECONDS * rate_mhz // 1000
    by_size = SEGMENT_MAX_VALUES // max(1, n_signals)
    return max(1, min(by_time, by_size))


def segment_ranges(n_samples: int, rate_mhz: int, n_signals: int) -> list[tuple[int, int]]:
    """[start, end) of every segment of a stream holding ``n_samples`` samples, in order."""
    step = segment_length(rate_mhz, n_signals)
    return [(start, min(start + step, n_samples)) for start in range(0, n_samples, step)]


def waveform_observation_ids(stream_id: int, index: int) -> tuple[str, str]:
    """(ECG observation id, other-signals observation id) of one segment."""
    return f"ecg-{stream_id}-{index}", f"wave-{stream_id}-{index}"


def parse_observation_id(observation_id: str) -> tuple[str, tuple[int, ...]] | None:
    """("vital", (id,)), ("ecg" | "wave", (stream id, segment)), or None for an id this server never made."""
    kind, _, rest = observation_id.partition("-")
    parts = rest.split("-")
    if not all(p.isascii() and p.isdigit() and len(p) <= 18 for p in parts):
        return None
    numbers = tuple(int(p) for p in parts)
    if (kind == "vital" and len(numbers) == 1) or (kind in ("ecg", "wave") and len(numbers) == 2):
        return kind, numbers
    return None


def is_ecg(signal_name: str) -> bool:
    return describe(signal_name).kind is SignalKind.ECG


def waveform_kinds(signal_names: Iterable[str]) -> set[str]:
    """Which observations a segment of these signals makes: "ecg" for its leads, "wave" for the rest."""
    return {"ecg" if is_ecg(name) else "wave" for name in signal_names}


def waveform_observations(segment: WaveformSegment) -> list[Resource]:
    """The ECG leads of the segment as one Observation (LOINC 11524-6, a component per lead coded in MDC),
    and its other signals, if any, as a second one."""
    ecg_id, wave_id = waveform_observation_ids(segment.stream_id, segment.index)
    ecg = [i for i, s in enumerate(segment.signals) if is_ecg(s.name)]
    other = [i for i in range(len(segment.signals)) if i not in ecg]
    out = []
    if ecg:
        code = {"coding": [_coding(LOINC, *ECG_STUDY)], "text": "ECG"}
        out.append(_waveform_observation(segment, ecg_id, code, ecg, _lead_code))
    if other:
        code = {"text": f"Monitor waveforms: {segment.label}" if segment.label else "Monitor waveforms"}
        out.append(_waveform_observation(segment, wave_id, code, other, _signal_code))
    return out


def _waveform_observation(
    segment: WaveformSegment,
    observation_id: str,
    code: dict[str, Any],
    columns: Sequence[int],
    code_of: Callable[[str], dict[str, Any]],
) -> Resource:
    n = len(segment.samples)
    resource: Resource = {
        "resourceType": "Observation",
        "id": observation_id,
        "status": "final" if segment.final else "preliminary",
        "category": _category("procedure", "Procedure"),
        "code": code,
        "subject": {"reference": f"Patient/{segment.patient_id}"},
        "effectivePeriod": {
            "start": instant(segment.time_of(segment.first_sample)),
            "end": instant(segment.time_of(segment.first_sample + n)),
        },
        "component": [
            {
                "code": code_of(segment.signals[i].name),
                "valueSampledData": sampled_data(segment.signals[i], segment.rate_mhz, segment.samples[:, i]),
            }
            for i in columns
        ],
    }
    if segment.consultation_id is not None:
        resource["encounter"] = {"reference": f"Encounter/{segment.consultation_id}"}
    if segment.label:
        resource["device"] = {"display": segment.label}
    return _checked(Observation, resource)


def sampled_data(signal: WaveformSignal, rate_mhz: int, digital: NDArray[np.integer]) -> dict[str, Any]:
    origin: dict[str, Any] = {"value": int(signal.baseline), "unit": signal.units}
    ucum = _UCUM_UNITS.get(signal.units)
    if ucum:
        origin.update(system=UCUM, code=ucum)
    data: dict[str, Any] = {
        "extension": [{"url": SCALING_EXTENSION, "valueString": SCALING_NOTE}],
        "origin": origin,
        "period": 1_000_000 / rate_mhz,
        "dimensions": 1,
        "data": " ".join(map(str, np.asarray(digital, dtype=np.int64).tolist())),
    }
    if signal.gain:  # WFDB gain 0 means "uncalibrated": no factor, the values stay digital
        data["factor"] = 1 / signal.gain
    return data


def decode_sampled_data(data: str) -> NDArray[np.int64]:
    """The integers of a SampledData ``data`` string written by ``sampled_data``."""
    return np.array([int(v) for v in data.split()], dtype=np.int64)


def _lead_code(name: str) -> dict[str, Any]:
    info = describe(name)
    if info.mdc_code is not None:
        coding = _coding(MDC_SYSTEM, str(info.mdc_code), f"MDC_ECG_ELEC_POTL_{info.label.upper()}")
    else:
        coding = _coding(MDC_SYSTEM, str(MDC_ECG_ELEC_POTL), "MDC_ECG_ELEC_POTL")
    return {"coding": [coding], "text": info.label}


def _signal_code(name: str) -> dict[str, Any]:
    return {"text": describe(name).label}


# --- Bundle and errors ---------------------------------------------------------------------------------------


def bundle(
    resources: Iterable[Resource], *, bundle_type: str, base_url: str, timestamp: datetime, match: str = "Patient"
) -> Resource:
    """A ``collection`` (an export) or a ``searchset`` (``$everything``: resources of type ``match`` are the
    matches, the rest are included). Each entry's fullUrl is ``{base_url}/{type}/{id}``, so the relative
    references inside resolve within the bundle. Resources were checked one by one as they were built."""
    base = base_url.rstrip("/")
    entries = []
    for resource in resources:
        entry: dict[str, Any] = {"fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}", "resource": resource}
        if bundle_type == "searchset":
            entry["search"] = {"mode": "match" if resource["resourceType"] == match else "include"}
        entries.append(entry)
    result: Resource = {"resourceType": "Bundle", "type": bundle_type, "timestamp": instant(timestamp)}
    if bundle_type == "searchset":
        result["total"] = sum(1 for e in entries if e["search"]["mode"] == "match")
    result["entry"] = entries
    return result


def validate_bundle(resource: Resource) -> None:
    """Check a whole bundle, entries included (tests; the server checks each resource as it is built)."""
    _checked(Bundle, resource)


def operation_outcome(code: str, diagnostics: str, *, severity: str = "error") -> Resource:
    """An error as FHIR reports one: ``code`` from the IssueType value set (not-found, forbidden, login, ...)."""
    return _checked(
        OperationOutcome,
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
        },
    )
