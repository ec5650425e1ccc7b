"""Row <-> domain mapping and the queries services use. No authorization here: services decide."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from teleconsult.domain import access
from teleconsult.domain.consultation import CaseNote, Consultation, Outcome, Participation, Status, Urgency
from teleconsult.domain.patients import Patient, Sex
from teleconsult.domain.people import Actor, Facility, FacilityLevel, Role
from teleconsult.storage.models import (
    AuditEventRow,
    CaseNoteRow,
    ConsultationRow,
    FacilityRow,
    ParticipationRow,
    PatientRow,
    UserRow,
)


def to_facility(row: FacilityRow) -> Facility:
    return Facility(row.id, row.code, row.name, FacilityLevel(row.level), row.province, row.hub_id)


def to_patient(row: PatientRow) -> Patient:
    return Patient(
        id=row.id,
        cccd=row.cccd,
        full_name=row.full_name,
        date_of_birth=row.date_of_birth,
        sex=Sex(row.sex),
        bhyt=row.bhyt,
        address=row.address,
        province=row.province,
        registered_by_facility_id=row.registered_by_facility_id,
    )


def to_consultation(row: ConsultationRow) -> Consultation:
    return Consultation(
        id=row.id,
        patient_id=row.patient_id,
        requesting_facility_id=row.requesting_facility_id,
        requested_by_user_id=row.requested_by_user_id,
        specialty=row.specialty,
        urgency=Urgency(row.urgency),
        summary=row.summary,
        status=Status(row.status),
        specialist_user_id=row.specialist_user_id,
        created_at=row.created_at,
        accepted_at=row.accepted_at,
        ended_at=row.ended_at,
        recommendation=row.recommendation,
        icd10_code=row.icd10_code,
        outcome=Outcome(row.outcome) if row.outcome else None,
    )


async def actor_for_user(session: AsyncSession, user_id: int) -> Actor | None:
    result = await session.execute(
        select(UserRow, FacilityRow)
        .join(FacilityRow, FacilityRow.id == UserRow.facility_id)
        .where(UserRow.id == user_id, UserRow.active.is_(True))
    )
    pair = result.first()
    if pair is None:
        return None
    user, facility = pair
    return Actor(
        user_id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=Role(user.role),
        facility_id=facility.id,
        facility_level=FacilityLevel(facility.level),
        specialty=user.specialty,
        locale=user.locale,
    )


async def get_consultation(
    session: AsyncSession, consultation_id: int, *, for_update: bool = False
) -> ConsultationRow | None:
    stmt = select(ConsultationRow).where(ConsultationRow.id == consultation_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def transition_consultation(
    session: AsyncSession, consultation_id: int, allowed_from: frozenset[Status], values: dict[str, object]
) -> bool:
    """Atomic compare-and-set on the status: the WHERE clause is the race arbiter on SQLite and PostgreSQL."""
    result = await session.execute(
        update(ConsultationRow)
        .where(ConsultationRow.id == consultation_id, ConsultationRow.status.in_([s.value for s in allowed_from]))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def notes_of(session: AsyncSession, consultation_ids: Sequence[int]) -> list[CaseNote]:
    if not consultation_ids:
        return []
    result = await session.execute(
        select(CaseNoteRow, UserRow.display_name)
        .join(UserRow, UserRow.id == CaseNoteRow.author_user_id)
        .where(CaseNoteRow.consultation_id.in_(consultation_ids))
        .order_by(CaseNoteRow.created_at, CaseNoteRow.id)
    )
    return [
        CaseNote(n.id, n.consultation_id, n.author_user_id, name, n.text, n.created_at, n.client_id)
        for n, name in result.all()
    ]


async def participations_of(session: AsyncSession, consultation_id: int) -> list[Participation]:
    result = await session.execute(
        select(ParticipationRow, UserRow.display_name, UserRow.role)
        .join(UserRow, UserRow.id == ParticipationRow.user_id)
        .where(ParticipationRow.consultation_id == consultation_id)
        .order_by(ParticipationRow.joined_at, ParticipationRow.id)
    )
    return [Participation(p.user_id, name, role, p.joined_at, p.left_at) for p, name, role in result.all()]


async def search_patients(
    session: AsyncSession, *, cccd: str | None, folded_name: str | None, limit: int
) -> list[Patient]:
    stmt = select(PatientRow)
    conditions = []
    if cccd:
        conditions.append(PatientRow.cccd == cccd)
    if folded_name:
        escaped = folded_name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(PatientRow.name_folded.like(f"%{escaped}%", escape="\\"))
    if not conditions:
        return []
    stmt = stmt.where(or_(*conditions)).order_by(PatientRow.full_name, PatientRow.id).limit(limit)
    return [to_patient(r) for r in (await session.execute(stmt)).scalars()]


async def count_rows(session: AsyncSession, model: type) -> int:
    return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


def audit(
    session: AsyncSession,
    *,
    at: datetime,
    actor_user_id: int | None,
    action: str,
    entity_type: str,
    entity_id: object | None,
    outcome: str,
    source: str,
    patient_id: int | None = None,
    detail: str = "",
) -> None:
    session.add(
        AuditEventRow(
            occurred_at=at,
            actor_user_id=actor_user_id,
            action=action,
            entity_type=entity_type,
            entity_id=None if entity_id is None else str(entity_id),
            patient_id=patient_id,
            source=source[:64],
            outcome=outcome,
            detail=detail[:200],
        )
    )


async def may_view_record(session: AsyncSession, actor: Actor, patient: PatientRow) -> bool:
    """Apply the record access policy to the facts stored about ``patient``."""
    consultations = (
        await session.execute(
            select(ConsultationRow.requesting_facility_id, ConsultationRow.specialist_user_id).where(
                ConsultationRow.patient_id == patient.id
            )
        )
    ).all()
    participant_ids = set(
        (
            await session.execute(
                select(ParticipationRow.user_id).join(ConsultationRow).where(ConsultationRow.patient_id == patient.id)
            )
        ).scalars()
    )
    return access.can_view_record(
        actor,
        registered_by_facility_id=patient.registered_by_facility_id,
        requesting_facility_ids=[c.requesting_facility_id for c in consultations],
        specialist_ids=[c.specialist_user_id for c in consultations if c.specialist_user_id],
        participant_ids=participant_ids,
    )
