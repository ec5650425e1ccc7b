"""The consultation use cases: request, accept, the room, notes, close. Each is one transaction, authorized
and audited here; the people concerned are told after commit."""

from __future__ import annotations

import logging
import re
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from teleconsult.clock import Clock
from teleconsult.display import to_local
from teleconsult.domain import access
from teleconsult.domain.consultation import (
    OPEN_STATUSES,
    CaseNote,
    Consultation,
    Participation,
    Status,
    Transition,
    Urgency,
    next_status,
    normalize_text,
    statuses_allowing,
    validate_closing,
)
from teleconsult.domain.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from teleconsult.domain.pairing import OfferStatus
from teleconsult.domain.patients import Patient
from teleconsult.domain.people import Actor, Role
from teleconsult.services.notify import Notifier, RequestCard
from teleconsult.settings import Settings
from teleconsult.storage import pairing as pairing_store
from teleconsult.storage import repositories as repo
from teleconsult.storage.db import Database
from teleconsult.storage.models import (
    CaseNoteRow,
    ConsultationRow,
    FacilityRow,
    PairingOfferRow,
    ParticipationRow,
    PatientRow,
    PresenceLeaseRow,
    SpecialtyRow,
    UserRow,
)

log = logging.getLogger(__name__)


class PairingHooks(Protocol):
    async def requested(self, consultation_id: int) -> None: ...

    async def settled(self, card: RequestCard, closed: list[PairingOfferRow]) -> None: ...


_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


