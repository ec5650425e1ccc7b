"""Vital signs through the services, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from teleconsult.clock import FakeClock
from teleconsult.domain.errors import PermissionDenied, ValidationFailed
from teleconsult.domain.vitals import VitalKind, VitalSource
from teleconsult.services import Services
from teleconsult.storage.models import VitalSignRow
from tests.conftest import World
from tests.service.support import audit_rows, count
from tests.service.test_consultations import in_progress


class Recorder:
    def __init__(self) -> None:
        self.vitals: list[object] = []

    async def vital_added(self, vital: object) -> None:
        self.vitals.append(vital)

    def __getattr__(self, name: str):  # the other notifications are not under test here
        async def ignore(*args: object, **kwargs: object) -> None:
            return None

        return ignore


async def test_a_typed_in_reading_is_saved_pushed_and_deduplicated(services: Services, world: World) -> None:
    recorder = Recorder()
    services.vitals.notifier = recorder  # type: ignore[assignment]
    cid = await in_progress(services, world)
    vital, created = await services.vitals.add(world.clin_a, cid, "bp", 150, 95, "bp-reading-0001", source="t")
    assert created and vital.kind is VitalKind.BLOOD_PRESSURE and (vital.value, vital.value2) == (150, 95)
    assert vital.unit == "mm[Hg]" and vital.source is VitalSource.MANUAL
    again, created_again = await services.vitals.add(world.clin_a, cid, "bp", 150, 95, "bp-reading-0001", source="t")
    assert again.id == vital.id and not created_again
    assert await count(services, VitalSignRow) == 1 and len(recorder.vitals) == 1
    [audit] = await audit_rows(services, action="vitals.add")
    assert audit.patient_id == world.patient.id and "150" not in audit.detail


@pytest.mark.parametrize(
    ("kind", "value", "value2", "field"),
    [
        ("hr", 400, None, "value"),
        ("spo2", 101, None, "value"),
        ("temp", 50, None, "value"),
        ("bp", 120, None, "value2"),
        ("bp", 80, 90, "value2"),
        ("rr", 12, 3, "value2"),
        ("glucose", 5, None, "kind"),
        ("hr", float("nan"), None, "value"),
    ],
)
async def test_impossible_readings_are_refused_and_nothing_is_saved(
    services: Services, world: World, kind: str, value: float, value2: float | None, field: str
) -> None:
    cid = await in_progress(services, world)
    with pytest.raises(ValidationFailed) as refused:
        await services.vitals.add(world.clin_a, cid, kind, value, value2, "reading-0001", source="t")
    assert refused.value.field == field
    assert await count(services, VitalSignRow) == 0


async def test_a_device_reading_keeps_its_own_time_within_reason(
    services: Services, world: World, clock: FakeClock
) -> None:
    cid = await in_progress(services, world)
    taken = clock.now() - timedelta(minutes=3)
    vital, _ = await services.vitals.add(
        world.clin_a, cid, "spo2", 93, None, "dev-0000001", observed_at=taken, device=True, source="t"
    )
    assert vital.observed_at == taken and vital.source is VitalSource.DEVICE
    with pytest.raises(ValidationFailed):
        await services.vitals.add(
            world.clin_a, cid, "hr", 80, None, "dev-0000002", observed_at=clock.now() + timedelta(days=2), source="t"
        )


async def test_only_people_in_the_room_add_and_only_record_readers_read(services: Services, world: World) -> None:
    cid = await in_progress(services, world)
    await services.vitals.add(world.spec_cardio, cid, "hr", 88, None, "spec-reading-1", source="t")
    with pytest.raises(PermissionDenied):
        await services.vitals.add(world.clin_b, cid, "hr", 88, None, "other-reading-1", source="t")
    assert [v.value for v in await services.vitals.for_patient(world.clin_a, world.patient.id, source="t")] == [88]
    with pytest.raises(PermissionDenied):
        await services.vitals.for_patient(world.clin_b, world.patient.id, source="t")
    outcomes = [(a.action, a.outcome) for a in await audit_rows(services) if a.action.startswith("vitals")]
    assert outcomes == [
        ("vitals.add", "success"),
        ("vitals.add", "denied"),
        ("vitals.read", "success"),
        ("vitals.read", "denied"),
    ]
