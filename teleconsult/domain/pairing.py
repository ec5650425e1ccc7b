"""The pairing policy: which specialist a request is offered to next. Pure: no clock, no I/O.

A request is offered to the best candidate: right specialty, on call, connected and available, at a hub
that supports the requesting facility, not already in a consultation or ringing for another case, and
fairly spread (the least recently assigned first). Emergencies ring several at once. When nobody is left,
the hub's coordinator is alerted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from teleconsult.domain.consultation import Urgency
from teleconsult.domain.errors import ValidationFailed


class Availability(StrEnum):
    AVAILABLE = "available"
    BUSY = "busy"
    AWAY = "away"


class OfferStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"  # no answer before the deadline
    TAKEN = "taken"  # someone else accepted first
    WITHDRAWN = "withdrawn"  # the request was cancelled, or handed to someone else


class Exclusion(StrEnum):
    """Why a specialist is not offered a request: shown to coordinators, so they know whom they could call."""

    WRONG_SPECIALTY = "wrong_specialty"
    HUB_NOT_SUPPORTING = "hub_not_supporting"
    NOT_ON_CALL = "not_on_call"
    OFFLINE = "offline"
    BUSY = "busy"
    AWAY = "away"
    IN_CONSULTATION = "in_consultation"
    RINGING = "ringing"
    DECLINED = "declined"
    NO_ANSWER = "no_answer"
    OFFERED = "offered"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A specialist as the pairing policy sees them at one instant."""

    user_id: int
    display_name: str
    specialty: str | None
    hub_id: int
    on_call: bool
    connected: bool
    availability: Availability
    in_consultation: bool
    ringing_for_other: bool
    last_assigned_at: datetime | None


@dataclass(frozen=True, slots=True)
class PriorOffer:
    user_id: int
    status: OfferStatus
    at: datetime  # answered_at, or offered_at while pending


@dataclass(frozen=True, slots=True)
class PairingCase:
    consultation_id: int
    specialty: str
    urgency: Urgency
    supporting_hub_ids: tuple[int, ...]  # best first


@dataclass(frozen=True, slots=True)
class Policy:
    parallel_emergency_offers: int
    reoffer_after_s: float


@dataclass(frozen=True, slots=True)
class OfferTo:
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True, slots=True)
class Wait:
    """Offers are ringing, or nobody is free but the coordinator already knows."""


@dataclass(frozen=True, slots=True)
class Escalate:
    """Nobody is left to offer the request to and nothing is ringing: alert the hub's coordinator."""


Step = OfferTo | Wait | Escalate


def exclusion(
    case: PairingCase, candidate: Candidate, prior: Sequence[PriorOffer], now: datetime, policy: Policy
) -> Exclusion | None:
    """The first reason ``candidate`` may not be offered ``case`` now, or None when they may."""
    if candidate.specialty != case.specialty:
        return Exclusion.WRONG_SPECIALTY
    if candidate.hub_id not in case.supporting_hub_ids:
        return Exclusion.HUB_NOT_SUPPORTING
    for offer in prior:
        if offer.user_id != candidate.user_id:
            continue
        if offer.status is OfferStatus.PENDING:
            return Exclusion.OFFERED
        if offer.status is OfferStatus.DECLINED:
            return Exclusion.DECLINED
        if offer.status is OfferStatus.EXPIRED and (now - offer.at).total_seconds() < policy.reoffer_after_s:
            return Exclusion.NO_ANSWER
    if not candidate.on_call:
        return Exclusion.NOT_ON_CALL
    if not candidate.connected:
        return Exclusion.OFFLINE
    if candidate.in_consultation:
        return Exclusion.IN_CONSULTATION
    if candidate.availability is Availability.AWAY:
        return Exclusion.AWAY
    if candidate.availability is Availability.BUSY:
        return Exclusion.BUSY
    if candidate.ringing_for_other:
        return Exclusion.RINGING
    return None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rank(
    case: PairingCase, candidates: Iterable[Candidate], prior: Sequence[PriorOffer], now: datetime, policy: Policy
) -> list[Candidate]:
    """Eligible candidates, best first: the requesting facility's own hub first, then whoever was assigned
    least recently (never assigned comes first), then a stable order."""
    hub_rank = {hub: i for i, hub in enumerate(case.supporting_hub_ids)}
    eligible = [c for c in candidates if exclusion(case, c, prior, now, policy) is None]
    return sorted(eligible, key=lambda c: (hub_rank[c.hub_id], c.last_assigned_at or _EPOCH, c.user_id))


