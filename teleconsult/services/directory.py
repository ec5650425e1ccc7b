"""Facilities, specialties and user accounts: the admin's and the CLI's side of the directory."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from teleconsult.clock import Clock
from teleconsult.domain.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from teleconsult.domain.people import (
    Actor,
    Facility,
    FacilityLevel,
    Role,
    validate_facility_code,
    validate_password,
    validate_role_placement,
    validate_username,
)
from teleconsult.services.auth import hash_password
from teleconsult.storage import repositories as repo
from teleconsult.storage.db import Database
from teleconsult.storage.models import FacilityRow, SpecialtyRow, UserRow


class DirectoryService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def ensure_specialty(self, code: str, name_en: str, name_vi: str) -> None:
        async with self._db.transaction() as tx:
            row = await tx.get(SpecialtyRow, code)
            if row is None:
                tx.add(SpecialtyRow(code=code, name_en=name_en, name_vi=name_vi))
            else:
                row.name_en, row.name_vi = name_en, name_vi

    async def specialties(self) -> list[tuple[str, str, str]]:
        async with self._db.transaction() as tx:
            rows = (await tx.execute(select(SpecialtyRow).order_by(SpecialtyRow.code))).scalars()
            return [(r.code, r.name_en, r.name_vi) for r in rows]

    async def ensure_facility(
        self, code: str, name: str, level: FacilityLevel, province: str, hub_code: str | None = None
    ) -> Facility:
        validate_facility_code(code)
        async with self._db.transaction() as tx:
            hub_id = None
            if hub_code:
                hub = (await tx.execute(select(FacilityRow).where(FacilityRow.code == hub_code))).scalar_one_or_none()
                if hub is None:
                    raise NotFound(f"no facility with code {hub_code}", field="hub")
                hub_id = hub.id
            row = (await tx.execute(select(FacilityRow).where(FacilityRow.code == code))).scalar_one_or_none()
            if row is None:
                row = FacilityRow(code=code, name=name, level=level.value, province=province, hub_id=hub_id)
                tx.add(row)
                await tx.flush()
            else:
                row.name, row.level, row.province, row.hub_id = name, level.value, province, hub_id
            return repo.to_facility(row)

    async def facility_by_code(self, code: str) -> Facility:
        async with self._db.transaction() as tx:
            row = (await tx.execute(select(FacilityRow).where(FacilityRow.code == code))).scalar_one_or_none()
            if row is None:
                raise NotFound(f"no facility with code {code}", field="facility")
            return repo.to_facility(row)

    async def facility(self, facility_id: int) -> Facility:
        async with self._db.transaction() as tx:
            row = await tx.get(FacilityRow, facility_id)
            if row is None:
                raise NotFound("no such facility")
            return repo.to_facility(row)

    async def add_user(
        self,
        username: str,
        password: str,
        role: str,
        facility_code: str,
        *,
        display_name: str | None = None,
        specialty: str | None = None,
        exist_ok: bool = False,
    ) -> int:
        """Create an account. Returns its id; with exist_ok an existing username is left as it is."""
        validate_username(username)
        validate_password(password)
        try:
            parsed_role = Role(role)
        except ValueError:
            raise ValidationFailed("role must be clinician, specialist, coordinator or admin", field="role") from None
        facility = await self.facility_by_code(facility_code)
        validate_role_placement(parsed_role, facility.level, specialty)
        password_hash = await asyncio.to_thread(hash_password, password)
        async with self._db.transaction() as tx:
            existing = (await tx.execute(select(UserRow).where(UserRow.username == username))).scalar_one_or_none()
            if existing is not None:
                if exist_ok:
                    return existing.id
                raise Conflict(f"username {username} is taken", field="username")
            if specialty and await tx.get(SpecialtyRow, specialty) is None:
                raise ValidationFailed(f"unknown specialty {specialty}", field="specialty")
            row = UserRow(
                username=username,
                display_name=(display_name or username).strip()[:120],
                password_hash=password_hash,
                role=parsed_role.value,
                facility_id=facility.id,
                specialty=specialty,
                locale=None,
                active=True,
                created_at=self._clock.now(),
            )
            tx.add(row)
            repo.audit(
                tx,
                at=self._clock.now(),
                actor_user_id=None,
                action="user.create",
                entity_type="user",
                entity_id=username,
                outcome="success",
                source="cli",
            )
            try:
                await tx.flush()
            except IntegrityError:
                raise Conflict(f"username {username} is taken", field="username") from None
            return row.id

    async def overview(self, actor: Actor) -> dict[str, list[dict[str, object]]]:
        """The network as the admin sees it: facilities with their hubs, and accounts."""
        if actor.role is not Role.ADMIN:
            raise PermissionDenied("only administrators can see the directory")
        async with self._db.transaction() as tx:
            facilities = list(
                (await tx.execute(select(FacilityRow).order_by(FacilityRow.level, FacilityRow.code))).scalars()
            )
            names = {f.id: f.name for f in facilities}
            users = list((await tx.execute(select(UserRow).order_by(UserRow.role, UserRow.username))).scalars())
        return {
            "facilities": [
                {
                    "code": f.code,
                    "name": f.name,
                    "level": f.level,
                    "province": f.province,
                    "hub": names.get(f.hub_id, "") if f.hub_id else "",
                }
                for f in facilities
            ],
            "users": [
                {
                    "username": u.username,
                    "display_name": u.display_name,
                    "role": u.role,
                    "facility": names.get(u.facility_id, ""),
                    "specialty": u.specialty or "",
                    "active": u.active,
                }
                for u in users
            ],
        }
