"""The consultation: request, state machine, notes and the closing recommendation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from teleconsult.domain.errors import Conflict, ValidationFailed


class Status(StrEnum):
    REQUESTED = "requested"
    OFFERED = "offered"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class Urgency(StrEnum):
    EMERGENCY = "emergency"
    URGENT = "urgent"
    ROUTINE = "routine"


class Outcome(StrEnum):
    TREAT_LOCALLY = "treat_locally"
    TRANSFER = "transfer"
    FOLLOW_UP = "follow_up"


class Transition(StrEnum):
    OFFER = "offer"
    ACCEPT = "accept"
    START = "start"
    COMPLETE = "complete"
    CANCEL = "cancel"
    EXPIRE = "expire"


# The whole lifecycle in one table: (from, transition) -> to. Pairing (offers with timeouts) plugs in via
# OFFER/EXPIRE; an offered request can still be accepted from the open list.
_TRANSITIONS: dict[tuple[Status, Transition], Status] = {
    (Status.REQUESTED, Transition.OFFER): Status.OFFERED,
    (Status.OFFERED, Transition.OFFER): Status.OFFERED,
    (Status.REQUESTED, Transition.ACCEPT): Status.ACCEPTED,
    (Status.OFFERED, Transition.ACCEPT): Status.ACCEPTED,
    (Status.ACCEPTED, Transition.START): Status.IN_PROGRESS,
    (Status.ACCEPTED, Transition.COMPLETE): Status.COMPLETED,
    (Status.IN_PROGRESS, Transition.COMPLETE): Status.COMPLETED,
    (Status.REQUESTED, Transition.CANCEL): Status.CANCELLED,
    (Status.OFFERED, Transition.CANCEL): Status.CANCELLED,
    (Status.ACCEPTED, Transition.CANCEL): Status.CANCELLED,
    (Status.REQUESTED, Transition.EXPIRE): Status.EXPIRED,
    (Status.OFFERED, Transition.EXPIRE): Status.EXPIRED,
}

OPEN_STATUSES = frozenset({Status.REQUESTED, Status.OFFERED})
ACTIVE_STATUSES = frozenset({Status.REQUESTED, Status.OFFERED, Status.ACCEPTED, Status.IN_PROGRESS})
TERMINAL_STATUSES = frozenset({Status.COMPLETED, Status.CANCELLED, Status.EXPIRED})


def next_status(current: Status, transition: Transition) -> Status:
    try:
        return _TRANSITIONS[(current, transition)]
    except KeyError:
        raise Conflict(f"cannot {transition.value} a consultation that is {current.value}") from None


def statuses_allowing(transition: Transition) -> frozenset[Status]:
    """The states from which ``transition`` is legal: used for atomic conditional updates."""
    return frozenset(src for (src, t) in _TRANSITIONS if t is transition)


_ICD10 = re.compile(r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$")
MAX_RECOMMENDATION = 8000


def normalize_icd10(raw: str) -> str:
    value = raw.strip().upper()
    if len(value) > 3 and "." not in value:
        value = f"{value[:3]}.{value[3:]}"
    if not _ICD10.match(value):
        raise ValidationFailed("ICD-10 code must look like 'I21' or 'I21.4'", field="icd10_code")
    return value


def normalize_text(raw: str, *, field: str, max_chars: int, required: bool = True) -> str:
    value = raw.replace("\r\n", "\n").strip()
    if required and not value:
        raise ValidationFailed(f"{field.replace('_', ' ')} is required", field=field)
    if len(value) > max_chars:
        raise ValidationFailed(f"{field.replace('_', ' ')} is longer than {max_chars} characters", field=field)
    return value


@dataclass(frozen=True, slots=True)
class Closing:
    recommendation: str
    icd10_code: str
    outcome: Outcome


def validate_closing(recommendation: str, icd10_code: str, outcome: str) -> Closing:
    try:
        parsed_outcome = Outcome(outcome)
    except ValueError:
        raise ValidationFailed("outcome must be treat_locally, transfer or follow_up", field="outcome") from None
    return Closing(
        recommendation=normalize_text(recommendation, field="recommendation", max_chars=MAX_RECOMMENDATION),
        icd10_code=normalize_icd10(icd10_code),
        outcome=parsed_outcome,
    )


@dataclass(frozen=True, slots=True)
class Consultation:
    id: int
    patient_id: int
    requesting_facility_id: int
    requested_by_user_id: int
    specialty: str
    urgency: Urgency
    summary: str
    status: Status
    specialist_user_id: int | None
    created_at: datetime
    accepted_at: datetime | None
    ended_at: datetime | None
    recommendation: str | None
    icd10_code: str | None
    outcome: Outcome | None


@dataclass(frozen=True, slots=True)
class CaseNote:
    id: int
    consultation_id: int
    author_user_id: int
    author_name: str
    text: str
    created_at: datetime
    client_id: str


@dataclass(frozen=True, slots=True)
class Participation:
    user_id: int
    display_name: str
    role: str
    joined_at: datetime
    left_at: datetime | None