# Reasons that pass by themselves: the specialist is ringing for, or working on, another case.
TRANSIENT = frozenset({Exclusion.RINGING, Exclusion.IN_CONSULTATION})


def soon_free(
    case: PairingCase, candidates: Iterable[Candidate], prior: Sequence[PriorOffer], now: datetime, policy: Policy
) -> int:
    """How many could take the case once their current case or ring is over: the case waits in the queue."""
    return sum(1 for c in candidates if exclusion(case, c, prior, now, policy) in TRANSIENT)


def next_step(
    case: PairingCase,
    ranked: Sequence[Candidate],
    pending_offers: int,
    *,
    escalated: bool,
    policy: Policy,
    soon_free: int = 0,
) -> Step:
    """What to do with a request now, given its best candidates, how many offers are still ringing and how
    many eligible specialists are only busy with another case. Nobody left at all → escalate (once)."""
    wanted = policy.parallel_emergency_offers if case.urgency is Urgency.EMERGENCY else 1
    free_slots = wanted - pending_offers
    if free_slots > 0 and ranked:
        return OfferTo(tuple(ranked[:free_slots]))
    if pending_offers == 0 and not ranked and not soon_free and not escalated:
        return Escalate()
    return Wait()


def offer_deadline(offered_at: datetime, urgency: Urgency, timeouts: Mapping[Urgency, float]) -> datetime:
    return offered_at + timedelta(seconds=timeouts[urgency])


def supporting_hubs(
    facility_id: int,
    parent_of: Mapping[int, int | None],
    support: Mapping[int, Sequence[int]],
    central_ids: Iterable[int],
) -> tuple[int, ...]:
    """The central hospitals that support a facility, best first: its own supporting hubs (in priority
    order), then those of the facilities above it on the referral line, and any central hospital on the way.
    """
    central = set(central_ids)
    hubs: list[int] = []
    seen: set[int] = set()
    current: int | None = facility_id
    while current is not None and current not in seen:
        seen.add(current)
        for hub in support.get(current, ()):
            if hub not in hubs:
                hubs.append(hub)
        if current in central and current != facility_id and current not in hubs:
            hubs.append(current)
        current = parent_of.get(current)
    return tuple(hubs)


def can_raise(current: Urgency, wanted: Urgency) -> bool:
    order = {Urgency.ROUTINE: 0, Urgency.URGENT: 1, Urgency.EMERGENCY: 2}
    return order[wanted] > order[current]


# -- rosters ---------------------------------------------------------------------------------------------------

MAX_SHIFT = timedelta(hours=36)


def shift_bounds(day: date, start: time, end: time, tz: str) -> tuple[datetime, datetime]:
    """A shift entered as a local day and wall-clock times; an end at or before the start runs past midnight.
    Returned in UTC."""
    zone = ZoneInfo(tz)
    starts = datetime.combine(day, start, tzinfo=zone)
    end_day = day if end > start else day + timedelta(days=1)
    ends = datetime.combine(end_day, end, tzinfo=zone)
    return starts.astimezone(UTC), ends.astimezone(UTC)


def validate_shift(starts_at: datetime, ends_at: datetime) -> None:
    if ends_at <= starts_at:
        raise ValidationFailed("a shift must end after it starts", field="ends_at")
    if ends_at - starts_at > MAX_SHIFT:
        raise ValidationFailed("a shift may last at most 36 hours", field="ends_at")
