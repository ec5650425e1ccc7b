"""The pairing policy: ranking, fairness, exclusions, fan-out and escalation. No I/O, no clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

import pytest

from teleconsult.domain.consultation import Urgency
from teleconsult.domain.errors import ValidationFailed
from teleconsult.domain.pairing import (
    Availability,
    Candidate,
    Escalate,
    Exclusion,
    OfferStatus,
    OfferTo,
    PairingCase,
    Policy,
    PriorOffer,
    Wait,
    can_raise,
    exclusion,
    next_step,
    rank,
    shift_bounds,
    soon_free,
    supporting_hubs,
    validate_shift,
)

NOW = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)
BACH_MAI, CHO_RAY, HUE = 1, 2, 3
POLICY = Policy(parallel_emergency_offers=3, reoffer_after_s=300)
CASE = PairingCase(
    consultation_id=10, specialty="cardiology", urgency=Urgency.URGENT, supporting_hub_ids=(BACH_MAI, CHO_RAY)
)


def specialist(user_id: int, **changes: object) -> Candidate:
    base = Candidate(
        user_id=user_id,
        display_name=f"Dr {user_id}",
        specialty="cardiology",
        hub_id=BACH_MAI,
        on_call=True,
        connected=True,
        availability=Availability.AVAILABLE,
        in_consultation=False,
        ringing_for_other=False,
        last_assigned_at=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def ids(candidates: list[Candidate]) -> list[int]:
    return [c.user_id for c in candidates]


def test_the_least_recently_assigned_specialist_comes_first_and_never_assigned_before_all() -> None:
    busy_yesterday = specialist(1, last_assigned_at=NOW - timedelta(days=1))
    busy_an_hour_ago = specialist(2, last_assigned_at=NOW - timedelta(hours=1))
    never = specialist(3)
    assert ids(rank(CASE, [busy_an_hour_ago, busy_yesterday, never], [], NOW, POLICY)) == [3, 1, 2]


def test_the_requesting_facilitys_own_hub_comes_before_fairness() -> None:
    other_hub_never_assigned = specialist(1, hub_id=CHO_RAY)
    own_hub_just_assigned = specialist(2, last_assigned_at=NOW - timedelta(minutes=5))
    assert ids(rank(CASE, [other_hub_never_assigned, own_hub_just_assigned], [], NOW, POLICY)) == [2, 1]


def test_ties_are_broken_the_same_way_every_time() -> None:
    same = NOW - timedelta(hours=2)
    order = ids(
        rank(CASE, [specialist(7, last_assigned_at=same), specialist(4, last_assigned_at=same)], [], NOW, POLICY)
    )
    assert order == [4, 7]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"specialty": "neurology"}, Exclusion.WRONG_SPECIALTY),
        ({"hub_id": HUE}, Exclusion.HUB_NOT_SUPPORTING),
        ({"on_call": False}, Exclusion.NOT_ON_CALL),
        ({"connected": False}, Exclusion.OFFLINE),
        ({"in_consultation": True}, Exclusion.IN_CONSULTATION),
        ({"availability": Availability.AWAY}, Exclusion.AWAY),
        ({"availability": Availability.BUSY}, Exclusion.BUSY),
        ({"ringing_for_other": True}, Exclusion.RINGING),
    ],
)
def test_who_is_never_offered_a_request(changes: dict[str, object], reason: Exclusion) -> None:
    candidate = specialist(1, **changes)
    assert exclusion(CASE, candidate, [], NOW, POLICY) is reason
    assert rank(CASE, [candidate], [], NOW, POLICY) == []


def test_a_specialist_who_declined_is_not_asked_again_for_that_case() -> None:
    prior = [PriorOffer(1, OfferStatus.DECLINED, NOW - timedelta(hours=3))]
    assert exclusion(CASE, specialist(1), prior, NOW, POLICY) is Exclusion.DECLINED
    other_case = replace(CASE, consultation_id=11)
    assert exclusion(other_case, specialist(1), [], NOW, POLICY) is None


def test_an_unanswered_specialist_may_be_rung_again_after_the_reoffer_delay() -> None:
    prior = [PriorOffer(1, OfferStatus.EXPIRED, NOW - timedelta(seconds=299))]
    assert exclusion(CASE, specialist(1), prior, NOW, POLICY) is Exclusion.NO_ANSWER
    later = NOW + timedelta(seconds=2)
    assert exclusion(CASE, specialist(1), prior, later, POLICY) is None


def test_a_specialist_already_ringing_for_this_case_is_not_counted_twice() -> None:
    prior = [PriorOffer(1, OfferStatus.PENDING, NOW)]
    assert exclusion(CASE, specialist(1), prior, NOW, POLICY) is Exclusion.OFFERED


def test_one_offer_at_a_time_for_urgent_and_routine() -> None:
    ranked = [specialist(1), specialist(2)]
    step = next_step(CASE, ranked, 0, escalated=False, policy=POLICY)
    assert isinstance(step, OfferTo) and ids(list(step.candidates)) == [1]
    assert isinstance(next_step(CASE, ranked, 1, escalated=False, policy=POLICY), Wait)


def test_an_emergency_rings_several_at_once_and_tops_up() -> None:
    emergency = replace(CASE, urgency=Urgency.EMERGENCY)
    ranked = [specialist(i) for i in range(1, 6)]
    step = next_step(emergency, ranked, 0, escalated=False, policy=POLICY)
    assert isinstance(step, OfferTo) and ids(list(step.candidates)) == [1, 2, 3]
    top_up = next_step(emergency, ranked[3:], 2, escalated=False, policy=POLICY)
    assert isinstance(top_up, OfferTo) and ids(list(top_up.candidates)) == [4]


def test_escalates_once_when_nobody_is_left_and_nothing_rings() -> None:
    assert isinstance(next_step(CASE, [], 0, escalated=False, policy=POLICY), Escalate)
    assert isinstance(next_step(CASE, [], 0, escalated=True, policy=POLICY), Wait)
    assert isinstance(next_step(CASE, [], 1, escalated=False, policy=POLICY), Wait)
    # Someone becoming free after escalation is still offered the case.
    assert isinstance(next_step(CASE, [specialist(1)], 0, escalated=True, policy=POLICY), OfferTo)


def test_a_case_waits_in_the_queue_while_the_specialists_are_only_busy_with_other_cases() -> None:
    busy = [specialist(1, in_consultation=True), specialist(2, ringing_for_other=True)]
    assert policy_soon_free(busy) == 2
    assert isinstance(next_step(CASE, [], 0, escalated=False, policy=POLICY, soon_free=2), Wait)
    # Away or off duty does not pass by itself: escalate.
    gone = [specialist(1, availability=Availability.AWAY), specialist(2, on_call=False)]
    assert policy_soon_free(gone) == 0
    assert isinstance(next_step(CASE, [], 0, escalated=False, policy=POLICY, soon_free=0), Escalate)


def policy_soon_free(candidates: list[Candidate]) -> int:
    return soon_free(CASE, candidates, [], NOW, POLICY)


def test_supporting_hubs_follow_the_referral_line() -> None:
    # Tả Van commune (30) → Lào Cai provincial (20) → Bạch Mai (1); Lào Cai is also supported by Chợ Rẫy (2).
    parent_of = {30: 20, 20: BACH_MAI, BACH_MAI: None, CHO_RAY: None}
    support = {20: [CHO_RAY]}
    assert supporting_hubs(30, parent_of, support, [BACH_MAI, CHO_RAY]) == (CHO_RAY, BACH_MAI)
    assert supporting_hubs(30, parent_of, {30: [HUE], 20: [CHO_RAY]}, [BACH_MAI, CHO_RAY, HUE]) == (
        HUE,
        CHO_RAY,
        BACH_MAI,
    )


def test_a_loop_in_the_referral_line_does_not_hang() -> None:
    assert supporting_hubs(1, {1: 2, 2: 1}, {}, []) == ()


def test_urgency_can_only_be_raised() -> None:
    assert can_raise(Urgency.ROUTINE, Urgency.EMERGENCY)
    assert not can_raise(Urgency.URGENT, Urgency.ROUTINE)
    assert not can_raise(Urgency.URGENT, Urgency.URGENT)


def test_a_night_shift_entered_in_vietnam_time_runs_past_midnight_and_is_stored_in_utc() -> None:
    starts, ends = shift_bounds(date(2026, 11, 22), time(19, 0), time(7, 0), "Asia/Ho_Chi_Minh")
    assert starts == datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    assert ends == datetime(2026, 11, 23, 0, 0, tzinfo=UTC)


def test_shifts_must_be_sane() -> None:
    with pytest.raises(ValidationFailed):
        validate_shift(NOW, NOW)
    with pytest.raises(ValidationFailed):
        validate_shift(NOW, NOW + timedelta(hours=37))
    validate_shift(NOW, NOW + timedelta(hours=12))
