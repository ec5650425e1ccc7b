"""Pairing through the services, on SQLite and PostgreSQL, with a fake clock: offers, timeouts, declines,
emergency fan-out, escalation, hand-over, restart. No sleeps: the tests advance the clock and call tick()."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import timedelta

import pytest

from teleconsult.clock import FakeClock
from teleconsult.domain.consultation import Status
from teleconsult.domain.errors import Conflict, PermissionDenied, ValidationFailed
from teleconsult.domain.pairing import OfferStatus
from teleconsult.domain.people import Actor
from teleconsult.services import Services
from teleconsult.services.notify import RequestCard
from teleconsult.services.pairing import OfferView, PairingStatus
from teleconsult.settings import Settings
from teleconsult.storage.models import ConsultationRow, OnCallShiftRow, PairingOfferRow, PresenceLeaseRow
from tests.conftest import PATIENT_DRAFT, MakeServices, World
from tests.service.support import audit_rows, rows

SUMMARY = "Nam 62 tuổi, đau ngực 1 giờ, ST chênh lên V1-V4."


@dataclass
class Pager:
    """What the transport would push: stands in for socket.io, a boundary the services do not own."""

    rung: list[tuple[OfferView, RequestCard]] = field(default_factory=list)
    closed: list[OfferView] = field(default_factory=list)
    statuses: list[PairingStatus] = field(default_factory=list)
    escalations: list[PairingStatus] = field(default_factory=list)

    async def consultation_changed(self, card: RequestCard) -> None:
        return None

    async def offer_made(self, offer: OfferView, card: RequestCard) -> None:
        self.rung.append((offer, card))

    async def offer_closed(self, offer: OfferView) -> None:
        self.closed.append(offer)

    async def pairing_changed(self, status: PairingStatus) -> None:
        self.statuses.append(status)

    async def pairing_escalated(self, status: PairingStatus) -> None:
        self.escalations.append(status)

    def rung_to(self, actor: Actor) -> list[int]:
        return [offer.consultation_id for offer, _ in self.rung if offer.specialist_user_id == actor.user_id]


async def on_call(services: Services, clock: FakeClock, *actors: Actor, hours: float = 12) -> None:
    async with services.db.transaction() as tx:
        for actor in actors:
            assert actor.specialty
            tx.add(
                OnCallShiftRow(
                    hub_id=actor.facility_id,
                    specialty=actor.specialty,
                    user_id=actor.user_id,
                    starts_at=clock.now() - timedelta(hours=1),
                    ends_at=clock.now() + timedelta(hours=hours),
                    created_at=clock.now(),
                )
            )


async def online(services: Services, *actors: Actor, instance: str = "process-a") -> None:
    for actor in actors:
        await services.presence.hold(instance, actor.user_id)


async def advance(services: Services, clock: FakeClock, seconds: float, instance: str = "process-a") -> None:
    """Let time pass while the process stays up: it renews its presence leases every few seconds."""
    held = [lease.user_id for lease in await rows(services, PresenceLeaseRow, PresenceLeaseRow.instance_id == instance)]
    remaining = seconds
    while remaining > 0:
        step = min(5.0, remaining)
        await services.presence.renew(instance, held)
        clock.advance(step)
        remaining -= step
    await services.presence.renew(instance, held)


async def ready(services: Services, clock: FakeClock, *actors: Actor) -> None:
    await on_call(services, clock, *actors)
    await online(services, *actors)


async def request(services: Services, world: World, urgency: str = "urgent", clinician: Actor | None = None) -> int:
    consultation = await services.consultations.request(
        clinician or world.clin_a, world.patient.id, "cardiology", urgency, SUMMARY, source="t"
    )
    return consultation.id


async def offers(services: Services, cid: int) -> list[tuple[int, str]]:
    found = await rows(services, PairingOfferRow, PairingOfferRow.consultation_id == cid)
    return [(o.specialist_user_id, o.status) for o in sorted(found, key=lambda o: o.id)]


@pytest.fixture
def pager(services: Services) -> Pager:
    pager = Pager()
    services.set_notifier(pager)  # type: ignore[arg-type]
    return pager


async def test_a_request_rings_the_least_recently_assigned_specialist_on_call(
    services: Services, world: World, clock: FakeClock, pager: Pager
) -> None:
    await ready(services, clock, world.spec_cardio, world.spec_cardio2)
    earlier = await request(services, world)
    first = pager.rung[-1][0].specialist_user_id
    await services.consultations.accept(
        world.spec_cardio if first == world.spec_cardio.user_id else world.spec_cardio2, earlier, source="t"
    )
    await services.consultations.close(
        world.spec_cardio if first == world.spec_cardio.user_id else world.spec_cardio2,
        earlier,
        "Aspirin, chuyển tuyến.",
        "I21.0",
        "transfer",
        source="t",
    )
    await advance(services, clock, 60)

    cid = await request(services, world)

    other = world.spec_cardio2 if first == world.spec_cardio.user_id else world.spec_cardio
    assert pager.rung_to(other)[-1] == cid, "the specialist assigned less recently gets the next case"
    offer, card = pager.rung[-1]
    assert card.consultation.summary == SUMMARY and offer.deadline_at == clock.now() + timedelta(seconds=120)
    status = await services.pairing.status(world.clin_a, cid)
    assert status.state == "offered" and [o.specialist_name for o in status.offers] == [other.display_name]
    assert status.offers[0].hub_name == world.bvtw.name
    ringing = await services.pairing.offers_for(other)
    assert [o.consultation_id for o, _ in ringing] == [cid]


async def test_no_answer_rings_the_next_then_escalates_to_the_coordinator(
    services: Services, world: World, clock: FakeClock, pager: Pager
) -> None:
    await ready(services, clock, world.spec_cardio, world.spec_cardio2)
    cid = await request(services, world, "urgent")
    [(first, _)] = await offers(services, cid)

    await advance(services, clock, 119)
    await services.pairing.tick()
    assert await offers(services, cid) == [(first, "pending")], "still ringing before the urgent timeout"

    await advance(services, clock, 2)
    await services.pairing.tick()
    [(_, expired), (second, pending)] = await offers(services, cid)
    assert (expired, pending) == ("expired", "pending") and second != first
    assert [o.status for o in pager.closed] == [OfferStatus.EXPIRED]

    await advance(services, clock, 121)
    await services.pairing.tick()
    status = await services.pairing.status(world.clin_a, cid)
    assert status.state == "escalated" and status.offers == ()
    assert [s.consultation_id for s in pager.escalations] == [cid]
    assert world.bvtw.id in status.hub_ids
    assert [e.action for e in await audit_rows(services, action="consultation.escalate")] == ["consultation.escalate"]
    # Escalation is told once, not at every tick.
    await advance(services, clock, 30)
    await services.pairing.tick()
    assert len(pager.escalations) == 1


async def test_a_specialist_who_does_not_answer_may_be_rung_again_later(
    services: Services, world: World, clock: FakeClock, pager: Pager
) -> None:
    await ready(services, clock, world.spec_cardio)
    cid = await request(services, world, "emergency")
    await advance(services, clock, 31)
    await services.pairing.tick()
    assert (await services.pairing.status(world.clin_a, cid)).state == "escalated"
    await advance(services, clock, services.settings.reoffer_after_s)
    await services.pairing.tick()
    assert await offers(services, cid) == [
        (world.spec_cardio.user_id, "expired"),
        (world.spec_cardio.user_id, "pending"),
    ]


async def test_declining_needs_a_reason_and_moves_the_case_on(
    services: Services, world: World, clock: FakeClock, pager: Pager
) -> None:
    await ready(services, clock, world.spec_cardio, world.spec_cardio2)
    cid = await request(services, world)
    offer, _ = pager.rung[-1]
    decliner = world.spec_cardio if offer.specialist_user_id == world.spec_cardio.user_id else world.spec_cardio2
    other = world.spec_cardio2 if decliner is world.spec_cardio else world.spec_cardio

    with pytest.raises(ValidationFailed):
        await services.pairing.decline(decliner, offer.id, "   ", source="t")
    with pytest.raises(Exception) as not_yours:
        await services.pairing.decline(other, offer.id, "busy", source="t")
    assert "no such offer" in str(not_yours.value)

    await services.pairing.decline(decliner, offer.id, "Đang mổ cấp cứu", source="t")
    assert await offers(services, cid) == [(decliner.user_id, "declined"), (other.user_id, "pending")]
    [row] = await rows(services, PairingOfferRow, PairingOfferRow.id == offer.id)
    assert row.reason == "Đang mổ cấp cứu"
    with pytest.raises(Conflict):
        await services.pairing.decline(decliner, offer.id, "again", source="t")


async def test_an_emergency_rings_several_and_the_first_accept_takes_it(
    services: Services, world: World, clock: FakeClock, pager: Pager
) -> None:
    await ready(services, clock, world.spec_cardio, world.spec_cardio2)
    cid = await request(services, world, "emergency")
    assert sorted(await offers(services, cid)) == sorted(
        [(world.spec_cardio.user_id, "pending"), (world.spec_cardio2.user_id, "pending")]
    )

    await services.consultations.accept(world.spec_cardio2, cid, source="t")

    assert sorted(await offers(services, cid)) == sorted(
        [(world.spec_cardio.user_id, "taken"), (world.spec_cardio2.user_id, "accepted")]
    )
    assert sorted((o.specialist_user_id, o.status) for o in pager.closed) == sorted(
        [(world.spec_cardio.user_id, OfferStatus.TAKEN), (world.spec_cardio2.user_id, OfferStatus.ACCEPTED)]
    )
    assert await services.pairing.offers_for(world.spec_cardio) == []
    with pytest.raises(Conflict):
        await services.consultations.accept(world.spec_cardio, cid, source="t")
    status = await services.pairing.status(world.clin_a, cid)
    assert status.state == "accepted" and status.specialist_name == world.spec_cardio2.display_name


@pytest.mark.parametrize("why", ["offline", "away", "busy", "off_call", "in_consultation"])
async def test_who_is_not_rung(services: Services, world: World, clock: FakeClock, pager: Pager, why: str) -> None:
    spec = world.spec_cardio
    if why != "off_call":
        await on_call(services, clock, spec)
    if why != "offline":
        await online(services, spec)
    if why in ("away", "busy"):
        await services.presence.set_availability(spec, why, source="t")
    if why == "in_consultation":
        first = await request(services, world)
        await services.consultations.accept(spec, first, source="t")
    cid = await request(services, world)
    assert await offers(services, cid) == []
    # Busy with another case passes by itself: the case waits in the queue. Nobody else left: escalate.
    expected = "queued" if why == "in_consultation" else "escalated"
    assert (await services.pairing.status(world.clin_a, cid)).state == expected
    # Once free again, the case is offered at the next tick.
    if why in ("away", "busy"):
        await services.presence.set_availability(spec, "available", source="t")
    if why == "in_consultation":
        await services.consultations.close(spec, first, "Theo dõi.", "I10", "follow_up", source="t")
    if why in ("away", "busy", "in_consultation"):
        await services.pairing.tick()
        assert await offers(services, cid) == [(spec.user_id, "pending")]


async def test_a_dead_process_leaves_its_specialists_offline_once_the_lease_runs_out(
    services: Services, world: World, clock: FakeClock, pager: Pager
) -> None:
    await on_call(services, clock, world.spec_cardio)
    await online(services, world.spec_cardio, instance="killed-process")
    await advance(services, clock, services.settings.presence_lease_s + 1)
    cid = await request(services, world)
    assert await offers(services, cid) == []
    [view] = await services.presence.of([world.spec_cardio.user_id])
    assert not view.connected and view.on_call


async def test_one_ring_at_a_time_per_specialist(
    services: Services, world: World, clock: FakeClock, pager: Pager
) -> None:
    await ready(services, clock, world.spec_cardio)
    first = await request(services, world)
    second = await request(services, world)
    assert await offers(services, first) == [(world.spec_cardio.user_id, "pending")]
    assert await offers(services, second) == []
    status = await services.pairing.status(world.clin_a, second)
    assert status.queue_position == 2
    await services.pairing.decline(world.spec_cardio, pager.rung[0][0].id, "Không phù hợp", source="t")
    await services.pairing.tick()  # the decline kicks the timer loop, which looks at every waiting case
    assert await offers(services, second) == [(world.spec_cardio.user_id, "pending")]


async def test_taking_a_case_from_the_open_list_stops_the_ring_for_another(
    services: Services, world: World, clock: FakeClock, pager: Pager
) -> None:
    await ready(services, clock, world.spec_cardio)
    ringing = await request(services, world)
    from_list = await request(services, world)
    assert await offers(services, ringing) == [(world.spec_cardio.user_id, "pending")]

    await services.consultations.accept(world.spec_cardio, from_list, source="t")

    assert await offers(services, ringing) == [(world.spec_cardio.user_id, "withdrawn")]
    assert (await services.pairing.status(world.clin_a, ringing)).state == "queued", "waits for him to be free"
    assert [o.status for o in pager.closed if o.consultation_id == ringing] == [OfferStatus.WITHDRAWN]


async def test_the_most_urgent_waiting_case_gets_the_next_free_specialist(
    services: Services, world: World, clock: FakeClock, pager: Pager
) -> None:
    await on_call(services, clock, world.spec_cardio)
    routine = await request(services, world, "routine")
    await advance(services, clock, 5)
    emergency = await request(services, world, "emergency")
    assert (await services.pairing.status(world.clin_a, emergency)).queue_position == 1
    assert (await services.pairing.status(world.clin_a, routine)).queue_position == 2
    await online(services, world.spec_cardio)
    await services.pairing.tick()
    assert await offers(services, emergency) == [(world.spec_cardio.user_id, "pending")]
    assert await offers(services, routine) == []


async def test_cancelling_stops_the_ringing(services: Services, world: World, clock: FakeClock, pager: Pager) -> None:
    await ready(services, clock, world.spec_cardio)
    cid = await request(services, world)
    await services.consultations.cancel(world.clin_a, cid, source="t")
    assert await offers(services, cid) == [(world.spec_cardio.user_id, "withdrawn")]
    assert pager.closed[-1].status is OfferStatus.WITHDRAWN
    assert await services.pairing.offers_for(world.spec_cardio) == []


async def test_raising_urgency_shortens_the_ring_and_fans_out(
    services: Services, world: World, clock: FakeClock, pager: Pager
) -> None:
    await ready(services, clock, world.spec_cardio, world.spec_cardio2)
    cid = await request(services, world, "routine")
    [ringing] = await rows(services, PairingOfferRow, PairingOfferRow.consultation_id == cid)
    assert ringing.deadline_at == clock.now() + timedelta(seconds=600)
    await advance(services, clock, 10)

    with pytest.raises(PermissionDenied):
        await services.pairing.raise_urgency(world.clin_b, cid, "emergency", source="t")
    status = await services.pairing.status(world.clin_a, cid)
    assert status.urgency.value == "routine"

    status = await services.pairing.raise_urgency(world.clin_a, cid, "emergency", source="t")

    assert status.urgency.value == "emergency" and len(status.offers) == 2
    deadlines = [o.deadline_at for o in status.offers]
    assert max(deadlines) == clock.now() + timedelta(seconds=30)
    with pytest.raises(ValidationFailed):
        await services.pairing.raise_urgency(world.clin_a, cid, "urgent", source="t")
    denied = await audit_rows(services, action="consultation.raise_urgency", outcome="denied")
    assert [d.actor_user_id for d in denied] == [world.clin_b.user_id]


async def test_a_coordinator_hands_a_case_to_a_named_specialist(
    services: Services, world: World, clock: FakeClock, pager: Pager
) -> None:
    cid = await request(services, world)
    assert (await services.pairing.status(world.coord, cid)).state == "escalated"
    queue, staff = await services.pairing.hub_queue(world.coord, world.bvtw.id)
    assert [s.consultation_id for s in queue] == [cid]
    assert {c.user_id: why for c, why in staff}[world.spec_cardio.user_id] == "not_on_call"

    with pytest.raises(ValidationFailed):
        await services.pairing.hand_to(world.coord, cid, world.spec_neuro.user_id, source="t")
    with pytest.raises(PermissionDenied):
        await services.pairing.hand_to(world.clin_a, cid, world.spec_cardio.user_id, source="t")

    offer = await services.pairing.hand_to(world.coord, cid, world.spec_cardio.user_id, source="t")

    assert offer.handed_by_name == world.coord.display_name
    assert pager.rung_to(world.spec_cardio) == [cid]
    await services.consultations.accept(world.spec_cardio, cid, source="t")
    assert (await services.pairing.status(world.clin_a, cid)).state == "accepted"
    with pytest.raises(PermissionDenied):
        await services.pairing.hub_queue(world.coord, world.bvt_lc.id)


async def test_a_facility_without_a_supporting_hub_escalates_at_once(
    services: Services, world: World, clock: FakeClock, pager: Pager
) -> None:
    await ready(services, clock, world.spec_cardio, world.spec_cardio2)
    patient = await services.patients.register(
        world.clin_b,
        replace(PATIENT_DRAFT, cccd="010190099999", full_name="Hà Văn Tùng", bhyt=None),
        source="t",
    )
    consultation = await services.consultations.request(
        world.clin_b, patient.id, "cardiology", "emergency", SUMMARY, source="t"
    )
    assert await offers(services, consultation.id) == []
    assert (await services.pairing.status(world.clin_b, consultation.id)).state == "escalated"


async def test_timers_resume_in_a_restarted_process(
    services: Services,
    world: World,
    clock: FakeClock,
    pager: Pager,
    db_settings: Settings,
    make_services: MakeServices,
) -> None:
    await ready(services, clock, world.spec_cardio, world.spec_cardio2)
    cid = await request(services, world, "emergency")
    assert len(await offers(services, cid)) == 2
    await services.db.dispose()  # the first process is gone

    clock.advance(31)
    restarted = await make_services(db_settings, clock)
    restarted_pager = Pager()
    restarted.set_notifier(restarted_pager)  # type: ignore[arg-type]
    await restarted.pairing.tick()

    assert sorted(s for _, s in await offers(restarted, cid)) == ["expired", "expired"]
    assert len(restarted_pager.closed) == 2
    status = await restarted.pairing.status(world.clin_a, cid)
    assert status.state == "escalated"


async def test_two_processes_accepting_at_once_give_one_winner(
    services: Services,
    world: World,
    clock: FakeClock,
    pager: Pager,
    db_settings: Settings,
    make_services: MakeServices,
) -> None:
    await ready(services, clock, world.spec_cardio, world.spec_cardio2)
    cid = await request(services, world, "emergency")
    other = await make_services(db_settings, clock)
    await asyncio.gather(services.directory.specialties(), other.directory.specialties())

    async def accept(svc: Services, actor: Actor) -> bool:
        try:
            await svc.consultations.accept(actor, cid, source="t")
            return True
        except Conflict:
            return False

    attempts = [
        accept(services if i % 2 else other, world.spec_cardio if i % 4 < 2 else world.spec_cardio2) for i in range(20)
    ]
    results = await asyncio.gather(*attempts)

    assert results.count(True) == 1
    [row] = await rows(services, ConsultationRow, ConsultationRow.id == cid)
    assert row.status == Status.ACCEPTED.value
    statuses = sorted(s for _, s in await offers(services, cid))
    assert statuses == ["accepted", "taken"]
