"""Vital signs: kinds, units, the ranges a typed-in value must fall in, default alarm limits, LOINC codes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from teleconsult.domain.errors import ValidationFailed


class VitalKind(StrEnum):
    HEART_RATE = "hr"
    SPO2 = "spo2"
    BLOOD_PRESSURE = "bp"
    RESPIRATORY_RATE = "rr"
    TEMPERATURE = "temp"


class VitalSource(StrEnum):
    MANUAL = "manual"
    DEVICE = "device"


@dataclass(frozen=True, slots=True)
class VitalSpec:
    unit: str  # UCUM
    low: float  # outside [low, high] a value is a typing or sensor error, not a reading
    high: float
    alarm_low: float  # default alarm limits; each viewer can adjust their own
    alarm_high: float
    loinc: str
    loinc_display: str
    decimals: int


SPECS: dict[VitalKind, VitalSpec] = {
    VitalKind.HEART_RATE: VitalSpec("/min", 20, 300, 50, 120, "8867-4", "Heart rate", 0),
    VitalKind.SPO2: VitalSpec(
        "%", 50, 100, 90, 100, "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", 0
    ),
    VitalKind.BLOOD_PRESSURE: VitalSpec(
        "mm[Hg]", 40, 300, 90, 160, "85354-9", "Blood pressure panel with all children optional", 0
    ),
    VitalKind.RESPIRATORY_RATE: VitalSpec("/min", 2, 80, 8, 30, "9279-1", "Respiratory rate", 0),
    VitalKind.TEMPERATURE: VitalSpec("Cel", 30, 45, 35.5, 38.5, "8310-5", "Body temperature", 1),
}
# Diastolic limits for the blood-pressure panel (its systolic uses SPECS[BLOOD_PRESSURE]).
DIASTOLIC_RANGE = (20.0, 200.0)
DIASTOLIC_ALARM = (50.0, 100.0)
LOINC_SYSTOLIC = ("8480-6", "Systolic blood pressure")
LOINC_DIASTOLIC = ("8462-4", "Diastolic blood pressure")
LOINC_SPO2_EXTRA = ("2708-6", "Oxygen saturation in Arterial blood")


@dataclass(frozen=True, slots=True)
class VitalSign:
    id: int
    patient_id: int
    consultation_id: int | None
    kind: VitalKind
    value: float
    value2: float | None
    unit: str
    observed_at: datetime
    source: VitalSource
    recorded_by_user_id: int
    recorded_by_name: str
    client_id: str


def parse_kind(kind: str) -> VitalKind:
    try:
        return VitalKind(kind)
    except ValueError:
        raise ValidationFailed("kind must be one of hr, spo2, bp, rr, temp", field="kind") from None


def validate_reading(kind: VitalKind, value: float, value2: float | None) -> tuple[float, float | None]:
    """The reading, rounded to the kind's precision, or a ValidationFailed that names the allowed range."""
    spec = SPECS[kind]
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ValidationFailed("value must be a number", field="value")
    if not spec.low <= value <= spec.high:
        raise ValidationFailed(f"value must be between {spec.low:g} and {spec.high:g} {spec.unit}", field="value")
    rounded = round(float(value), spec.decimals)
    if kind is not VitalKind.BLOOD_PRESSURE:
        if value2 is not None:
            raise ValidationFailed("only blood pressure has a second value", field="value2")
        return rounded, None
    if value2 is None or isinstance(value2, bool) or not math.isfinite(value2):
        raise ValidationFailed("blood pressure needs the diastolic value", field="value2")
    low, high = DIASTOLIC_RANGE
    if not low <= value2 <= high:
        raise ValidationFailed(f"diastolic must be between {low:g} and {high:g} mm[Hg]", field="value2")
    if value2 >= value:
        raise ValidationFailed("diastolic must be lower than systolic", field="value2")
    return rounded, round(float(value2), 0)
