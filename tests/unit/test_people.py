"""Who works where: usernames, facility codes, passwords and role placement."""

from __future__ import annotations

import pytest

from teleconsult.domain.errors import ValidationFailed
from teleconsult.domain.people import (
    FacilityLevel,
    Role,
    validate_facility_code,
    validate_password,
    validate_role_placement,
    validate_username,
)

L = FacilityLevel
SPOKES = [L.PROVINCIAL, L.DISTRICT, L.COMMUNE]


@pytest.mark.parametrize("level", SPOKES)
def test_clinicians_work_at_spoke_facilities(level: FacilityLevel) -> None:
    validate_role_placement(Role.CLINICIAN, level, None)


def test_a_clinician_cannot_be_placed_at_a_central_hospital() -> None:
    with pytest.raises(ValidationFailed) as raised:
        validate_role_placement(Role.CLINICIAN, L.CENTRAL, None)
    assert raised.value.field == "role"


def test_a_specialist_works_at_a_central_hospital_with_a_specialty() -> None:
    validate_role_placement(Role.SPECIALIST, L.CENTRAL, "cardiology")


@pytest.mark.parametrize("level", SPOKES)
def test_a_specialist_cannot_work_at_a_spoke(level: FacilityLevel) -> None:
    with pytest.raises(ValidationFailed) as raised:
        validate_role_placement(Role.SPECIALIST, level, "cardiology")
    assert raised.value.field == "facility"


@pytest.mark.parametrize("specialty", [None, ""])
def test_a_specialist_needs_a_specialty(specialty: str | None) -> None:
    with pytest.raises(ValidationFailed) as raised:
        validate_role_placement(Role.SPECIALIST, L.CENTRAL, specialty)
    assert raised.value.field == "specialty"


@pytest.mark.parametrize(
    ("role", "level"), [(Role.CLINICIAN, L.COMMUNE), (Role.COORDINATOR, L.CENTRAL), (Role.ADMIN, L.PROVINCIAL)]
)
def test_only_specialists_have_a_specialty(role: Role, level: FacilityLevel) -> None:
    with pytest.raises(ValidationFailed) as raised:
        validate_role_placement(role, level, "cardiology")
    assert raised.value.field == "specialty"


@pytest.mark.parametrize("level", list(FacilityLevel))
@pytest.mark.parametrize("role", [Role.COORDINATOR, Role.ADMIN])
def test_coordinators_and_admins_work_anywhere(role: Role, level: FacilityLevel) -> None:
    validate_role_placement(role, level, None)


@pytest.mark.parametrize("name", ["clin.a", "spec.cardio2", "abc", "nguyen_van-an", "a" * 64])
def test_good_usernames(name: str) -> None:
    assert validate_username(name) == name


@pytest.mark.parametrize("name", ["ab", "Clin.A", ".clin", "a" * 65, "nguyễn", "clin a", "clin.a\n", ""])
def test_bad_usernames(name: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        validate_username(name)
    assert raised.value.field == "username"


@pytest.mark.parametrize("code", ["BVTW", "BVT-LC", "TYT-A", "TYT_B", "C" * 32])
def test_good_facility_codes(code: str) -> None:
    assert validate_facility_code(code) == code


@pytest.mark.parametrize("code", ["B", "bvtw", "-BVTW", "BV TW", "C" * 33, "BVTW\n"])
def test_bad_facility_codes(code: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        validate_facility_code(code)
    assert raised.value.field == "code"


def test_password_length_bounds() -> None:
    assert validate_password("correct-horse-1") == "correct-horse-1"
    assert validate_password("x" * 1024)
    for bad in ["short", "123456789", "x" * 1025]:
        with pytest.raises(ValidationFailed):
            validate_password(bad)
