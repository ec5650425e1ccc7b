"""The conference room's pure rules: ICD-10 codes and decisions, who hosts and who is invited, attendance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from teleconsult.domain.conference_room import (
    Outcome,
    RoomRoles,
    Stay,
    attendance,
    is_host,
    is_invited,
    normalise_icd10,
    validate_decision,
)
from teleconsult.domain.errors import ValidationFailed
from teleconsult.domain.people import Actor, FacilityLevel, Role

T0 = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("I21.4", "I21.4"),
        ("i21.4", "I21.4"),
        ("I214", "I21.4"),
        (" j18.9 ", "J18.9"),
        ("A09", "A09"),
        ("U07.1", "U07.1"),
    ],
)
def test_icd10_codes_are_normalised(typed: str, stored: str) -> None:
    assert normalise_icd10(typed) == stored


@pytest.mark.parametrize("typed", ["", "chest pain", "21.4", "I2", "I21.45678", "II1.4", "I21-4", "I21..4"])
def test_what_is_not_an_icd10_code_is_refused(typed: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        normalise_icd10(typed)
    assert refused.value.field == "icd10"


def test_a_decision_needs_a_recommendation_a_code_and_a_known_outcome() -> None:
    decision = validate_decision("  Chuyển tuyến trung ương.  ", "i21.0", "transfer")
    assert (decision.recommendation, decision.icd10, decision.outcome) == (
        "Chuyển tuyến trung ương.",
        "I21.0",
        Outcome.TRANSFER,
    )
    for bad, field in ((("   ", "I21.0", "transfer"), "recommendation"), (("x", "I21.0", "later"), "outcome")):
        with pytest.raises(ValidationFailed) as refused:
            validate_decision(*bad)
        assert refused.value.field == field
    with pytest.raises(ValidationFailed):
        validate_decision("x" * 4001, "I21.0", "other")


def actor(user_id: int, role: Role, facility_id: int) -> Actor:
    return Actor(user_id, f"u{user_id}", f"User {user_id}", role, facility_id, FacilityLevel.CENTRAL, None)


ROLES = RoomRoles(
    organizer_user_id=1, host_facility_id=10, invited_user_ids=frozenset({5}), invited_site_ids=frozenset({10, 20})
)


def test_who_hosts_and_who_is_invited() -> None:
    organizer = actor(1, Role.COORDINATOR, 99)
    host_coordinator = actor(2, Role.COORDINATOR, 10)
    other_coordinator = actor(3, Role.COORDINATOR, 20)
    admin = actor(4, Role.ADMIN, 99)
    invited_by_name = actor(5, Role.SPECIALIST, 77)
    at_invited_site = actor(6, Role.CLINICIAN, 20)
    stranger = actor(7, Role.CLINICIAN, 30)
    assert [is_host(a, ROLES) for a in (organizer, host_coordinator, other_coordinator, admin, at_invited_site)] == [
        True,
        True,
        False,
        True,
        False,
    ]
    assert [is_invited(a, ROLES) for a in (invited_by_name, at_invited_site, other_coordinator, stranger)] == [
        True,
        True,
        True,
        False,
    ]


def test_attendance_counts_overlapping_stays_once_and_open_ones_until_now() -> None:
    stays = [
        Stay(1, 10, minutes(-5), minutes(20)),  # dropped link
        Stay(1, 10, minutes(25), minutes(60)),
        Stay(1, 10, minutes(30), minutes(40)),  # a second tab meanwhile: not counted twice
        Stay(2, 20, minutes(0), None),  # still in the room
        Stay(2, 30, minutes(5), minutes(10)),  # the same person from another site: a line of its own
    ]
    lines = attendance(stays, until=minutes(90))
    assert [(a.user_id, a.facility_id) for a in lines] == [(1, 10), (2, 20), (2, 30)]
    first, second, third = lines
    assert first.present == timedelta(minutes=60) and first.stays == 3
    assert (first.first_joined, first.last_left) == (minutes(-5), minutes(60))
    assert second.present == timedelta(minutes=90) and second.last_left is None
    assert third.present == timedelta(minutes=5)