class ConsultationService:
    def __init__(self, db: Database, clock: Clock, settings: Settings, notifier: Notifier) -> None:
        self._db = db
        self._clock = clock
        self._settings = settings
        self.notifier = notifier
        # Set by the pairing service: it offers new requests and settles the offers of taken or cancelled ones.
        self.pairing: PairingHooks | None = None

    # -- requests ---------------------------------------------------------------------------------------------

    async def request(
        self, actor: Actor, patient_id: int, specialty: str, urgency: str, summary: str, *, source: str
    ) -> Consultation:
        if not access.can_request_consultation(actor):
            await self._deny(actor, "consultation.create", None, None, source)
        try:
            parsed_urgency = Urgency(urgency)
        except ValueError:
            raise ValidationFailed("urgency must be emergency, urgent or routine", field="urgency") from None
        clean_summary = normalize_text(summary, field="summary", max_chars=self._settings.max_summary_chars)
        now = self._clock.now()
        async with self._db.transaction() as tx:
            patient = await tx.get(PatientRow, patient_id)
            if patient is None:
                raise NotFound("no such patient")
            allowed = await repo.may_view_record(tx, actor, patient)
            if allowed and await tx.get(SpecialtyRow, specialty) is None:
                raise ValidationFailed("unknown specialty", field="specialty")
            if allowed:
                row = ConsultationRow(
                    patient_id=patient_id,
                    requesting_facility_id=actor.facility_id,
                    requested_by_user_id=actor.user_id,
                    specialty=specialty,
                    urgency=parsed_urgency.value,
                    summary=clean_summary,
                    status=Status.REQUESTED.value,
                    created_at=now,
                )
                tx.add(row)
                await tx.flush()
                repo.audit(
                    tx,
                    at=now,
                    actor_user_id=actor.user_id,
                    action="consultation.create",
                    entity_type="consultation",
                    entity_id=row.id,
                    patient_id=patient_id,
                    outcome="success",
                    source=source,
                )
                card = await self.card(tx, row)
        if not allowed:
            await self._deny(actor, "consultation.create", None, patient_id, source)
        await self.notify_changed(card)
        if self.pairing is not None:
            await self.pairing.requested(card.consultation.id)
        return card.consultation

    async def open_requests(self, actor: Actor) -> list[RequestCard]:
        """Requests a specialist could take now, most urgent first."""
        if actor.role is not Role.SPECIALIST or not actor.specialty:
            return []
        async with self._db.transaction() as tx:
            rows = (
                (
                    await tx.execute(
                        select(ConsultationRow)
                        .where(
                            ConsultationRow.specialty == actor.specialty,
                            ConsultationRow.status.in_([s.value for s in OPEN_STATUSES]),
                        )
                        .order_by(ConsultationRow.created_at)
                    )
                )
                .scalars()
                .all()
            )
            cards = [await self.card(tx, r) for r in rows]
        order = {Urgency.EMERGENCY: 0, Urgency.URGENT: 1, Urgency.ROUTINE: 2}
        return sorted(cards, key=lambda c: (order[c.consultation.urgency], c.consultation.created_at))

    async def active_for(self, actor: Actor) -> list[RequestCard]:
        """A clinician's facility's active consultations; a specialist's accepted ones; all, for oversight."""
        active = [s.value for s in (Status.REQUESTED, Status.OFFERED, Status.ACCEPTED, Status.IN_PROGRESS)]
        stmt = select(ConsultationRow).where(ConsultationRow.status.in_(active))
        if actor.role is Role.CLINICIAN:
            stmt = stmt.where(ConsultationRow.requesting_facility_id == actor.facility_id)
        elif actor.role is Role.SPECIALIST:
            stmt = stmt.where(ConsultationRow.specialist_user_id == actor.user_id)
        # Coordinators and admins oversee every active consultation (their pages show no patient identity).
        async with self._db.transaction() as tx:
            rows = (await tx.execute(stmt.order_by(ConsultationRow.created_at.desc()).limit(100))).scalars().all()
            return [await self.card(tx, r) for r in rows]

    async def get(self, actor: Actor, consultation_id: int, *, source: str) -> RequestCard:
        async with self._db.transaction() as tx:
            row = await self._load(tx, consultation_id)
            if access.can_see_request(actor, repo.to_consultation(row)):
                repo.audit(
                    tx,
                    at=self._clock.now(),
                    actor_user_id=actor.user_id,
                    action="consultation.read",
                    entity_type="consultation",
                    entity_id=row.id,
                    patient_id=row.patient_id,
                    outcome="success",
                    source=source,
                )
                return await self.card(tx, row)
        await self._deny(actor, "consultation.read", consultation_id, row.patient_id, source)
        raise AssertionError("unreachable")

    async def accept(self, actor: Actor, consultation_id: int, *, source: str) -> Consultation:
        """First accept wins: the status compare-and-set decides, whatever the number of processes."""
        return (await self.accept_card(actor, consultation_id, source=source)).consultation

    async def accept_card(self, actor: Actor, consultation_id: int, *, source: str) -> RequestCard:
        """``accept``, answering with what the specialist sees, without another transaction after the commit
        (under load that one could fail and make a saved accept look refused)."""
        now = self._clock.now()
        async with self._db.transaction() as tx:
            row = await self._load(tx, consultation_id)
            consultation = repo.to_consultation(row)
            if not access.is_eligible_specialist(actor, consultation):
                denied = True
            elif consultation.status not in OPEN_STATUSES:
                raise Conflict("this request has already been taken or closed")
            else:
                denied = False
                won = await repo.transition_consultation(
                    tx,
                    consultation_id,
                    statuses_allowing(Transition.ACCEPT),
                    {
                        "status": Status.ACCEPTED.value,
                        "specialist_user_id": actor.user_id,
                        "accepted_at": now,
                    },
                )
                if not won:
                    raise Conflict("this request has already been taken or closed")
                closed = await pairing_store.close_offers(
                    tx, consultation_id, OfferStatus.TAKEN, now, except_user_id=actor.user_id
                )
                for offer in await pairing_store.offers_of(tx, [consultation_id]):
                    if offer.specialist_user_id == actor.user_id and offer.status == OfferStatus.PENDING.value:
                        await pairing_store.answer_offer(tx, offer.id, OfferStatus.ACCEPTED, now)
                        offer.status, offer.answered_at = OfferStatus.ACCEPTED.value, now
                        closed.append(offer)  # the specialist's other devices stop ringing too
                # Now busy: a ring for another case stops, and that case moves on to someone else.
                closed += await pairing_store.withdraw_rings_of(
                    tx, actor.user_id, now, except_consultation=consultation_id
                )
                repo.audit(
                    tx,
                    at=now,
                    actor_user_id=actor.user_id,
                    action="consultation.accept",
                    entity_type="consultation",
                    entity_id=consultation_id,
                    patient_id=row.patient_id,
                    outcome="success",
                    source=source,
                )
                await tx.refresh(row)
                card = await self.card(tx, row)
        if denied:
            await self._deny(actor, "consultation.accept", consultation_id, row.patient_id, source)
        await self.notify_changed(card)
        if self.pairing is not None:
            await self.pairing.settled(card, closed)
        return card

    async def cancel(self, actor: Actor, consultation_id: int, *, source: str) -> Consultation:
        return await self._simple_transition(
            actor, consultation_id, Transition.CANCEL, access.can_cancel, "consultation.cancel", source
        )

    # -- the room ---------------------------------------------------------------------------------------------

    async def room(
        self, actor: Actor, consultation_id: int, *, source: str
    ) -> tuple[RequestCard, Patient, list[CaseNote]]:
        """Everything the room page shows on load, for those allowed in."""
        async with self._db.transaction() as tx:
            row = await self._load(tx, consultation_id)
            if access.can_join_room(actor, repo.to_consultation(row)):
                patient_row = await tx.get(PatientRow, row.patient_id)
                assert patient_row is not None
                repo.audit(
                    tx,
                    at=self._clock.now(),
                    actor_user_id=actor.user_id,
                    action="consultation.room.open",
                    entity_type="consultation",
                    entity_id=row.id,
                    patient_id=row.patient_id,
                    outcome="success",
                    source=source,
                )
                notes = await repo.notes_of(tx, [row.id])
                return await self.card(tx, row), repo.to_patient(patient_row), notes
        await self._deny(actor, "consultation.room.open", consultation_id, row.patient_id, source)
        raise AssertionError("unreachable")

    async def join(self, actor: Actor, consultation_id: int, connection_id: str, *, source: str) -> Consultation:
        """Record that ``actor`` entered the room. The specialist's arrival starts the consultation."""
        now = self._clock.now()
        started = False
        async with self._db.transaction() as tx:
            row = await self._load(tx, consultation_id)
            consultation = repo.to_consultation(row)
            if access.can_join_room(actor, consultation):
                tx.add(
                    ParticipationRow(
                        consultation_id=consultation_id,
                        user_id=actor.user_id,
                        connection_id=connection_id[:64],
                        joined_at=now,
                    )
                )
                if actor.user_id == row.specialist_user_id and consultation.status is Status.ACCEPTED:
                    started = await repo.transition_consultation(
                        tx,
                        consultation_id,
                        statuses_allowing(Transition.START),
                        {
                            "status": next_status(consultation.status, Transition.START).value,
                            "started_at": now,
                        },
                    )
                repo.audit(
                    tx,
                    at=now,
                    actor_user_id=actor.user_id,
                    action="consultation.join",
                    entity_type="consultation",
                    entity_id=consultation_id,
                    patient_id=row.patient_id,
                    outcome="success",
                    source=source,
                )
                if started:
                    await tx.refresh(row)
                card = await self.card(tx, row)
                allowed = True
            else:
                allowed = False
        if not allowed:
            await self._deny(actor, "consultation.join", consultation_id, row.patient_id, source)
        if started:
            await self.notify_changed(card)
        return card.consultation

    async def leave(self, user_id: int, consultation_id: int, connection_id: str) -> None:
        now = self._clock.now()
        async with self._db.transaction() as tx:
            await tx.execute(
                update(ParticipationRow)
                .where(
                    ParticipationRow.consultation_id == consultation_id,
                    ParticipationRow.user_id == user_id,
                    ParticipationRow.connection_id == connection_id[:64],
                    ParticipationRow.left_at.is_(None),
                )
                .values(left_at=now)
            )

    async def close_stale_participations(self, *, all_open: bool = False) -> int:
        """Close the room stays held by processes that are gone: their presence leases have all run out
        (a process renews a lease for every user connected to it). Called at start and periodically.
        ``all_open``: a lone process starting (no Redis, so no other process) closes every stay left open."""
        now = self._clock.now()
        async with self._db.transaction() as tx:
            alive = set(
                (
                    await tx.execute(
                        select(PresenceLeaseRow.instance_id).where(PresenceLeaseRow.expires_at > now).distinct()
                    )
                ).scalars()
            )
            open_stays = (
                await tx.execute(
                    select(ParticipationRow.id, ParticipationRow.connection_id).where(
                        ParticipationRow.left_at.is_(None)
                    )
                )
            ).all()
            stale = [stay.id for stay in open_stays if all_open or stay.connection_id.split(":", 1)[0] not in alive]
            if stale:
                await tx.execute(update(ParticipationRow).where(ParticipationRow.id.in_(stale)).values(left_at=now))
            return len(stale)

    async def participants(self, actor: Actor, consultation_id: int) -> list[Participation]:
        async with self._db.transaction() as tx:
            row = await self._load(tx, consultation_id)
            if not access.can_join_room(actor, repo.to_consultation(row)):
                raise PermissionDenied("you are not a participant of this consultation")
            return await repo.participations_of(tx, consultation_id)

    async def room_notes(self, actor: Actor, consultation_id: int) -> list[CaseNote]:
        """The saved notes, for someone in the room (the join that precedes this is audited)."""
        async with self._db.transaction() as tx:
            row = await self._load(tx, consultation_id)
            if not access.can_join_room(actor, repo.to_consultation(row)):
                raise PermissionDenied("you are not a participant of this consultation")
            return await repo.notes_of(tx, [consultation_id])

    async def add_note(
        self, actor: Actor, consultation_id: int, text: str, client_id: str, *, source: str
    ) -> tuple[CaseNote, bool]:
        """Save a case note at once. A resend with the same client_id returns the saved note (created=False)."""
        if not _CLIENT_ID.match(client_id):
            raise ValidationFailed("client_id must be 8-64 letters, digits, '-' or '_'", field="client_id")
        clean = normalize_text(text, field="text", max_chars=self._settings.max_note_chars)
        now = self._clock.now()
        async with self._db.transaction() as tx:
            row = await self._load(tx, consultation_id)
            same_note = select(CaseNoteRow).where(
                CaseNoteRow.consultation_id == consultation_id,
                CaseNoteRow.author_user_id == actor.user_id,
                CaseNoteRow.client_id == client_id,
            )
            # The author's own resend is answered with the saved note even after the room closed: its first
            # acknowledgement may have been lost just before the specialist ended the consultation.
            existing = (await tx.execute(same_note)).scalar_one_or_none()
            if existing is not None:
                return self._note(existing, actor.display_name), False
            allowed = access.can_write_note(actor, repo.to_consultation(row))
            if allowed:
                note_row = CaseNoteRow(
                    consultation_id=consultation_id,
                    author_user_id=actor.user_id,
                    client_id=client_id,
                    text=clean,
                    created_at=now,
                )
                try:
                    async with tx.begin_nested():
                        tx.add(note_row)
                        await tx.flush()
                except IntegrityError:
                    # A concurrent resend (another connection, another process) stored it first.
                    return self._note((await tx.execute(same_note)).scalar_one(), actor.display_name), False
                repo.audit(
                    tx,
                    at=now,
                    actor_user_id=actor.user_id,
                    action="note.create",
                    entity_type="case_note",
                    entity_id=note_row.id,
                    patient_id=row.patient_id,
                    outcome="success",
                    source=source,
                )
                note = self._note(note_row, actor.display_name)
        if not allowed:
            await self._deny(actor, "note.create", consultation_id, row.patient_id, source)
        try:
            await self.notifier.note_added(note)
        except Exception:
            log.exception("could not push note %s", note.id)
        return note, True

    async def close(
        self,
        actor: Actor,
        consultation_id: int,
        recommendation: str,
        icd10_code: str,
        outcome: str,
        *,
        source: str,
    ) -> Consultation:
        closing = validate_closing(recommendation, icd10_code, outcome)
        now = self._clock.now()
        async with self._db.transaction() as tx:
            row = await self._load(tx, consultation_id)
            consultation = repo.to_consultation(row)
            allowed = access.can_close(actor, consultation)
            if allowed:
                next_status(consultation.status, Transition.COMPLETE)  # raises Conflict when not closable
                won = await repo.transition_consultation(
                    tx,
                    consultation_id,
                    statuses_allowing(Transition.COMPLETE),
                    {
                        "status": Status.COMPLETED.value,
                        "ended_at": now,
                        "recommendation": closing.recommendation,
                        "icd10_code": closing.icd10_code,
                        "outcome": closing.outcome.value,
                    },
                )
                if not won:
                    raise Conflict("this consultation is already closed")
                await tx.execute(
                    update(ParticipationRow)
                    .where(
                        ParticipationRow.consultation_id == consultation_id,
                        ParticipationRow.left_at.is_(None),
                    )
                    .values(left_at=now)
                )
                repo.audit(
                    tx,
                    at=now,
                    actor_user_id=actor.user_id,
                    action="consultation.complete",
                    entity_type="consultation",
                    entity_id=consultation_id,
                    patient_id=row.patient_id,
                    outcome="success",
                    source=source,
                )
                await tx.refresh(row)
                card = await self.card(tx, row)
        if not allowed:
            await self._deny(actor, "consultation.complete", consultation_id, row.patient_id, source)
        await self.notify_changed(card)
        if self.pairing is not None:
            await self.pairing.settled(card, [])
        return card.consultation

    # -- helpers ----------------------------------------------------------------------------------------------

    async def _simple_transition(
        self,
        actor: Actor,
        consultation_id: int,
        transition: Transition,
        policy: object,
        action: str,
        source: str,
    ) -> Consultation:
        now = self._clock.now()
        async with self._db.transaction() as tx:
            row = await self._load(tx, consultation_id)
            consultation = repo.to_consultation(row)
            allowed = callable(policy) and bool(policy(actor, consultation))
            if allowed:
                target = next_status(consultation.status, transition)
                values: dict[str, object] = {"status": target.value}
                if target in (Status.CANCELLED, Status.EXPIRED, Status.COMPLETED):
                    values["ended_at"] = now
                if not await repo.transition_consultation(tx, consultation_id, statuses_allowing(transition), values):
                    raise Conflict("the consultation changed meanwhile; reload and try again")
                closed = await pairing_store.close_offers(tx, consultation_id, OfferStatus.WITHDRAWN, now)
                repo.audit(
                    tx,
                    at=now,
                    actor_user_id=actor.user_id,
                    action=action,
                    entity_type="consultation",
                    entity_id=consultation_id,
                    patient_id=row.patient_id,
                    outcome="success",
                    source=source,
                )
                await tx.refresh(row)
                card = await self.card(tx, row)
        if not allowed:
            await self._deny(actor, action, consultation_id, row.patient_id, source)
        await self.notify_changed(card)
        if self.pairing is not None:
            await self.pairing.settled(card, closed)
        return card.consultation

    async def _load(self, tx: AsyncSession, consultation_id: int) -> ConsultationRow:
        row = await repo.get_consultation(tx, consultation_id)
        if row is None:
            raise NotFound("no such consultation")
        return row

    async def card(self, tx: AsyncSession, row: ConsultationRow) -> RequestCard:
        patient = await tx.get(PatientRow, row.patient_id)
        facility = await tx.get(FacilityRow, row.requesting_facility_id)
        requester = await tx.get(UserRow, row.requested_by_user_id)
        specialist = await tx.get(UserRow, row.specialist_user_id) if row.specialist_user_id else None
        assert patient is not None and facility is not None and requester is not None
        today = to_local(self._clock.now(), self._settings.display_timezone).date()
        return RequestCard(
            consultation=repo.to_consultation(row),
            patient_name=patient.full_name,
            patient_age=repo.to_patient(patient).age_on(today),
            patient_sex=patient.sex,
            facility_name=facility.name,
            facility_level=facility.level,
            requested_by_name=requester.display_name,
            specialist_name=specialist.display_name if specialist else None,
        )

    @staticmethod
    def _note(row: CaseNoteRow, author_name: str) -> CaseNote:
        return CaseNote(
            row.id,
            row.consultation_id,
            row.author_user_id,
            author_name,
            row.text,
            row.created_at,
            row.client_id,
        )

    async def notify_changed(self, card: RequestCard) -> None:
        try:
            await self.notifier.consultation_changed(card)
        except Exception:
            # The change is committed; a viewer that missed the push sees it on its next load.
            log.exception("could not push consultation %s change", card.consultation.id)

    async def _deny(
        self, actor: Actor, action: str, consultation_id: int | None, patient_id: int | None, source: str
    ) -> None:
        async with self._db.transaction() as tx:
            repo.audit(
                tx,
                at=self._clock.now(),
                actor_user_id=actor.user_id,
                action=action,
                entity_type="consultation",
                entity_id=consultation_id,
                patient_id=patient_id,
                outcome="denied",
                source=source,
            )
        raise PermissionDenied("you are not allowed to do this for this consultation")
