"""FHIR R4 export of a patient's record, for the command line and the read-only /fhir endpoints.

The same record access policy as the record page (``repositories.may_view_record``) guards every read; each
one, allowed or denied, writes an audit event (``fhir.export`` for a bundle, ``fhir.read`` for one resource)
that names the patient by id and never holds patient data. ``actor=None`` is the operator's command line
acting as the system: always allowed, audited with no user.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from teleconsult.clock import Clock
from teleconsult.domain import fhir
from teleconsult.domain.errors import NotFound, PermissionDenied
from teleconsult.domain.patients import normalize_cccd
from teleconsult.domain.people import Actor
from teleconsult.domain.vitals import VitalKind, VitalSign, VitalSource
from teleconsult.settings import Settings
from teleconsult.storage import repositories as repo
from teleconsult.storage.db import Database
from teleconsult.storage.models import (
    ConsultationRow,
    FacilityRow,
    PatientRow,
    UserRow,
    VitalSignRow,
    WaveformStreamRow,
)
from teleconsult.storage.waveforms import read_samples, signals_of

Resource = dict[str, Any]
# Resources are built after the transaction, from values loaded in it: on SQLite every transaction holds the
# write lock, and building a long ECG's text takes far longer than reading its compressed rows.
Later = Callable[[], list[Resource]]
Locate = Callable[[AsyncSession], Awaitable[PatientRow]]
Load = Callable[[AsyncSession, PatientRow], Awaitable[list[Later]]]


def _later(build: Callable[..., Resource], *args: Any, **kwargs: Any) -> Later:
    return lambda: [build(*args, **kwargs)]


class FhirService:
    def __init__(self, db: Database, clock: Clock, settings: Settings) -> None:
        self._db = db
        self._clock = clock
        self._settings = settings

    async def patient_id_by_cccd(self, cccd: str) -> int:
        """For the operator's command line, which names patients by citizen ID."""
        value = normalize_cccd(cccd)
        async with self._db.transaction() as tx:
            found = await tx.scalar(select(PatientRow.id).where(PatientRow.cccd == value))
        if found is None:
            raise NotFound(f"no patient with citizen ID (CCCD) {value}")
        return int(found)

    async def patient_bundle(
        self,
        actor: Actor | None,
        patient_id: int,
        *,
        source: str,
        base_url: str,
        bundle_type: str = "collection",
    ) -> Resource:
        """Everything in the record: Patient, an Encounter per consultation, vital-sign and waveform
        Observations. ``collection`` for an export, ``searchset`` for ``Patient/$everything``."""

        async def load(tx: AsyncSession, patient: PatientRow) -> list[Later]:
            parts = [await self._patient(tx, patient), *await self._encounters(tx, patient.id)]
            parts += [
                _later(fhir.vital_observation, v) for v in await self._vitals(tx, VitalSignRow.patient_id == patient.id)
            ]
            for stream in await self._streams(tx, patient.id):
                parts += await self._segments(tx, stream)
            return parts

        locate = self._patient_locator(patient_id)
        resources = await self._guarded(actor, "fhir.export", source, locate, load, f"Bundle {bundle_type}")
        return fhir.bundle(resources, bundle_type=bundle_type, base_url=base_url, timestamp=self._clock.now())

    async def patient_resource(self, actor: Actor | None, patient_id: int, *, source: str) -> Resource:
        async def load(tx: AsyncSession, patient: PatientRow) -> list[Later]:
            return [await self._patient(tx, patient)]

        locate = self._patient_locator(patient_id)
        [patient] = await self._guarded(actor, "fhir.read", source, locate, load, f"Patient/{patient_id}")
        return patient

    async def encounter_resource(self, actor: Actor | None, consultation_id: int, *, source: str) -> Resource:
        async def locate(tx: AsyncSession) -> PatientRow:
            row = await tx.get(ConsultationRow, consultation_id)
            if row is None:
                raise NotFound("no such Encounter")
            return await self._patient_row(tx, row.patient_id)

        async def load(tx: AsyncSession, patient: PatientRow) -> list[Later]:
            return await self._encounters(tx, patient.id, only=consultation_id)

        [encounter] = await self._guarded(actor, "fhir.read", source, locate, load, f"Encounter/{consultation_id}")
        return encounter

    async def observation_resource(self, actor: Actor | None, observation_id: str, *, source: str) -> Resource:
        parsed = fhir.parse_observation_id(observation_id)
        if parsed is None:
            raise NotFound("no such Observation")
        kind, numbers = parsed
        reader = self._vital_reader(numbers[0]) if kind == "vital" else self._segment_reader(kind, *numbers)
        found = await self._guarded(actor, "fhir.read", source, *reader, f"Observation/{observation_id}")
        [observation] = [r for r in found if r["id"] == observation_id]
        return observation

    # --- one resource ---------------------------------------------------------------------------------------

    def _patient_locator(self, patient_id: int) -> Locate:
        async def locate(tx: AsyncSession) -> PatientRow:
            return await self._patient_row(tx, patient_id)

        return locate

    def _vital_reader(self, vital_id: int) -> tuple[Locate, Load]:
        async def locate(tx: AsyncSession) -> PatientRow:
            row = await tx.get(VitalSignRow, vital_id)
            if row is None:
                raise NotFound("no such Observation")
            return await self._patient_row(tx, row.patient_id)

        async def load(tx: AsyncSession, _patient: PatientRow) -> list[Later]:
            return [_later(fhir.vital_observation, v) for v in await self._vitals(tx, VitalSignRow.id == vital_id)]

        return locate, load

    def _segment_reader(self, kind: str, stream_id: int, index: int) -> tuple[Locate, Load]:
        async def locate(tx: AsyncSession) -> PatientRow:
            stream = await tx.get(WaveformStreamRow, stream_id)
            if (
                stream is None
                or index >= len(_ranges(stream))
                or kind not in fhir.waveform_kinds(s.name for s in signals_of(stream))
            ):
                raise NotFound("no such Observation")
            return await self._patient_row(tx, stream.patient_id)

        async def load(tx: AsyncSession, _patient: PatientRow) -> list[Later]:
            stream = await tx.get(WaveformStreamRow, stream_id)
            assert stream is not None  # located in this transaction
            return await self._segments(tx, stream, only=index)

        return locate, load

    async def _guarded(
        self, actor: Actor | None, action: str, source: str, locate: Locate, load: Load, detail: str
    ) -> list[Resource]:
        """Locate the patient, apply the record access policy, load, audit; build after the commit."""
        async with self._db.transaction() as tx:
            patient = await locate(tx)
            allowed = actor is None or await repo.may_view_record(tx, actor, patient)
            if allowed:
                parts = await load(tx, patient)
                repo.audit(
                    tx,
                    at=self._clock.now(),
                    actor_user_id=actor.user_id if actor else None,
                    action=action,
                    entity_type="patient",
                    entity_id=patient.id,
                    patient_id=patient.id,
                    outcome="success",
                    source=source,
                    detail=detail,  # what was asked for, by type and id: never patient data
                )
        if allowed:
            return [resource for part in parts for resource in part()]
        assert actor is not None  # the system is never denied
        async with self._db.transaction() as tx:
            repo.audit(
                tx,
                at=self._clock.now(),
                actor_user_id=actor.user_id,
                action=action,
                entity_type="patient",
                entity_id=patient.id,
                patient_id=patient.id,
                outcome="denied",
                source=source,
                detail=detail,
            )
        raise PermissionDenied("you do not have access to this patient's record")

    # --- loading rows -----------------------------------------------------------------------------------------

    @staticmethod
    async def _patient_row(tx: AsyncSession, patient_id: int) -> PatientRow:
        row = await tx.get(PatientRow, patient_id)
        if row is None:
            raise NotFound("no such Patient")
        return row

    @staticmethod
    async def _patient(tx: AsyncSession, row: PatientRow) -> Later:
        facility = await tx.get(FacilityRow, row.registered_by_facility_id)
        return _later(
            fhir.patient_resource, repo.to_patient(row), managing_organization=facility.name if facility else None
        )

    @staticmethod
    async def _encounters(tx: AsyncSession, patient_id: int, only: int | None = None) -> list[Later]:
        stmt = select(ConsultationRow).where(ConsultationRow.patient_id == patient_id)
        if only is not None:
            stmt = stmt.where(ConsultationRow.id == only)
        rows = list((await tx.execute(stmt.order_by(ConsultationRow.created_at, ConsultationRow.id))).scalars())
        user_ids = {c.requested_by_user_id for c in rows} | {c.specialist_user_id for c in rows if c.specialist_user_id}
        users = dict((await tx.execute(select(UserRow.id, UserRow.display_name).where(UserRow.id.in_(user_ids)))).all())
        facility_ids = {c.requesting_facility_id for c in rows}
        facilities = dict(
            (await tx.execute(select(FacilityRow.id, FacilityRow.name).where(FacilityRow.id.in_(facility_ids)))).all()
        )
        return [
            _later(
                fhir.encounter_resource,
                repo.to_consultation(c),
                facility_name=facilities.get(c.requesting_facility_id, ""),
                requested_by_name=users.get(c.requested_by_user_id, ""),
                specialist_name=users.get(c.specialist_user_id) if c.specialist_user_id else None,
            )
            for c in rows
        ]

    @staticmethod
    async def _vitals(tx: AsyncSession, condition: Any) -> list[VitalSign]:
        result = await tx.execute(
            select(VitalSignRow, UserRow.display_name)
            .join(UserRow, UserRow.id == VitalSignRow.recorded_by_user_id)
            .where(condition)
            .order_by(VitalSignRow.observed_at, VitalSignRow.id)
        )
        return [_to_vital(row, name) for row, name in result.all()]

    @staticmethod
    async def _streams(tx: AsyncSession, patient_id: int) -> list[WaveformStreamRow]:
        stmt = (
            select(WaveformStreamRow)
            .where(WaveformStreamRow.patient_id == patient_id)
            .order_by(WaveformStreamRow.started_at, WaveformStreamRow.id)
        )
        return list((await tx.execute(stmt)).scalars())

    @staticmethod
    async def _segments(tx: AsyncSession, stream: WaveformStreamRow, only: int | None = None) -> list[Later]:
        """The stream's segments (all, or segment ``only``) with their samples read from the store."""
        signals = tuple(fhir.WaveformSignal(s.name, s.units, s.gain, s.baseline) for s in signals_of(stream))
        ranges = _ranges(stream)
        step = fhir.segment_length(stream.rate_mhz, len(signals))
        out: list[Later] = []
        for index in range(len(ranges)) if only is None else [only]:
            start, end = ranges[index]
            segment = fhir.WaveformSegment(
                stream_id=stream.id,
                index=index,
                patient_id=stream.patient_id,
                consultation_id=stream.consultation_id,
                label=stream.label,
                rate_mhz=stream.rate_mhz,
                signals=signals,
                stream_started_at=stream.started_at,
                first_sample=start,
                samples=await read_samples(tx, stream, start, end - start),
                # The last piece of a stream still running will grow: not final yet.
                final=stream.ended_at is not None or end - start == step,
            )
            out.append(partial(fhir.waveform_observations, segment))
        return out


def _ranges(stream: WaveformStreamRow) -> list[tuple[int, int]]:
    return fhir.segment_ranges(stream.next_sample, stream.rate_mhz, len(signals_of(stream)))


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
