"""Finding, registering and reading patients. Every read and write of a record is audited."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from teleconsult.clock import Clock
from teleconsult.display import to_local
from teleconsult.domain import access
from teleconsult.domain.consultation import CaseNote, Consultation, Participation
from teleconsult.domain.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from teleconsult.domain.patients import Patient, PatientDraft, fold_for_search, validate_patient
from teleconsult.domain.people import Actor
from teleconsult.services.conference_records import ConferenceReview, reviews_of
from teleconsult.settings import Settings
from teleconsult.storage import repositories as repo
from teleconsult.storage.db import Database
from teleconsult.storage.models import (
    ConsultationRow,
    FacilityRow,
    ParticipationRow,
    PatientRow,
    UserRow,
)


@dataclass(frozen=True, slots=True)
class ConsultationEntry:
    consultation: Consultation
    facility_name: str
    requested_by_name: str
    specialist_name: str | None
    notes: list[CaseNote]
    participations: list[Participation]


@dataclass(frozen=True, slots=True)
class PatientRecord:
    patient: Patient
    registered_by: str
    consultations: list[ConsultationEntry]
    reviews: list[ConferenceReview] = field(default_factory=list)  # teleconference notes and decisions


class PatientService:
    def __init__(self, db: Database, clock: Clock, settings: Settings) -> None:
        self._db = db
        self._clock = clock
        self._settings = settings

    async def search(self, actor: Actor, query: str, *, source: str) -> list[Patient]:
        if not access.can_search_patients(actor):
            await self._deny(actor, "patient.search", None, source)
        query = query.strip()[:120]
        digits = query.replace(" ", "")
        cccd = digits if digits.isdigit() else None
        if cccd is not None and len(cccd) != 12:
            raise ValidationFailed("a citizen ID (CCCD) has exactly 12 digits", field="q")
        folded = None if cccd else fold_for_search(query)
        if folded is not None and len(folded) < 2:
            raise ValidationFailed("type at least 2 letters of the name, or the 12-digit CCCD", field="q")
        async with self._db.transaction() as tx:
            found = await repo.search_patients(
                tx, cccd=cccd, folded_name=folded, limit=self._settings.max_search_results
            )
            # The query itself may be a name or an ID: it is not written to the audit trail.
            repo.audit(
                tx,
                at=self._clock.now(),
                actor_user_id=actor.user_id,
                action="patient.search",
                entity_type="patient",
                entity_id=None,
                outcome="success",
                source=source,
                detail=f"results={len(found)}",
            )
        return found

    async def register(self, actor: Actor, draft: PatientDraft, *, source: str) -> Patient:
        if not access.can_register_patient(actor):
            await self._deny(actor, "patient.create", None, source)
        return await self._register(draft, actor.facility_id, actor.user_id, source)

    async def register_as_system(self, draft: PatientDraft, facility_id: int, *, source: str) -> Patient:
        """Registration by an operator's script (the CLI), on behalf of a facility."""
        return await self._register(draft, facility_id, None, source)

    async def _register(self, draft: PatientDraft, facility_id: int, user_id: int | None, source: str) -> Patient:
        clean = validate_patient(draft, to_local(self._clock.now(), self._settings.display_timezone).date())
        duplicate = "a patient with this citizen ID (CCCD) is already registered"
        async with self._db.transaction() as tx:
            existing = (await tx.execute(select(PatientRow.id).where(PatientRow.cccd == clean.cccd))).first()
            if existing is not None:
                raise Conflict(duplicate, field="cccd")
            row = PatientRow(
                cccd=clean.cccd,
                full_name=clean.full_name,
                name_folded=fold_for_search(clean.full_name),
                date_of_birth=clean.date_of_birth,
                sex=clean.sex.value,
                bhyt=clean.bhyt,
                address=clean.address,
                province=clean.province,
                registered_by_facility_id=facility_id,
                created_at=self._clock.now(),
            )
            tx.add(row)
            try:
                await tx.flush()
            except IntegrityError:
                raise Conflict(duplicate, field="cccd") from None
            repo.audit(
                tx,
                at=self._clock.now(),
                actor_user_id=user_id,
                action="patient.create",
                entity_type="patient",
                entity_id=row.id,
                patient_id=row.id,
                outcome="success",
                source=source,
            )
            return repo.to_patient(row)

    async def get(self, actor: Actor, patient_id: int, *, source: str) -> Patient:
        """The patient's demographics, for those allowed to see the record (audited as a read)."""
        return (await self.record(actor, patient_id, source=source, with_history=False)).patient

    async def record(self, actor: Actor, patient_id: int, *, source: str, with_history: bool = True) -> PatientRecord:
        async with self._db.transaction() as tx:
            row = await tx.get(PatientRow, patient_id)
            if row is None:
                raise NotFound("no such patient")
            consultations = list(
                (
                    await tx.execute(
                        select(ConsultationRow)
                        .where(ConsultationRow.patient_id == patient_id)
                        .order_by(ConsultationRow.created_at.desc(), ConsultationRow.id.desc())
                    )
                ).scalars()
            )
            participant_ids = set(
                (
                    await tx.execute(
                        select(ParticipationRow.user_id)
                        .join(ConsultationRow)
                        .where(ConsultationRow.patient_id == patient_id)
                    )
                ).scalars()
            )
            allowed = access.can_view_record(
                actor,
                registered_by_facility_id=row.registered_by_facility_id,
                requesting_facility_ids=[c.requesting_facility_id for c in consultations],
                specialist_ids=[c.specialist_user_id for c in consultations if c.specialist_user_id],
                participant_ids=participant_ids,
            )
            if allowed:
                entries = await self._entries(tx, consultations) if with_history else []
                facility = await tx.get(FacilityRow, row.registered_by_facility_id)
                repo.audit(
                    tx,
                    at=self._clock.now(),
                    actor_user_id=actor.user_id,
                    action="patient.read",
                    entity_type="patient",
                    entity_id=patient_id,
                    patient_id=patient_id,
                    outcome="success",
                    source=source,
                )
                reviews = await reviews_of(tx, patient_id) if with_history else []
                return PatientRecord(repo.to_patient(row), facility.name if facility else "", entries, reviews)
        await self._deny(actor, "patient.read", patient_id, source)
        raise AssertionError("unreachable")

    async def _entries(self, tx: AsyncSession, consultations: list[ConsultationRow]) -> list[ConsultationEntry]:
        notes = await repo.notes_of(tx, [c.id for c in consultations])
        user_ids = {c.requested_by_user_id for c in consultations} | {
            c.specialist_user_id for c in consultations if c.specialist_user_id
        }
        names = dict((await tx.execute(select(UserRow.id, UserRow.display_name).where(UserRow.id.in_(user_ids)))).all())
        facility_ids = {c.requesting_facility_id for c in consultations}
        facilities = dict(
            (await tx.execute(select(FacilityRow.id, FacilityRow.name).where(FacilityRow.id.in_(facility_ids)))).all()
        )
        entries = []
        for c in consultations:
            entries.append(
                ConsultationEntry(
                    consultation=repo.to_consultation(c),
                    facility_name=facilities.get(c.requesting_facility_id, ""),
                    requested_by_name=names.get(c.requested_by_user_id, ""),
                    specialist_name=names.get(c.specialist_user_id) if c.specialist_user_id else None,
                    notes=[n for n in notes if n.consultation_id == c.id],
                    participations=await repo.participations_of(tx, c.id),
                )
            )
        return entries

    async def _deny(self, actor: Actor, action: str, patient_id: int | None, source: str) -> None:
        async with self._db.transaction() as tx:
            repo.audit(
                tx,
                at=self._clock.now(),
                actor_user_id=actor.user_id,
                action=action,
                entity_type="patient",
                entity_id=patient_id,
                patient_id=patient_id,
                outcome="denied",
                source=source,
            )
        raise PermissionDenied("you do not have access to this patient's record")
