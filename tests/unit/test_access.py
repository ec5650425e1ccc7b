"""Who may do what, as a table: each row is an actor, a situation and the expected answer."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from teleconsult.domain import access
from teleconsult.domain.consultation import Consultation, Status, Urgency
from teleconsult.domain.people import Actor, FacilityLevel, Role

TYT_A, TYT_B, BVTW = 3, 4, 1

CLIN_A = Actor(10, "clin.a", "YS. Lò Văn Sáng", Role.CLINICIAN, TYT_A, FacilityLevel.COMMUNE, None)
CLIN_A2 = Actor(11, "clin.a2", "YS. Giàng Thị Dợ", Role.CLINICIAN, TYT_A, FacilityLevel.COMMUNE, None)
CLIN_B = Actor(12, "clin.b", "BS. Hoàng Thị Mai", Role.CLINICIAN, TYT_B, FacilityLevel.COMMUNE, None)
CARDIO = Actor(20, "spec.cardio", "PGS. Phạm Quang Hưng", Role.SPECIALIST, BVTW, FacilityLevel.CENTRAL, "cardiology")
CARDIO2 = Actor(21, "spec.cardio2", "TS. Đỗ Minh Châu", Role.SPECIALIST, BVTW, FacilityLevel.CENTRAL, "cardiology")
NEURO = Actor(22, "spec.neuro", "BS. Vũ Đức Thành", Role.SPECIALIST, BVTW, FacilityLevel.CENTRAL, "neurology")
COORD = Actor(30, "coord", "CN. Nguyễn Thu Hà", Role.COORDINATOR, BVTW, FacilityLevel.CENTRAL, None)
ADMIN = Actor(40, "admin", "Quản trị", Role.ADMIN, BVTW, FacilityLevel.CENTRAL, None)
ACTORS = {a.username: a for a in (CLIN_A, CLIN_A2, CLIN_B, CARDIO, CARDIO2, NEURO, COORD, ADMIN)}

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


def consultation(status: Status, specialist: Actor | None = None) -> Consultation:
    """A cardiology request from TYT-A by clin.a; ``specialist`` is who accepted it, if anyone."""
    return Consultation(
        id=1,
        patient_id=7,
        requesting_facility_id=TYT_A,
        requested_by_user_id=CLIN_A.user_id,
        specialty="cardiology",
        urgency=Urgency.URGENT,
        summary="Đau ngực 2 giờ, ST chênh lên",
        status=status,
        specialist_user_id=specialist.user_id if specialist else None,
        created_at=NOW,
        accepted_at=NOW if specialist else None,
        ended_at=None,
        recommendation=None,
        icd10_code=None,
        outcome=None,
    )


OPEN = consultation(Status.REQUESTED)
OFFERED = consultation(Status.OFFERED)
ACCEPTED = consultation(Status.ACCEPTED, CARDIO)
IN_PROGRESS = consultation(Status.IN_PROGRESS, CARDIO)
COMPLETED = consultation(Status.COMPLETED, CARDIO)
CANCELLED = consultation(Status.CANCELLED)


def case_id(value: object) -> str:
    if isinstance(value, Consultation):
        return value.status.value
    return str(value)


# -- the patient's record ------------------------------------------------------------------------------------

# Patient registered at TYT-A; one consultation was requested from TYT-B (clin.b) and accepted by spec.cardio;
# spec.neuro joined that room as a participant.
RECORD_FACTS = dict(
    registered_by_facility_id=TYT_A, requesting_facility_ids=[TYT_B], specialist_ids=[20], participant_ids=[22]
)
BARE_FACTS = dict(registered_by_facility_id=TYT_A, requesting_facility_ids=[], specialist_ids=[], participant_ids=[])


@pytest.mark.parametrize(
    ("username", "facts", "allowed"),
    [
        ("clin.a", BARE_FACTS, True),  # their facility registered the patient
        ("clin.a2", BARE_FACTS, True),  # a colleague at the same station
        ("clin.b", BARE_FACTS, False),  # another station, no link to the patient
        ("clin.b", RECORD_FACTS, True),  # their station requested a consultation for the patient
        ("spec.cardio", BARE_FACTS, False),  # a specialist with no consultation for this patient
        ("spec.cardio", RECORD_FACTS, True),  # accepted a consultation of the patient
        ("spec.cardio2", RECORD_FACTS, False),  # same specialty, never involved
        ("spec.neuro", RECORD_FACTS, True),  # took part in the room
        ("coord", RECORD_FACTS, False),
        ("admin", BARE_FACTS, True),
    ],
)
def test_can_view_record(username: str, facts: dict[str, object], allowed: bool) -> None:
    assert access.can_view_record(ACTORS[username], **facts) is allowed  # type: ignore[arg-type]


def test_record_access_accepts_generators() -> None:
    facts = dict(
        registered_by_facility_id=TYT_A,
        requesting_facility_ids=(f for f in [TYT_B]),
        specialist_ids=(s for s in [20]),
        participant_ids=iter([22]),
    )
    assert access.can_view_record(CLIN_B, **facts)  # type: ignore[arg-type]


# -- the consultation room -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "case", "allowed"),
    [
        ("clin.a", OPEN, True),  # the requesting clinician waits in the room for the specialist
        ("clin.a2", ACCEPTED, True),  # any clinician of the requesting station
        ("clin.a", IN_PROGRESS, True),
        ("clin.a", COMPLETED, False),  # closed rooms are closed
        ("clin.a", CANCELLED, False),
        ("clin.b", OPEN, False),
        ("clin.b", IN_PROGRESS, False),
        ("spec.cardio", OPEN, False),  # not accepted yet: not theirs
        ("spec.cardio", ACCEPTED, True),
        ("spec.cardio", IN_PROGRESS, True),
        ("spec.cardio", COMPLETED, False),
        ("spec.cardio2", IN_PROGRESS, False),  # someone else accepted
        ("spec.neuro", IN_PROGRESS, False),
        ("coord", IN_PROGRESS, False),
        ("admin", IN_PROGRESS, False),  # admins read records; they do not sit in on calls
    ],
    ids=case_id,
)
def test_can_join_room_and_write_notes(username: str, case: Consultation, allowed: bool) -> None:
    assert access.can_join_room(ACTORS[username], case) is allowed
    assert access.can_write_note(ACTORS[username], case) is allowed


# -- accepting, closing, cancelling --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "case", "allowed"),
    [
        ("spec.cardio", OPEN, True),
        ("spec.cardio2", OFFERED, True),  # an offer to someone else can still be taken from the open list
        ("spec.cardio2", ACCEPTED, False),  # already taken
        ("spec.cardio", IN_PROGRESS, False),
        ("spec.cardio", CANCELLED, False),
        ("spec.neuro", OPEN, False),  # wrong specialty
        ("clin.a", OPEN, False),
        ("admin", OPEN, False),
        ("coord", OPEN, False),
    ],
    ids=case_id,
)
def test_can_accept(username: str, case: Consultation, allowed: bool) -> None:
    assert access.can_accept(ACTORS[username], case) is allowed


@pytest.mark.parametrize(
    ("username", "case", "allowed"),
    [
        ("spec.cardio", ACCEPTED, True),
        ("spec.cardio", IN_PROGRESS, True),
        ("spec.cardio2", IN_PROGRESS, False),
        ("spec.cardio", OPEN, False),  # nobody accepted: nobody can close
        ("clin.a", IN_PROGRESS, False),  # the clinician asks; the specialist recommends and closes
        ("admin", IN_PROGRESS, False),
    ],
    ids=case_id,
)
def test_can_close(username: str, case: Consultation, allowed: bool) -> None:
    assert access.can_close(ACTORS[username], case) is allowed


@pytest.mark.parametrize(
    ("username", "case", "allowed"),
    [
        ("clin.a", OPEN, True),
        ("clin.a2", ACCEPTED, True),  # a colleague at the requesting station
        ("clin.b", OPEN, False),
        ("spec.cardio", ACCEPTED, False),
        ("admin", OPEN, False),
        ("coord", OPEN, False),
    ],
    ids=case_id,
)
def test_can_cancel(username: str, case: Consultation, allowed: bool) -> None:
    assert access.can_cancel(ACTORS[username], case) is allowed


@pytest.mark.parametrize(
    ("username", "case", "allowed"),
    [
        ("spec.cardio2", OPEN, True),  # could take it
        ("spec.neuro", OPEN, False),  # other specialty: not even the summary
        ("spec.cardio", replace(ACCEPTED, specialty="neurology"), True),  # their own accepted case
        ("clin.a2", OPEN, True),
        ("clin.b", OPEN, False),
        ("admin", OPEN, True),
        ("coord", OPEN, False),
    ],
    ids=case_id,
)
def test_can_see_request(username: str, case: Consultation, allowed: bool) -> None:
    assert access.can_see_request(ACTORS[username], case) is allowed


@pytest.mark.parametrize(
    ("username", "may_register", "may_request"),
    [("clin.a", True, True), ("admin", True, False), ("spec.cardio", False, False), ("coord", False, False)],
)
def test_who_registers_patients_and_requests_consultations(
    username: str, may_register: bool, may_request: bool
) -> None:
    actor = ACTORS[username]
    assert access.can_register_patient(actor) is may_register
    assert access.can_search_patients(actor) is may_register
    assert access.can_request_consultation(actor) is may_request
