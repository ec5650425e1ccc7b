"""Vital signs: typed in by a clinician in the room or sent by a device gateway; saved at once as
observations of the patient, pushed live to the room, and read back for the record."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from teleconsult.clock import Clock
from teleconsult.domain import access
from teleconsult.domain.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from teleconsult.domain.people import Actor
from teleconsult.domain.vitals import SPECS, VitalKind, VitalSign, VitalSource, parse_kind, validate_reading
from teleconsult.services.notify import Notifier
from teleconsult.settings import Settings
from teleconsult.storage import repositories as repo
from teleconsult.storage.db import Database
from teleconsult.storage.models import PatientRow, UserRow, VitalSignRow

_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
# A device clock may drift; a reading stamped further from now than this is refused.
MAX_CLOCK_SKEW = timedelta(hours=24)


class VitalsService:
    def __init__(self, db: Database, clock: Clock, settings: Settings, notifier: Notifier) -> None:
        self._db = db
        self._clock = clock
        self._settings = settings
        self.notifier = notifier

    async def add(
        self,
        actor: Actor,
        consultation_id: int,
        kind: str,
        value: float,
        value2: float | None,
        client_id: str,
        *,
        observed_at: datetime | None = None,
        device: bool = False,
        source: str,
    ) -> tuple[VitalSign, bool]:
        """Save one reading. A resend with the same client_id returns the saved one (created=False)."""
        parsed = parse_kind(kind)
        clean_value, clean_value2 = validate_reading(parsed, value, value2)
        if not _CLIENT_ID.match(client_id):
            raise ValidationFailed("client_id must be 8-64 letters, digits, '-' or '_'", field="client_id")
        now = self._clock.now()
        when = observed_at or now
        if when.tzinfo is None:
            raise ValidationFailed("observed_at needs a time-zone offset", field="observed_at")
        if abs(when - now) > MAX_CLOCK_SKEW:
            raise ValidationFailed("observed_at is more than 24 hours away from now", field="observed_at")
        async with self._db.transaction() as tx:
            consultation = await repo.get_consultation(tx, consultation_id)
            if consultation is None:
                raise NotFound("no such consultation")
            allowed = access.can_write_note(actor, repo.to_consultation(consultation))
            if allowed:
                existing = await self._by_client_id(tx, consultation.patient_id, actor.user_id, client_id)
                if existing is not None:
                    return existing, False
                row = VitalSignRow(
                    patient_id=consultation.patient_id,
                    consultation_id=consultation_id,
                    kind=parsed.value,
                    value=clean_value,
                    value2=clean_value2,
                    unit=SPECS[parsed].unit,
                    observed_at=when,
                    recorded_at=now,
                    source=(VitalSource.DEVICE if device else VitalSource.MANUAL).value,
                    recorded_by_user_id=actor.user_id,
                    client_id=client_id,
                )
                tx.add(row)
                try:
                    await tx.flush()
                except IntegrityError:
                    # The same reading raced in on another connection; the first one stands.
                    raise Conflict("this reading was just saved from another connection") from None
                repo.audit(
                    tx,
                    at=now,
                    actor_user_id=actor.user_id,
                    action="vitals.add",
                    entity_type="vital_sign",
                    entity_id=row.id,
                    patient_id=consultation.patient_id,
                    outcome="success",
                    source=source,
                    detail=parsed.value,
                )
                vital = _to_vital(row, actor.display_name)
        if not allowed:
            await self._deny(actor, "vitals.add", consultation.patient_id, source)
        await self.notifier.vital_added(vital)
        return vital, True

    async def for_consultation(self, actor: Actor, consultation_id: int) -> list[VitalSign]:
        """For someone in the room (their join is audited)."""
        async with self._db.transaction() as tx:
            consultation = await repo.get_consultation(tx, consultation_id)
            if consultation is None:
                raise NotFound("no such consultation")
            if not access.can_join_room(actor, repo.to_consultation(consultation)):
                raise PermissionDenied("you are not a participant of this consultation")
            return await self._list(tx, VitalSignRow.consultation_id == consultation_id)

    async def for_patient(self, actor: Actor, patient_id: int, *, source: str) -> list[VitalSign]:
        async with self._db.transaction() as tx:
            patient = await tx.get(PatientRow, patient_id)
            if patient is None:
                raise NotFound("no such patient")
            allowed = await repo.may_view_record(tx, actor, patient)
            if allowed:
                repo.audit(
                    tx,
                    at=self._clock.now(),
                    actor_user_id=actor.user_id,
                    action="vitals.read",
                    entity_type="patient",
                    entity_id=patient_id,
                    patient_id=patient_id,
                    outcome="success",
                    source=source,
                )
                return await self._list(tx, VitalSignRow.patient_id == patient_id)
        await self._deny(actor, "vitals.read", patient_id, source)
        raise AssertionError("unreachable")

    async def _list(self, tx: AsyncSession, condition: object) -> list[VitalSign]:
        rows = await tx.execute(
            select(VitalSignRow, UserRow.display_name)
            .join(UserRow, UserRow.id == VitalSignRow.recorded_by_user_id)
            .where(condition)  # type: ignore[arg-type]
            .order_by(VitalSignRow.observed_at, VitalSignRow.id)
        )
        return [_to_vital(row, name) for row, name in rows.all()]

    async def _by_client_id(self, tx: AsyncSession, patient_id: int, user_id: int, client_id: str) -> VitalSign | None:
        found = (
            await tx.execute(
                select(VitalSignRow, UserRow.display_name)
                .join(UserRow, UserRow.id == VitalSignRow.recorded_by_user_id)
                .where(
                    VitalSignRow.patient_id == patient_id,
                    VitalSignRow.recorded_by_user_id == user_id,
                    VitalSignRow.client_id == client_id,
                )
            )
        ).first()
        return _to_vital(found[0], found[1]) if found else None

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
        raise PermissionDenied("you are not allowed to see or add this patient's vital signs")


def _to_vital(row: VitalSignRow, recorded_by_name: str) -> VitalSign:
    return VitalSign(
        id=row.id,
        patient_id=row.patient_id,
        consultation_id=row.consultation_id,
        kind=VitalKind(row.kind),
        value=row.value,
        value2=row.value2,
        unit=row.unit,
        observed_at=row.observed_at,
        source=VitalSource(row.source),
        recorded_by_user_id=row.recorded_by_user_id,
        recorded_by_name=recorded_by_name,
        client_id=row.client_id,
    )
