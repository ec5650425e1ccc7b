"""Pairing: offer each open request to the right specialist, ring the next on timeout, escalate when nobody
is left. Every offer and deadline is a row, so a restarted process resumes the timers where they were; every
decision runs in a transaction that locks the request's row, so several processes never decide twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from teleconsult.clock import Clock
from teleconsult.domain import pairing as policy
from teleconsult.domain.consultation import OPEN_STATUSES, Status, Transition, Urgency, next_status, normalize_text
from teleconsult.domain.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from teleconsult.domain.pairing import Candidate, OfferStatus, PairingCase
from teleconsult.domain.people import Actor, Role
from teleconsult.services.consultations import ConsultationService
from teleconsult.services.metrics import Metrics
from teleconsult.services.notify import Notifier, RequestCard
from teleconsult.settings import Settings
from teleconsult.storage import pairing as store
from teleconsult.storage import repositories as repo
from teleconsult.storage.db import Database
from teleconsult.storage.models import ConsultationRow, FacilityRow, PairingOfferRow, UserRow

log = logging.getLogger(__name__)
URGENCY_ORDER = {Urgency.EMERGENCY: 0, Urgency.URGENT: 1, Urgency.ROUTINE: 2}
MAX_DECLINE_REASON = 500


@dataclass(frozen=True, slots=True)
class OfferView:
    id: int
    consultation_id: int
    specialist_user_id: int
    specialist_name: str
    specialty: str
    hub_name: str
    status: OfferStatus
    offered_at: datetime
    deadline_at: datetime
    handed_by_name: str | None = None


@dataclass(frozen=True, slots=True)
class PairingStatus:
    """What the requester and the hub's coordinators see of a request's pairing: no patient identity."""

    consultation_id: int
    state: str  # queued | offered | escalated | accepted | in_progress | completed | cancelled | expired
    urgency: Urgency
    specialty: str
    facility_name: str
    requesting_facility_id: int
    hub_ids: tuple[int, ...]
    created_at: datetime
    waited_s: float
    queue_position: int | None
    offers: tuple[OfferView, ...]  # ringing now
    escalated_at: datetime | None
    specialist_name: str | None


class PairingService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: Settings,
        notifier: Notifier,
        consultations: ConsultationService,
        metrics: Metrics,
    ) -> None:
        self._db = db
        self._clock = clock
        self._settings = settings
        self.notifier = notifier
        self._consultations = consultations
        self.metrics = metrics
        self.policy = policy.Policy(settings.emergency_parallel_offers, settings.reoffer_after_s)
        self._timeouts = {u: settings.offer_timeout_s(u.value) for u in Urgency}
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- the timer loop ---------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="pairing")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def kick(self) -> None:
        """Something changed (a specialist became free, an offer was answered): look again now."""
        self._kick.set()

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._settings.pairing_tick_s):
                    await self._kick.wait()
            except TimeoutError:
                pass
            self._kick.clear()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database may be restarting; the next tick retries from the persisted state.
                log.exception("pairing tick failed")

    async def tick(self) -> int:
        """Expire the offers whose deadline has passed, then offer every open request that can be offered.
        Returns how many offers were made. Tests call this after advancing the fake clock."""
        now = self._clock.now()
        affected = await self._expire_due(now)
        async with self._db.transaction() as tx:
            open_rows = list(
                (
                    await tx.execute(
                        select(ConsultationRow).where(ConsultationRow.status.in_([s.value for s in OPEN_STATUSES]))
                    )
                ).scalars()
            )
            offers = await store.offers_of(tx, [r.id for r in open_rows])
            network = await store.load_network(tx)
            pool = await store.candidates(tx, None, now)
        self.metrics.queued.set(len(open_rows))
        by_case: dict[int, list[PairingOfferRow]] = {}
        for offer in offers:
            by_case.setdefault(offer.consultation_id, []).append(offer)
        made = 0
        for row in sorted(open_rows, key=lambda r: (URGENCY_ORDER[Urgency(r.urgency)], r.created_at, r.id)):
            case = PairingCase(row.id, row.specialty, Urgency(row.urgency), network.hubs_of(row.requesting_facility_id))
            prior = store.prior_offers(by_case.get(row.id, []))
            pending = sum(1 for p in prior if p.status is OfferStatus.PENDING)
            ranked = policy.rank(case, pool, prior, now, self.policy)
            step = policy.next_step(
                case,
                ranked,
                pending,
                escalated=row.escalated_at is not None,
                policy=self.policy,
                soon_free=policy.soon_free(case, pool, prior, now, self.policy),
            )
            if isinstance(step, policy.Wait) and row.id not in affected:
                continue
            offered = await self.pair(row.id)
            made += len(offered)
            if offered:
                pool = [replace(c, ringing_for_other=True) if c.user_id in offered else c for c in pool]
        return made

    async def _expire_due(self, now: datetime) -> set[int]:
        async with self._db.transaction() as tx:
            due = list(
                (
                    await tx.execute(
                        select(PairingOfferRow)
                        .where(
                            PairingOfferRow.status == OfferStatus.PENDING.value,
                            PairingOfferRow.deadline_at <= now,
                        )
                        .order_by(PairingOfferRow.deadline_at)
                        .limit(1000)
                    )
                ).scalars()
            )
        affected: set[int] = set()
        for offer in due:
            async with self._db.transaction() as tx:
                won = await store.answer_offer(tx, offer.id, OfferStatus.EXPIRED, now)
                row = await repo.get_consultation(tx, offer.consultation_id)
                assert row is not None
                if won:
                    self._audit(tx, None, "pairing.offer.expire", row, "success", "timer", f"offer {offer.id}")
            if won:
                affected.add(offer.consultation_id)
                self.metrics.offer_timeouts.labels(row.urgency).inc()
                await self._closed(offer, OfferStatus.EXPIRED)
        return affected

    # -- one decision -----------------------------------------------------------------------------------------

    async def pair(self, consultation_id: int) -> set[int]:
        """Decide what happens to one request now, in a transaction that holds its row. Returns whom it rang."""
        offered: list[tuple[PairingOfferRow, Candidate]] = []
        escalated = False
        async with self._db.transaction() as tx:
            row = await repo.get_consultation(tx, consultation_id, for_update=True)
            if row is None or Status(row.status) not in OPEN_STATUSES:
                return set()
            now = self._clock.now()  # after the lock: an offer's deadline counts from when it really rings
            offers = await store.offers_of(tx, [consultation_id])
            network = await store.load_network(tx)
            case = PairingCase(row.id, row.specialty, Urgency(row.urgency), network.hubs_of(row.requesting_facility_id))
            prior = store.prior_offers(offers)
            pending = sum(1 for p in prior if p.status is OfferStatus.PENDING)
            pool = await store.candidates(tx, row.specialty, now)
            ranked = policy.rank(case, pool, prior, now, self.policy)
            step = policy.next_step(
                case,
                ranked,
                pending,
                escalated=row.escalated_at is not None,
                policy=self.policy,
                soon_free=policy.soon_free(case, pool, prior, now, self.policy),
            )
            if isinstance(step, policy.Wait):
                return set()
            if isinstance(step, policy.Escalate):
                row.escalated_at = now
                escalated = True
                self._audit(tx, None, "consultation.escalate", row, "success", "pairing", "")
            else:
                for candidate in step.candidates:
                    offer = await self._ring(tx, row, candidate.user_id, now, handed_by=None)
                    if offer is not None:
                        offered.append((offer, candidate))
                if offered and row.status == Status.REQUESTED.value:
                    row.status = next_status(Status.REQUESTED, Transition.OFFER).value
            row.pairing_version += 1
            await tx.flush()
            card = await self._consultations.card(tx, row)
            views = [await self._view(tx, offer) for offer, _ in offered]
            status = await self._status(tx, row, now, network)
        for view in views:
            self.metrics.offers.labels(row.urgency).inc()
            await self._notify("offer_made", view, card)
        if escalated:
            self.metrics.escalations.labels(row.urgency).inc()
            await self._notify("pairing_escalated", status)
        await self._notify("pairing_changed", status)
        return {offer.specialist_user_id for offer, _ in offered}

    async def _ring(
        self, tx: AsyncSession, row: ConsultationRow, user_id: int, now: datetime, *, handed_by: int | None
    ) -> PairingOfferRow | None:
        offer = PairingOfferRow(
            consultation_id=row.id,
            specialist_user_id=user_id,
            status=OfferStatus.PENDING.value,
            offered_at=now,
            deadline_at=policy.offer_deadline(now, Urgency(row.urgency), self._timeouts),
            handed_by_user_id=handed_by,
        )
        try:
            async with tx.begin_nested():
                tx.add(offer)
                await tx.flush()
                # Read again after the insert (which waited for any accept touching this specialist's ring):
                # a specialist who took a case since the candidates were read is not rung.
                if await store.in_consultation(tx, user_id):
                    raise _TookACase
        except IntegrityError:
            # Another process rang this specialist for another case a moment ago: one ring at a time.
            return None
        except _TookACase:
            return None
        self._audit(tx, handed_by, "consultation.offer", row, "success", "pairing", f"offer {offer.id}")
        return offer

    # -- hooks called by the consultation service after its commits -------------------------------------------

    async def requested(self, consultation_id: int) -> None:
        try:
            await self.pair(consultation_id)
        except Exception:
            log.exception("could not pair consultation %s at once; the timer will", consultation_id)
            self.kick()

    async def settled(self, card: RequestCard, closed: list[PairingOfferRow]) -> None:
        """After an accept, cancel or close has committed: never raises, the caller's change is saved."""
        try:
            await self._settled(card, closed)
        except Exception:
            log.exception("could not finish settling consultation %s; the timer loop will", card.consultation.id)
        self.kick()  # a specialist may be free again, or the queue moved

    async def _settled(self, card: RequestCard, closed: list[PairingOfferRow]) -> None:
        c = card.consultation
        if c.status is Status.ACCEPTED and c.accepted_at is not None:
            self.metrics.accepts.labels(c.urgency.value).inc()
            self.metrics.pairing_seconds.labels(c.urgency.value).observe((c.accepted_at - c.created_at).total_seconds())
        for offer in closed:
            await self._closed(offer, OfferStatus(offer.status))
        try:
            async with self._db.transaction() as tx:
                row = await repo.get_consultation(tx, c.id)
                assert row is not None
                status = await self._status(tx, row, self._clock.now(), await store.load_network(tx))
            await self._notify("pairing_changed", status)
        except Exception:
            log.exception("could not push the pairing status of consultation %s", c.id)

    # -- what specialists, requesters and coordinators do -----------------------------------------------------

    async def decline(self, actor: Actor, offer_id: int, reason: str, *, source: str) -> OfferView:
        clean = normalize_text(reason, field="reason", max_chars=MAX_DECLINE_REASON)
        now = self._clock.now()
        async with self._db.transaction() as tx:
            offer = await tx.get(PairingOfferRow, offer_id)
            if offer is None or offer.specialist_user_id != actor.user_id:
                raise NotFound("no such offer for you")
            if not await store.answer_offer(tx, offer_id, OfferStatus.DECLINED, now, clean):
                raise Conflict("this offer is no longer ringing")
            row = await repo.get_consultation(tx, offer.consultation_id)
            assert row is not None
            self._audit(tx, actor.user_id, "pairing.offer.decline", row, "success", source, f"offer {offer_id}")
            await tx.refresh(offer)
            view = await self._view(tx, offer)
        self.metrics.offer_declines.labels(row.urgency).inc()
        await self._notify("offer_closed", view)
        await self.pair(offer.consultation_id)
        self.kick()  # the specialist is free for the other waiting cases
        return view

    async def raise_urgency(self, actor: Actor, consultation_id: int, urgency: str, *, source: str) -> PairingStatus:
        try:
            wanted = Urgency(urgency)
        except ValueError:
            raise ValidationFailed("urgency must be emergency, urgent or routine", field="urgency") from None
        now = self._clock.now()
        async with self._db.transaction() as tx:
            row = await repo.get_consultation(tx, consultation_id, for_update=True)
            if row is None:
                raise NotFound("no such consultation")
            allowed = actor.role is Role.CLINICIAN and actor.facility_id == row.requesting_facility_id
            if allowed:
                if Status(row.status) not in OPEN_STATUSES:
                    raise Conflict("this request is no longer waiting")
                if not policy.can_raise(Urgency(row.urgency), wanted):
                    raise ValidationFailed("urgency can only be raised", field="urgency")
                row.urgency = wanted.value
                # A ringing offer now rings no longer than the new urgency allows.
                sooner = now + timedelta(seconds=self._timeouts[wanted])
                for offer in await store.offers_of(tx, [row.id]):
                    if offer.status == OfferStatus.PENDING.value and offer.deadline_at > sooner:
                        offer.deadline_at = sooner
                self._audit(tx, actor.user_id, "consultation.raise_urgency", row, "success", source, wanted.value)
                card = await self._consultations.card(tx, row)
        if not allowed:
            await self._deny(actor, "consultation.raise_urgency", row, source)
        await self._consultations.notify_changed(card)
        await self.pair(consultation_id)
        return await self.status(actor, consultation_id)

    async def hand_to(self, actor: Actor, consultation_id: int, specialist_user_id: int, *, source: str) -> OfferView:
        """A coordinator rings a named specialist for a waiting case; what else rang for it stops."""
        async with self._db.transaction() as tx:
            row = await repo.get_consultation(tx, consultation_id, for_update=True)
            if row is None:
                raise NotFound("no such consultation")
            now = self._clock.now()
            network = await store.load_network(tx)
            allowed = actor.role is Role.ADMIN or (
                actor.role is Role.COORDINATOR and actor.facility_id in network.hubs_of(row.requesting_facility_id)
            )
            if allowed:
                if Status(row.status) not in OPEN_STATUSES:
                    raise Conflict("this request is no longer waiting")
                target = await tx.get(UserRow, specialist_user_id)
                if target is None or not target.active or target.role != Role.SPECIALIST.value:
                    raise ValidationFailed("choose an active specialist", field="specialist_user_id")
                if target.specialty != row.specialty:
                    raise ValidationFailed("this specialist has another specialty", field="specialist_user_id")
                closed = await store.close_offers(tx, row.id, OfferStatus.WITHDRAWN, now)
                for other in (
                    await tx.execute(
                        select(PairingOfferRow).where(
                            PairingOfferRow.specialist_user_id == specialist_user_id,
                            PairingOfferRow.status == OfferStatus.PENDING.value,
                        )
                    )
                ).scalars():
                    # The handed case takes the specialist's phone; the case that rang there moves on.
                    await store.answer_offer(tx, other.id, OfferStatus.WITHDRAWN, now, "handed another case")
                    other.status = OfferStatus.WITHDRAWN.value
                    closed.append(other)
                offer = await self._ring(tx, row, specialist_user_id, now, handed_by=actor.user_id)
                if offer is None:
                    raise Conflict("this specialist was just rung for another case; try again")
                if row.status == Status.REQUESTED.value:
                    row.status = Status.OFFERED.value
                row.pairing_version += 1
                await tx.flush()
                view = await self._view(tx, offer)
                closed_views = [await self._view(tx, c) for c in closed]
                card = await self._consultations.card(tx, row)
                status = await self._status(tx, row, now, network)
        if not allowed:
            await self._deny(actor, "consultation.hand_to", row, source)
        for closed_view in closed_views:
            await self._notify("offer_closed", closed_view)
        self.metrics.offers.labels(row.urgency).inc()
        await self._notify("offer_made", view, card)
        await self._notify("pairing_changed", status)
        self.kick()
        return view

    # -- reading ----------------------------------------------------------------------------------------------

    async def status(self, actor: Actor, consultation_id: int) -> PairingStatus:
        now = self._clock.now()
        async with self._db.transaction() as tx:
            row = await repo.get_consultation(tx, consultation_id)
            if row is None:
                raise NotFound("no such consultation")
            network = await store.load_network(tx)
            if not self._may_watch(actor, row, network):
                raise PermissionDenied("you cannot follow this request")
            return await self._status(tx, row, now, network)

    async def offers_for(self, actor: Actor) -> list[tuple[OfferView, RequestCard]]:
        """What is ringing for this specialist now: shown again after a reconnect or a page load."""
        async with self._db.transaction() as tx:
            rows = (
                await tx.execute(
                    select(PairingOfferRow).where(
                        PairingOfferRow.specialist_user_id == actor.user_id,
                        PairingOfferRow.status == OfferStatus.PENDING.value,
                    )
                )
            ).scalars()
            out = []
            for offer in rows:
                consultation = await repo.get_consultation(tx, offer.consultation_id)
                assert consultation is not None
                out.append((await self._view(tx, offer), await self._consultations.card(tx, consultation)))
            return out

    async def hub_queue(self, actor: Actor, hub_id: int) -> tuple[list[PairingStatus], list[tuple[Candidate, str]]]:
        """A coordinator's live view of their hub: waiting cases, oldest most urgent first, and the hub's
        specialists with why each could or could not take a case now."""
        if not (actor.role is Role.ADMIN or (actor.role is Role.COORDINATOR and actor.facility_id == hub_id)):
            raise PermissionDenied("you coordinate another hub")
        now = self._clock.now()
        async with self._db.transaction() as tx:
            network = await store.load_network(tx)
            rows = (
                await tx.execute(
                    select(ConsultationRow).where(ConsultationRow.status.in_([s.value for s in OPEN_STATUSES]))
                )
            ).scalars()
            waiting = [r for r in rows if hub_id in network.hubs_of(r.requesting_facility_id)]
            waiting.sort(key=lambda r: (URGENCY_ORDER[Urgency(r.urgency)], r.created_at, r.id))
            statuses = [await self._status(tx, r, now, network) for r in waiting]
            staff = [c for c in await store.candidates(tx, None, now) if c.hub_id == hub_id]
        states = []
        for c in sorted(staff, key=lambda c: (c.specialty or "", c.display_name)):
            probe = PairingCase(0, c.specialty or "", Urgency.ROUTINE, (hub_id,))
            reason = policy.exclusion(probe, c, [], now, self.policy)
            states.append((c, reason.value if reason else "available"))
        return statuses, states

    # -- helpers ----------------------------------------------------------------------------------------------

    def _may_watch(self, actor: Actor, row: ConsultationRow, network: store.Network) -> bool:
        if actor.role is Role.ADMIN:
            return True
        if actor.role is Role.CLINICIAN:
            return actor.facility_id == row.requesting_facility_id
        if actor.role is Role.COORDINATOR:
            return actor.facility_id in network.hubs_of(row.requesting_facility_id)
        return actor.user_id == row.specialist_user_id

    async def _status(
        self, tx: AsyncSession, row: ConsultationRow, now: datetime, network: store.Network
    ) -> PairingStatus:
        offers = [o for o in await store.offers_of(tx, [row.id]) if o.status == OfferStatus.PENDING.value]
        state = row.status
        if Status(row.status) in OPEN_STATUSES:
            state = "offered" if offers else ("escalated" if row.escalated_at else "queued")
        position = None
        if Status(row.status) in OPEN_STATUSES:
            ahead = (
                await tx.execute(
                    select(ConsultationRow.id, ConsultationRow.urgency, ConsultationRow.created_at).where(
                        ConsultationRow.specialty == row.specialty,
                        ConsultationRow.status.in_([s.value for s in OPEN_STATUSES]),
                    )
                )
            ).all()
            mine = (URGENCY_ORDER[Urgency(row.urgency)], row.created_at, row.id)
            position = 1 + sum(1 for a in ahead if (URGENCY_ORDER[Urgency(a.urgency)], a.created_at, a.id) < mine)
        facility = await tx.get(FacilityRow, row.requesting_facility_id)
        specialist = await tx.get(UserRow, row.specialist_user_id) if row.specialist_user_id else None
        end = row.accepted_at or row.ended_at or now
        return PairingStatus(
            consultation_id=row.id,
            state=state,
            urgency=Urgency(row.urgency),
            specialty=row.specialty,
            facility_name=facility.name if facility else "",
            requesting_facility_id=row.requesting_facility_id,
            hub_ids=network.hubs_of(row.requesting_facility_id),
            created_at=row.created_at,
            waited_s=max(0.0, (end - row.created_at).total_seconds()),
            queue_position=position,
            offers=tuple([await self._view(tx, o) for o in offers]),
            escalated_at=row.escalated_at,
            specialist_name=specialist.display_name if specialist else None,
        )

    async def _view(self, tx: AsyncSession, offer: PairingOfferRow) -> OfferView:
        user = await tx.get(UserRow, offer.specialist_user_id)
        assert user is not None
        hub = await tx.get(FacilityRow, user.facility_id)
        handed_by = await tx.get(UserRow, offer.handed_by_user_id) if offer.handed_by_user_id else None
        return OfferView(
            id=offer.id,
            consultation_id=offer.consultation_id,
            specialist_user_id=user.id,
            specialist_name=user.display_name,
            specialty=user.specialty or "",
            hub_name=hub.name if hub else "",
            status=OfferStatus(offer.status),
            offered_at=offer.offered_at,
            deadline_at=offer.deadline_at,
            handed_by_name=handed_by.display_name if handed_by else None,
        )

    async def _closed(self, offer: PairingOfferRow, status: OfferStatus) -> None:
        async with self._db.transaction() as tx:
            offer.status = status.value
            view = await self._view(tx, offer)
        await self._notify("offer_closed", view)

    async def _notify(self, what: str, *args: object) -> None:
        try:
            await getattr(self.notifier, what)(*args)
        except Exception:
            # Committed already; a client that missed the push gets it on reconnect (offers_for, status).
            log.exception("could not push %s", what)

    def _audit(
        self,
        tx: AsyncSession,
        actor_user_id: int | None,
        action: str,
        row: ConsultationRow,
        outcome: str,
        source: str,
        detail: str,
    ) -> None:
        repo.audit(
            tx,
            at=self._clock.now(),
            actor_user_id=actor_user_id,
            action=action,
            entity_type="consultation",
            entity_id=row.id,
            patient_id=row.patient_id,
            outcome=outcome,
            source=source,
            detail=detail,
        )

    async def _deny(self, actor: Actor, action: str, row: ConsultationRow, source: str) -> None:
        async with self._db.transaction() as tx:
            self._audit(tx, actor.user_id, action, row, "denied", source, "")
        raise PermissionDenied("you are not allowed to do this for this request")


class _TookACase(Exception):
    """Rolls back an offer to a specialist who became busy while the decision was being taken."""
