"""Presence: who is connected (leases held by the server processes) and the specialist's own availability.

A process holds a lease per connected user and renews them all every third of the lease; a process that is
killed stops renewing and its users read as offline once the lease runs out. Leases live in the database, next
to the offers they decide, so one transaction sees both (docs/architecture.md "Presence").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from teleconsult.clock import Clock
from teleconsult.domain.errors import PermissionDenied, ValidationFailed
from teleconsult.domain.pairing import Availability
from teleconsult.domain.people import Actor, Role
from teleconsult.settings import Settings
from teleconsult.storage import pairing as store
from teleconsult.storage import repositories as repo
from teleconsult.storage.db import Database
from teleconsult.storage.models import PresenceLeaseRow, SpecialistPresenceRow


@dataclass(frozen=True, slots=True)
class PresenceView:
    user_id: int
    display_name: str
    hub_id: int
    specialty: str | None
    availability: Availability
    connected: bool
    in_consultation: bool
    on_call: bool


class PresenceService:
    def __init__(self, db: Database, clock: Clock, settings: Settings) -> None:
        self._db = db
        self._clock = clock
        self._settings = settings

    def _expiry(self) -> datetime:
        return self._clock.now() + timedelta(seconds=self._settings.presence_lease_s)

    async def hold(self, instance_id: str, user_id: int) -> None:
        """``user_id`` has a connection on this process."""
        async with self._db.transaction() as tx:
            values = {"user_id": user_id, "instance_id": instance_id, "connections": 1, "expires_at": self._expiry()}
            insert = pg_insert if self._db.engine.dialect.name == "postgresql" else sqlite_insert
            stmt = insert(PresenceLeaseRow).values(**values)
            await tx.execute(
                stmt.on_conflict_do_update(
                    index_elements=["user_id", "instance_id"],
                    set_={"connections": 1, "expires_at": stmt.excluded.expires_at},
                )
            )

    async def release(self, instance_id: str, user_id: int) -> None:
        """The user's last connection on this process is gone."""
        async with self._db.transaction() as tx:
            await tx.execute(
                delete(PresenceLeaseRow).where(
                    PresenceLeaseRow.user_id == user_id, PresenceLeaseRow.instance_id == instance_id
                )
            )

    async def renew(self, instance_id: str, user_ids: Iterable[int]) -> None:
        """Heartbeat: extend this process's leases, re-create any lost (e.g. deleted by a sweep)."""
        ids = sorted(set(user_ids))
        async with self._db.transaction() as tx:
            await tx.execute(
                update(PresenceLeaseRow)
                .where(PresenceLeaseRow.instance_id == instance_id)
                .values(expires_at=self._expiry())
                .execution_options(synchronize_session=False)
            )
            held = set(
                (
                    await tx.execute(
                        select(PresenceLeaseRow.user_id).where(PresenceLeaseRow.instance_id == instance_id)
                    )
                ).scalars()
            )
            for user_id in ids:
                if user_id not in held:
                    tx.add(PresenceLeaseRow(user_id=user_id, instance_id=instance_id, expires_at=self._expiry()))
            stale = held - set(ids)
            if stale:
                await tx.execute(
                    delete(PresenceLeaseRow).where(
                        PresenceLeaseRow.instance_id == instance_id, PresenceLeaseRow.user_id.in_(stale)
                    )
                )
            # Leases of processes that died long ago: nobody reads them, but keep the table small.
            await tx.execute(delete(PresenceLeaseRow).where(PresenceLeaseRow.expires_at < self._clock.now() - _SWEEP))

    async def release_instance(self, instance_id: str) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(delete(PresenceLeaseRow).where(PresenceLeaseRow.instance_id == instance_id))

    async def set_availability(self, actor: Actor, availability: str, *, source: str) -> PresenceView:
        try:
            wanted = Availability(availability)
        except ValueError:
            raise ValidationFailed("availability must be available, busy or away", field="availability") from None
        if actor.role is not Role.SPECIALIST:
            raise PermissionDenied("only specialists take offers")
        now = self._clock.now()
        async with self._db.transaction() as tx:
            row = await tx.get(SpecialistPresenceRow, actor.user_id)
            if row is None:
                tx.add(SpecialistPresenceRow(user_id=actor.user_id, availability=wanted.value, changed_at=now))
            else:
                row.availability, row.changed_at = wanted.value, now
            repo.audit(
                tx,
                at=now,
                actor_user_id=actor.user_id,
                action="presence.set",
                entity_type="user",
                entity_id=actor.user_id,
                outcome="success",
                source=source,
                detail=wanted.value,
            )
            await tx.flush()
            return (await self._views(tx, [actor.user_id]))[0]

    async def of(self, user_ids: Iterable[int]) -> list[PresenceView]:
        async with self._db.transaction() as tx:
            return await self._views(tx, list(user_ids))

    async def _views(self, tx: AsyncSession, user_ids: list[int]) -> list[PresenceView]:
        wanted = set(user_ids)
        return [
            PresenceView(
                user_id=c.user_id,
                display_name=c.display_name,
                hub_id=c.hub_id,
                specialty=c.specialty,
                availability=c.availability,
                connected=c.connected,
                in_consultation=c.in_consultation,
                on_call=c.on_call,
            )
            for c in await store.candidates(tx, None, self._clock.now())
            if c.user_id in wanted
        ]


_SWEEP = timedelta(hours=1)
