"""The consultation state machine, ICD-10 codes and the closing recommendation."""

from __future__ import annotations

import itertools

import pytest

from teleconsult.domain.consultation import (
    ACTIVE_STATUSES,
    MAX_RECOMMENDATION,
    OPEN_STATUSES,
    TERMINAL_STATUSES,
    Outcome,
    Status,
    Transition,
    next_status,
    normalize_icd10,
    normalize_text,
    statuses_allowing,
    validate_closing,
)
from teleconsult.domain.errors import Conflict, ValidationFailed

S, T = Status, Transition

# The lifecycle as the product describes it, written out independently of the implementation's table.
LEGAL = {
    (S.REQUESTED, T.OFFER): S.OFFERED,
    (S.OFFERED, T.OFFER): S.OFFERED,
    (S.REQUESTED, T.ACCEPT): S.ACCEPTED,
    (S.OFFERED, T.ACCEPT): S.ACCEPTED,
    (S.ACCEPTED, T.START): S.IN_PROGRESS,
    (S.ACCEPTED, T.COMPLETE): S.COMPLETED,
    (S.IN_PROGRESS, T.COMPLETE): S.COMPLETED,
    (S.REQUESTED, T.CANCEL): S.CANCELLED,
    (S.OFFERED, T.CANCEL): S.CANCELLED,
    (S.ACCEPTED, T.CANCEL): S.CANCELLED,
    (S.REQUESTED, T.EXPIRE): S.EXPIRED,
    (S.OFFERED, T.EXPIRE): S.EXPIRED,
}
ILLEGAL = [pair for pair in itertools.product(Status, Transition) if pair not in LEGAL]


@pytest.mark.parametrize(("current", "transition"), list(LEGAL), ids=lambda v: v.value)
def test_every_legal_transition_reaches_its_target(current: Status, transition: Transition) -> None:
    assert next_status(current, transition) is LEGAL[(current, transition)]


@pytest.mark.parametrize(("current", "transition"), ILLEGAL, ids=lambda v: v.value)
def test_every_other_transition_is_a_conflict(current: Status, transition: Transition) -> None:
    with pytest.raises(Conflict) as raised:
        next_status(current, transition)
    # The message tells the user what went wrong in their words, e.g. "cannot accept ... completed".
    assert transition.value in raised.value.message and current.value in raised.value.message
    assert raised.value.code == "conflict"


def test_nothing_leaves_a_terminal_state() -> None:
    for status, transition in itertools.product(TERMINAL_STATUSES, Transition):
        with pytest.raises(Conflict):
            next_status(status, transition)


@pytest.mark.parametrize("transition", list(Transition), ids=lambda v: v.value)
def test_statuses_allowing_matches_the_lifecycle(transition: Transition) -> None:
    expected = {src for (src, t) in LEGAL if t is transition}
    assert statuses_allowing(transition) == expected


def test_status_groups() -> None:
    assert OPEN_STATUSES == {S.REQUESTED, S.OFFERED}
    assert ACTIVE_STATUSES == {S.REQUESTED, S.OFFERED, S.ACCEPTED, S.IN_PROGRESS}
    assert TERMINAL_STATUSES == {S.COMPLETED, S.CANCELLED, S.EXPIRED}
    assert ACTIVE_STATUSES | TERMINAL_STATUSES == set(Status)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("I21.4", "I21.4"),
        ("i214", "I21.4"),
        (" i21.4 ", "I21.4"),
        ("I21", "I21"),
        ("e11", "E11"),
        ("S72.001A", "S72.001A"),
        ("s72001a", "S72.001A"),
        ("U07.1", "U07.1"),
    ],
)
def test_icd10_codes_are_normalised(raw: str, expected: str) -> None:
    assert normalize_icd10(raw) == expected


@pytest.mark.parametrize("raw", ["", "21.4", "I2", "I21.", "I21.12345", "II21", "I21-4", "chest pain", "I 21.4"])
def test_bad_icd10_codes_are_rejected(raw: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        normalize_icd10(raw)
    assert raised.value.field == "icd10_code"


def test_validate_closing_normalises_everything() -> None:
    closing = validate_closing("  Điều trị tại chỗ, theo dõi điện tim.\r\nTái khám sau 1 tuần.  ", "i214", "follow_up")
    assert closing.recommendation == "Điều trị tại chỗ, theo dõi điện tim.\nTái khám sau 1 tuần."
    assert closing.icd10_code == "I21.4"
    assert closing.outcome is Outcome.FOLLOW_UP


@pytest.mark.parametrize(
    ("recommendation", "icd10", "outcome", "field"),
    [
        ("Chuyển tuyến trên", "I21.4", "admit", "outcome"),
        ("   ", "I21.4", "transfer", "recommendation"),
        ("x" * (MAX_RECOMMENDATION + 1), "I21.4", "transfer", "recommendation"),
        ("Chuyển tuyến trên", "nhồi máu", "transfer", "icd10_code"),
    ],
)
def test_validate_closing_rejects(recommendation: str, icd10: str, outcome: str, field: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        validate_closing(recommendation, icd10, outcome)
    assert raised.value.field == field


def test_recommendation_at_the_limit_is_accepted() -> None:
    assert len(validate_closing("x" * MAX_RECOMMENDATION, "I10", "treat_locally").recommendation) == MAX_RECOMMENDATION


def test_normalize_text_optional_may_be_empty() -> None:
    assert normalize_text("  ", field="summary", max_chars=10, required=False) == ""
    with pytest.raises(ValidationFailed, match="summary is required"):
        normalize_text("  ", field="summary", max_chars=10)
    with pytest.raises(ValidationFailed, match="longer than 10"):
        normalize_text("a" * 11, field="summary", max_chars=10)
