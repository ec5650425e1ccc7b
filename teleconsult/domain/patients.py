"""Patients: identity rules for Vietnamese citizen IDs (CCCD) and health-insurance numbers (BHYT)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from teleconsult.domain.errors import ValidationFailed


class Sex(StrEnum):
    MALE = "male"
    FEMALE = "female"
    OTHER = "other"


_CCCD = re.compile(r"^[0-9]{12}$")  # [0-9], not \d: \d also matches fullwidth and other Unicode digits
# BHYT card number: 2-letter beneficiary group, 1-digit benefit level, 2-digit province, 10-digit ID.
_BHYT = re.compile(r"^[A-Z]{2}[0-9]{13}$")
MAX_NAME = 120
MAX_ADDRESS = 300


@dataclass(frozen=True, slots=True)
class PatientDraft:
    cccd: str
    full_name: str
    date_of_birth: date
    sex: Sex
    bhyt: str | None = None
    address: str = ""
    province: str = ""


@dataclass(frozen=True, slots=True)
class Patient:
    id: int
    cccd: str
    full_name: str
    date_of_birth: date
    sex: Sex
    bhyt: str | None
    address: str
    province: str
    registered_by_facility_id: int

    def age_on(self, day: date) -> int:
        years = day.year - self.date_of_birth.year
        if (day.month, day.day) < (self.date_of_birth.month, self.date_of_birth.day):
            years -= 1
        return years


def normalize_cccd(raw: str) -> str:
    value = raw.strip().replace(" ", "")
    if not _CCCD.match(value):
        raise ValidationFailed("citizen ID (CCCD) must be exactly 12 digits", field="cccd")
    return value


def normalize_bhyt(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    value = raw.strip().replace(" ", "").upper()
    if not _BHYT.match(value):
        raise ValidationFailed("health-insurance number (BHYT) must be 2 letters followed by 13 digits", field="bhyt")
    return value


def normalize_name(raw: str) -> str:
    value = " ".join(unicodedata.normalize("NFC", raw).split())
    if not value:
        raise ValidationFailed("name is required", field="full_name")
    if len(value) > MAX_NAME:
        raise ValidationFailed(f"name is longer than {MAX_NAME} characters", field="full_name")
    return value


def fold_for_search(text: str) -> str:
    """Lowercase, strip Vietnamese diacritics, so 'nguyen van an' finds 'Nguyễn Văn An'."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    stripped = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return " ".join(stripped.lower().split())


def validate_patient(draft: PatientDraft, today: date) -> PatientDraft:
    if draft.date_of_birth > today:
        raise ValidationFailed("date of birth is in the future", field="date_of_birth")
    if draft.date_of_birth.year < today.year - 130:
        raise ValidationFailed("date of birth is implausibly old", field="date_of_birth")
    address = " ".join(draft.address.split())
    if len(address) > MAX_ADDRESS:
        raise ValidationFailed(f"address is longer than {MAX_ADDRESS} characters", field="address")
    province = " ".join(draft.province.split())
    if len(province) > MAX_NAME:
        raise ValidationFailed("province is too long", field="province")
    return PatientDraft(
        cccd=normalize_cccd(draft.cccd),
        full_name=normalize_name(draft.full_name),
        date_of_birth=draft.date_of_birth,
        sex=Sex(draft.sex),
        bhyt=normalize_bhyt(draft.bhyt),
        address=address,
        province=province,
    )
