"""Queries behind pairing: who could take a case now, the offers of a case, the referral graph."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from teleconsult.domain.consultation import Status
from teleconsult.domain.pairing import Availability, Candidate, OfferStatus, PriorOffer, supporting_hubs
from teleconsult.domain.people import FacilityLevel, Role
from teleconsult.storage.models import (
    ConsultationRow,
    FacilityRow,
    FacilitySupportRow,
    OnCallShiftRow,
    PairingOfferRow,
    PresenceLeaseRow,
    SpecialistPresenceRow,
    UserRow,
)

BUSY_STATUSES = (Status.ACCEPTED.value, Status.IN_PROGRESS.value)


@dataclass(frozen=True, slots=True)
class Network:
    """The referral graph, small enough to read whole."""

    parent_of: dict[int, int | None]
    support: dict[int, list[int]]
    central: set[int]
    names: dict[int, str]

    def hubs_of(self, facility_id: int) -> tuple[int, ...]:
        return supporting_hubs(facility_id, self.parent_of, self.support, self.central)


async def load_network(tx: AsyncSession) -> Network:
    columns = select(FacilityRow.id, FacilityRow.hub_id, FacilityRow.level, FacilityRow.name)
    facilities = (await tx.execute(columns)).all()
    support: dict[int, list[int]] = {}
    rows = await tx.execute(
        select(FacilitySupportRow.facility_id, FacilitySupportRow.hub_id).order_by(
            FacilitySupportRow.facility_id, FacilitySupportRow.priority, FacilitySupportRow.hub_id
        )
    )
    for facility_id, hub_id in rows:
        support.setdefault(facility_id, []).append(hub_id)
    return Network(
        parent_of={f.id: f.hub_id for f in facilities},
        support=support,
        central={f.id for f in facilities if f.level == FacilityLevel.CENTRAL.value},
        names={f.id: f.name for f in facilities},
    )


async def candidates(tx: AsyncSession, specialty: str | None, now: datetime) -> list[Candidate]:
    """Every active specialist (of ``specialty``, or all), with the facts the pairing policy needs."""
    stmt = select(UserRow).where(UserRow.role == Role.SPECIALIST.value, UserRow.active.is_(True))
    if specialty is not None:
        stmt = stmt.where(UserRow.specialty == specialty)
    users = list((await tx.execute(stmt)).scalars())
    if not users:
        return []
    ids = [u.id for u in users]
    on_call = set(
        (
            await tx.execute(
                select(OnCallShiftRow.user_id, OnCallShiftRow.hub_id, OnCallShiftRow.specialty).where(
                    OnCallShiftRow.user_id.in_(ids), OnCallShiftRow.starts_at <= now, OnCallShiftRow.ends_at > now
                )
            )
        ).all()
    )
    connected = set(
        (
            await tx.execute(
                select(PresenceLeaseRow.user_id).where(
                    PresenceLeaseRow.user_id.in_(ids),
                    PresenceLeaseRow.expires_at > now,
                    PresenceLeaseRow.connections > 0,
                )
            )
        ).scalars()
    )
    availability = dict(
        (
            await tx.execute(
                select(SpecialistPresenceRow.user_id, SpecialistPresenceRow.availability).where(
                    SpecialistPresenceRow.user_id.in_(ids)
                )
            )
        ).all()
    )
    busy = set(
        (
            await tx.execute(
                select(ConsultationRow.specialist_user_id).where(
                    ConsultationRow.specialist_user_id.in_(ids), ConsultationRow.status.in_(BUSY_STATUSES)
                )
            )
        ).scalars()
    )
    ringing = set(
        (
            await tx.execute(
                select(PairingOfferRow.specialist_user_id).where(
                    PairingOfferRow.specialist_user_id.in_(ids), PairingOfferRow.status == OfferStatus.PENDING.value
                )
            )
        ).scalars()
    )
    last_assigned = dict(
        (
            await tx.execute(
                select(ConsultationRow.specialist_user_id, func.max(ConsultationRow.accepted_at))
                .where(ConsultationRow.specialist_user_id.in_(ids))
                .group_by(ConsultationRow.specialist_user_id)
            )
        ).all()
    )
    return [
        Candidate(
            user_id=u.id,
            display_name=u.display_name,
            specialty=u.specialty,
            hub_id=u.facility_id,
            on_call=(u.id, u.facility_id, u.specialty) in on_call,
            connected=u.id in connected,
            availability=Availability(availability.get(u.id, Availability.AVAILABLE.value)),
            in_consultation=u.id in busy,
            ringing_for_other=u.id in ringing,
            last_assigned_at=last_assigned.get(u.id),
        )
        for u in users
    ]


async def offers_of(tx: AsyncSession, consultation_ids: Sequence[int]) -> list[PairingOfferRow]:
    if not consultation_ids:
        return []
    stmt = (
        select(PairingOfferRow)
        .where(PairingOfferRow.consultation_id.in_(consultation_ids))
        .order_by(PairingOfferRow.id)
    )
    return list((await tx.execute(stmt)).scalars())


def prior_offers(rows: Sequence[PairingOfferRow]) -> list[PriorOffer]:
    return [PriorOffer(r.specialist_user_id, OfferStatus(r.status), r.answered_at or r.offered_at) for r in rows]


async def close_offers(
    tx: AsyncSession,
    consultation_id: int,
    status: OfferStatus,
    now: datetime,
    *,
    except_user_id: int | None = None,
) -> list[PairingOfferRow]:
    """Close every offer of a case still ringing (taken, withdrawn), returning them for the notifications."""
    pending = [
        r
        for r in await offers_of(tx, [consultation_id])
        if r.status == OfferStatus.PENDING.value and r.specialist_user_id != except_user_id
    ]
    if pending:
        await tx.execute(
            update(PairingOfferRow)
            .where(PairingOfferRow.id.in_([r.id for r in pending]), PairingOfferRow.status == OfferStatus.PENDING.value)
            .values(status=status.value, answered_at=now)
            .execution_options(synchronize_session=False)
        )
        for r in pending:
            r.status, r.answered_at = status.value, now
    return pending


async def answer_offer(
    tx: AsyncSession, offer_id: int, status: OfferStatus, now: datetime, reason: str | None = None
) -> bool:
    """Compare-and-set from pending: the one process whose UPDATE matches decides what happens next."""
    result = await tx.execute(
        update(PairingOfferRow)
        .where(PairingOfferRow.id == offer_id, PairingOfferRow.status == OfferStatus.PENDING.value)
        .values(status=status.value, answered_at=now, reason=reason)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def in_consultation(tx: AsyncSession, user_id: int) -> bool:
    found = await tx.execute(
        select(ConsultationRow.id)
        .where(ConsultationRow.specialist_user_id == user_id, ConsultationRow.status.in_(BUSY_STATUSES))
        .limit(1)
    )
    return found.first() is not None


async def withdraw_rings_of(
    tx: AsyncSession, user_id: int, now: datetime, *, except_consultation: int
) -> list[PairingOfferRow]:
    rows = list(
        (
            await tx.execute(
                select(PairingOfferRow).where(
                    PairingOfferRow.specialist_user_id == user_id,
                    PairingOfferRow.status == OfferStatus.PENDING.value,
                    PairingOfferRow.consultation_id != except_consultation,
                )
            )
        ).scalars()
    )
    withdrawn = []
    for row in rows:
        if await answer_offer(tx, row.id, OfferStatus.WITHDRAWN, now, "took another case"):
            row.status, row.answered_at = OfferStatus.WITHDRAWN.value, now
            withdrawn.append(row)
    return withdrawn
