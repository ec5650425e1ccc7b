"""Users, roles and facilities of the hub-and-spoke network."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from teleconsult.domain.errors import ValidationFailed


class Role(StrEnum):
    CLINICIAN = "clinician"
    SPECIALIST = "specialist"
    COORDINATOR = "coordinator"
    ADMIN = "admin"


class FacilityLevel(StrEnum):
    CENTRAL = "central"
    PROVINCIAL = "provincial"
    DISTRICT = "district"
    COMMUNE = "commune"


@dataclass(frozen=True, slots=True)
class Facility:
    id: int
    code: str
    name: str
    level: FacilityLevel
    province: str
    hub_id: int | None


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting: the authenticated user, as the services see them."""

    user_id: int
    username: str
    display_name: str
    role: Role
    facility_id: int
    facility_level: FacilityLevel
    specialty: str | None
    locale: str | None = None


_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
_FACILITY_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{1,31}$")
MIN_PASSWORD_LENGTH = 10


def validate_username(username: str) -> str:
    if not _USERNAME.fullmatch(username):  # fullmatch: "$" alone lets a trailing newline through
        raise ValidationFailed(
            "username must be 3-64 characters: lowercase letters, digits, '.', '_' or '-'", field="username"
        )
    return username


def validate_facility_code(code: str) -> str:
    if not _FACILITY_CODE.fullmatch(code):
        raise ValidationFailed("facility code must be 2-32 uppercase letters, digits, '_' or '-'", field="code")
    return code


def validate_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(f"password must be at least {MIN_PASSWORD_LENGTH} characters", field="password")
    if len(password) > 1024:
        raise ValidationFailed("password is too long", field="password")
    return password


def validate_role_placement(role: Role, level: FacilityLevel, specialty: str | None) -> None:
    """Clinicians work at spoke facilities; specialists at central hospitals, with a specialty."""
    if role is Role.CLINICIAN and level is FacilityLevel.CENTRAL:
        raise ValidationFailed("a clinician belongs to a commune, district or provincial facility", field="role")
    if role is Role.SPECIALIST:
        if level is not FacilityLevel.CENTRAL:
            raise ValidationFailed("a specialist belongs to a central hospital", field="facility")
        if not specialty:
            raise ValidationFailed("a specialist needs a specialty", field="specialty")
    elif specialty:
        raise ValidationFailed("only specialists have a specialty", field="specialty")
