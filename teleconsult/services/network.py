"""The hub-and-spoke network and its on-call rosters: facilities, specialties, which central hospitals support
whom, and which specialist is on call when.

Administrators shape the network; a coordinator keeps the roster of their own hub (an administrator, any
hub's). ``actor=None`` is the operator's command line (or the demo seed): allowed everything, audited with no
user and the caller's ``source``. Every change is audited; a refusal is audited in its own transaction and
changes nothing. Shifts are entered as a local day and wall-clock times in ``settings.display_timezone`` and
stored in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from teleconsult.clock import Clock
from teleconsult.domain.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from teleconsult.domain.pairing import shift_bounds, supporting_hubs, validate_shift
from teleconsult.domain.people import Actor, Facility, FacilityLevel, Role, validate_facility_code
from teleconsult.settings import Settings
from teleconsult.storage import repositories as repo
from teleconsult.storage.db import Database
from teleconsult.storage.models import FacilityRow, FacilitySupportRow, OnCallShiftRow, SpecialtyRow, UserRow

# A weekly pattern covers at most this many weeks: a roster is planned a season ahead, not forever.
MAX_PATTERN_WEEKS = 26
MAX_SUPPORTING_HUBS = 5
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Higher on the referral line = smaller rank; a facility's parent hub must rank above it.
_LEVEL_RANK = {
    FacilityLevel.CENTRAL: 0,
    FacilityLevel.PROVINCIAL: 1,
    FacilityLevel.DISTRICT: 2,
    FacilityLevel.COMMUNE: 3,
}
_SPECIALTY_CODE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")


@dataclass(frozen=True, slots=True)
class FacilityRef:
    id: int
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class FacilityEntry:
    """A facility as the network page shows it: its parent on the referral line, the supporting hubs set
    for it (in priority order) and the hubs its requests actually go to (its own, then up the line)."""

    id: int
    code: str
    name: str
    level: FacilityLevel
    province: str
    parent: FacilityRef | None
    support: tuple[FacilityRef, ...]
    hubs: tuple[FacilityRef, ...]


@dataclass(frozen=True, slots=True)
class Specialty:
    code: str
    name_en: str
    name_vi: str


@dataclass(frozen=True, slots=True)
class Network:
    facilities: list[FacilityEntry]
    specialties: list[Specialty]


@dataclass(frozen=True, slots=True)
class Shift:
    id: int
    hub_id: int
    specialty: str
    user_id: int
    display_name: str
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True, slots=True)
class RosterMember:
    user_id: int
    username: str
    display_name: str
    specialty: str


@dataclass(frozen=True, slots=True)
class RosterWeek:
    """One hub's roster for the week (Monday to Sunday, local time) that contains a given day."""

    hub: FacilityRef
    hubs: list[FacilityRef]  # the hubs the actor may open
    monday: date
    shifts: list[Shift]
    members: list[RosterMember]
    on_call: list[Shift]


@dataclass(frozen=True, slots=True)
class AddedShifts:
    added: list[Shift]
    skipped_taken: int  # would have overlapped a shift the specialist already has (only with skip_taken)
    skipped_over: int  # already over when entered


# -- parsing what people type ------------------------------------------------------------------------------------


def parse_day(text: str) -> date:
    """A day as dd/mm/yyyy (the clinic's way) or YYYY-MM-DD (what a date picker sends)."""
    value = text.strip()
    for fmt in ("%d/%m/%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    raise ValidationFailed("the date must be dd/mm/yyyy (or YYYY-MM-DD)", field="day")


def parse_clock(text: str, field: str = "time") -> time:
    try:
        return datetime.strptime(text.strip(), "%H:%M").time()
    except ValueError:
        raise ValidationFailed("times must be HH:MM, e.g. 07:00 or 19:30", field=field) from None


def parse_weekdays(text: str) -> set[int]:
    """``mon,wed,fri`` -> {0, 2, 4}; ``all`` or ``daily`` -> every day."""
    names = [part.strip().lower()[:3] for part in text.split(",") if part.strip()]
    if names in (["all"], ["dai"]):
        return set(range(7))
    if not names or any(name not in WEEKDAYS for name in names):
        raise ValidationFailed("days must be a comma-separated list of mon, tue, wed, thu, fri, sat, sun", field="days")
    return {WEEKDAYS.index(name) for name in names}


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def pattern_days(first_day: date, weeks: int, weekdays: Iterable[int] | None) -> list[date]:
    """The days of a weekly pattern: from ``first_day`` on, for ``weeks`` weeks, on ``weekdays`` (default:
    the weekday of ``first_day``)."""
    if not 1 <= weeks <= MAX_PATTERN_WEEKS:
        raise ValidationFailed(f"a pattern covers 1 to {MAX_PATTERN_WEEKS} weeks", field="weeks")
    wanted = set(weekdays) if weekdays is not None else {first_day.weekday()}
    if not wanted or not wanted <= set(range(7)):
        raise ValidationFailed("choose at least one day of the week", field="days")
    return [d for d in (first_day + timedelta(days=i) for i in range(weeks * 7)) if d.weekday() in wanted]


def _clean(text: str, field: str, max_chars: int, *, required: bool = True) -> str:
    value = " ".join(text.split())
    if required and not value:
        raise ValidationFailed(f"{field} is required", field=field)
    if len(value) > max_chars:
        raise ValidationFailed(f"{field} is longer than {max_chars} characters", field=field)
    return value


def _level(text: str) -> FacilityLevel:
    try:
        return FacilityLevel(text)
    except ValueError:
        raise ValidationFailed("level must be central, provincial, district or commune", field="level") from None


def _overlaps(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


# -- the service ---------------------------------------------------------------------------------------------------


class NetworkService:
    def __init__(self, db: Database, clock: Clock, settings: Settings) -> None:
        self._db = db
        self._clock = clock
        self._settings = settings
        self._tz = ZoneInfo(settings.display_timezone)

    # -- facilities and specialties ------------------------------------------------------------------------------

    async def network(self, actor: Actor | None, *, source: str) -> Network:
        await self._require_admin(actor, "network.view", "network", None, source)
        async with self._db.transaction() as tx:
            facilities = list(
                (await tx.execute(select(FacilityRow).order_by(FacilityRow.level, FacilityRow.code))).scalars()
            )
            support = await self._support_map(tx)
            specialties = list((await tx.execute(select(SpecialtyRow).order_by(SpecialtyRow.code))).scalars())
        refs = {f.id: FacilityRef(f.id, f.code, f.name) for f in facilities}
        parent_of = {f.id: f.hub_id for f in facilities}
        central = [f.id for f in facilities if f.level == FacilityLevel.CENTRAL.value]
        rank = {level.value: r for level, r in _LEVEL_RANK.items()}
        facilities.sort(key=lambda f: (rank.get(f.level, 9), f.code))
        return Network(
            facilities=[
                FacilityEntry(
                    id=f.id,
                    code=f.code,
                    name=f.name,
                    level=FacilityLevel(f.level),
                    province=f.province,
                    parent=refs.get(f.hub_id) if f.hub_id else None,
                    support=tuple(refs[h] for h in support.get(f.id, [])),
                    hubs=tuple(refs[h] for h in supporting_hubs(f.id, parent_of, support, central)),
                )
                for f in facilities
            ],
            specialties=[Specialty(s.code, s.name_en, s.name_vi) for s in specialties],
        )

    async def add_facility(
        self,
        actor: Actor | None,
        code: str,
        name: str,
        level: str,
        province: str = "",
        parent_code: str | None = None,
        *,
        source: str,
    ) -> Facility:
        await self._require_admin(actor, "facility.create", "facility", code, source)
        code = validate_facility_code(code.strip().upper())
        async with self._db.transaction() as tx:
            if await self._facility_row(tx, code) is not None:
                raise Conflict(f"a facility with code {code} already exists", field="code")
            row = FacilityRow(code=code, name="", level="", province="", hub_id=None)
            await self._apply_facility(tx, row, name, level, province, parent_code)
            tx.add(row)
            await tx.flush()
            self._audit(tx, actor, "facility.create", "facility", code, source, f"level={row.level}")
            return repo.to_facility(row)

    async def update_facility(
        self,
        actor: Actor | None,
        code: str,
        name: str,
        level: str,
        province: str = "",
        parent_code: str | None = None,
        *,
        source: str,
    ) -> Facility:
        await self._require_admin(actor, "facility.update", "facility", code, source)
        async with self._db.transaction() as tx:
            row = await self._facility_row(tx, code, for_update=True)
            if row is None:
                raise NotFound(f"no facility with code {code}", field="code")
            await self._apply_facility(tx, row, name, level, province, parent_code)
            await self._check_level_change(tx, row)
            self._audit(tx, actor, "facility.update", "facility", row.code, source, f"level={row.level}")
            return repo.to_facility(row)

    async def _apply_facility(
        self, tx: AsyncSession, row: FacilityRow, name: str, level: str, province: str, parent_code: str | None
    ) -> None:
        new_level = _level(level)
        parent = None
        if parent_code and parent_code.strip():
            parent = await self._facility_row(tx, parent_code.strip().upper())
            if parent is None:
                raise NotFound(f"no facility with code {parent_code.strip()}", field="parent")
            if parent.code == row.code:
                raise ValidationFailed("a facility cannot be its own parent hub", field="parent")
            if _LEVEL_RANK[FacilityLevel(parent.level)] >= _LEVEL_RANK[new_level]:
                raise ValidationFailed("the parent hub must be at a higher level than the facility", field="parent")
        row.name = _clean(name, "name", 200)
        row.province = _clean(province, "province", 120, required=False)
        row.level = new_level.value
        row.hub_id = parent.id if parent is not None else None

    async def _check_level_change(self, tx: AsyncSession, row: FacilityRow) -> None:
        """A new level must keep the referral line and the staff consistent."""
        rank = _LEVEL_RANK[FacilityLevel(row.level)]
        children = (await tx.execute(select(FacilityRow.level).where(FacilityRow.hub_id == row.id))).scalars()
        if any(_LEVEL_RANK[FacilityLevel(level)] <= rank for level in children):
            raise Conflict("facilities referring to this one would no longer be below it", field="level")
        if row.level == FacilityLevel.CENTRAL.value:
            return
        supports = await tx.execute(select(FacilitySupportRow.facility_id).where(FacilitySupportRow.hub_id == row.id))
        if supports.first() is not None:
            raise Conflict("this facility supports others; only a central hospital can", field="level")
        specialists = await tx.execute(
            select(UserRow.id).where(UserRow.facility_id == row.id, UserRow.role == Role.SPECIALIST.value)
        )
        if specialists.first() is not None:
            raise Conflict("specialists work here; only a central hospital has specialists", field="level")

    async def save_specialty(
        self, actor: Actor | None, code: str, name_en: str, name_vi: str, *, source: str
    ) -> tuple[Specialty, bool]:
        """Add a specialty, or rename an existing one. Returns it and whether it is new."""
        await self._require_admin(actor, "specialty.save", "specialty", code, source)
        code = code.strip().lower()
        if not _SPECIALTY_CODE.fullmatch(code):
            raise ValidationFailed(
                "specialty code must be 2-40 lowercase letters, digits or '_', starting with a letter", field="code"
            )
        english = _clean(name_en, "English name", 120)
        vietnamese = _clean(name_vi, "Vietnamese name", 120)
        async with self._db.transaction() as tx:
            row = await tx.get(SpecialtyRow, code, with_for_update=True)
            created = row is None
            if row is None:
                tx.add(SpecialtyRow(code=code, name_en=english, name_vi=vietnamese))
            else:
                row.name_en, row.name_vi = english, vietnamese
            action = "specialty.create" if created else "specialty.update"
            self._audit(tx, actor, action, "specialty", code, source)
        return Specialty(code, english, vietnamese), created

    async def set_support(
        self, actor: Actor | None, facility_code: str, hub_codes: Sequence[str], *, source: str
    ) -> list[FacilityRef]:
        """The central hospitals that support a facility, best first (an empty list clears them)."""
        await self._require_admin(actor, "facility.support", "facility", facility_code, source)
        codes = [c.strip().upper() for c in hub_codes if c.strip()]
        if len(set(codes)) != len(codes):
            raise ValidationFailed("a supporting hub is listed twice", field="hubs")
        if len(codes) > MAX_SUPPORTING_HUBS:
            raise ValidationFailed(f"at most {MAX_SUPPORTING_HUBS} supporting hubs", field="hubs")
        async with self._db.transaction() as tx:
            facility = await self._facility_row(tx, facility_code.strip().upper(), for_update=True)
            if facility is None:
                raise NotFound(f"no facility with code {facility_code}", field="facility")
            hubs = []
            for code in codes:
                hub = await self._facility_row(tx, code)
                if hub is None:
                    raise NotFound(f"no facility with code {code}", field="hubs")
                if hub.id == facility.id:
                    raise ValidationFailed("a facility cannot support itself", field="hubs")
                if hub.level != FacilityLevel.CENTRAL.value:
                    raise ValidationFailed(f"{code} is not a central hospital", field="hubs")
                hubs.append(hub)
            await tx.execute(delete(FacilitySupportRow).where(FacilitySupportRow.facility_id == facility.id))
            for priority, hub in enumerate(hubs, start=1):
                tx.add(FacilitySupportRow(facility_id=facility.id, hub_id=hub.id, priority=priority))
            detail = "hubs=" + ",".join(codes)
            self._audit(tx, actor, "facility.support", "facility", facility.code, source, detail)
        return [FacilityRef(h.id, h.code, h.name) for h in hubs]

    # -- rosters -------------------------------------------------------------------------------------------------

    async def roster(self, actor: Actor | None, hub_id: int | None, week_of: date, *, source: str) -> RosterWeek:
        """The week (Monday-Sunday, local time) containing ``week_of`` at one hub; without a hub, the actor's own
        (a coordinator's facility) or the first central hospital."""
        if actor is not None and actor.role not in (Role.ADMIN, Role.COORDINATOR):
            await self._deny(
                actor, "roster.view", "hub", hub_id, source, "only coordinators and administrators keep rosters"
            )
        async with self._db.transaction() as tx:
            hubs = await self._manageable_hubs(tx, actor)
        if hub_id is None:
            own = actor.facility_id if actor is not None and actor.role is Role.COORDINATOR else None
            hub_id = own if own is not None else (hubs[0].id if hubs else None)
        if hub_id is None:
            raise NotFound("there is no central hospital yet", field="hub")
        await self._require_roster(actor, hub_id, "roster.view", source)
        monday = week_start(week_of)
        start = datetime.combine(monday, time(0), tzinfo=self._tz).astimezone(UTC)
        end = datetime.combine(monday + timedelta(days=7), time(0), tzinfo=self._tz).astimezone(UTC)
        now = self._clock.now()
        async with self._db.transaction() as tx:
            hub = await tx.get(FacilityRow, hub_id)
            if hub is None:
                raise NotFound("no such hub", field="hub")
            members = await self._members(tx, hub_id)
            shifts = await self._shifts(tx, hub_id, start, end)
            on_call = await self._on_call(tx, hub_id, now)
        return RosterWeek(FacilityRef(hub.id, hub.code, hub.name), hubs, monday, shifts, members, on_call)

    async def shifts(
        self, actor: Actor | None, hub_id: int, start: datetime, end: datetime, *, source: str
    ) -> list[Shift]:
        """Shifts at a hub that overlap [start, end), in order."""
        await self._require_roster(actor, hub_id, "roster.view", source)
        async with self._db.transaction() as tx:
            return await self._shifts(tx, hub_id, start, end)

    async def on_call_now(self, actor: Actor | None, hub_id: int, *, source: str) -> list[Shift]:
        """Who is on call at a hub now: a shift of theirs, for their own specialty at their own hub, covers now."""
        await self._require_roster(actor, hub_id, "roster.view", source)
        async with self._db.transaction() as tx:
            return await self._on_call(tx, hub_id, self._clock.now())

    async def specialist_by_username(self, username: str) -> tuple[int, int]:
        """(user id, hub id) of an active specialist: the operator's console names people by username."""
        async with self._db.transaction() as tx:
            user = (await tx.execute(select(UserRow).where(UserRow.username == username))).scalar_one_or_none()
        if user is None or not user.active or user.role != Role.SPECIALIST.value:
            raise NotFound(f"no active specialist with username {username}", field="user")
        return user.id, user.facility_id

    async def add_shift(
        self, actor: Actor | None, hub_id: int, user_id: int, day: date, start: time, end: time, *, source: str
    ) -> Shift:
        """One shift: ``day`` from ``start`` to ``end`` local time (an end at or before the start is the next
        morning). Refused when it is already over or overlaps another shift of the same specialist."""
        result = await self.add_shifts(actor, hub_id, user_id, day, start, end, source=source)
        return result.added[0]

    async def add_shifts(
        self,
        actor: Actor | None,
        hub_id: int,
        user_id: int,
        first_day: date,
        start: time,
        end: time,
        *,
        weeks: int = 1,
        weekdays: Iterable[int] | None = None,
        skip_taken: bool = False,
        source: str,
    ) -> AddedShifts:
        """A weekly pattern of shifts (see ``pattern_days``), all or nothing: an overlap with one of the
        specialist's shifts refuses the whole pattern, unless ``skip_taken``. Days already over are left out."""
        await self._require_roster(actor, hub_id, "roster.shift_add", source)
        days = pattern_days(first_day, weeks, weekdays)
        wanted = [shift_bounds(day, start, end, self._settings.display_timezone) for day in days]
        for starts_at, ends_at in wanted:
            validate_shift(starts_at, ends_at)
        now = self._clock.now()
        upcoming = [b for b in wanted if b[1] > now]
        if not upcoming:
            raise ValidationFailed("this shift is already over", field="day")
        async with self._db.transaction() as tx:
            user = await self._roster_member(tx, hub_id, user_id)
            taken = await self._taken(tx, user_id, upcoming[0][0], upcoming[-1][1])
            new_rows: list[OnCallShiftRow] = []
            skipped = 0
            for bounds in upcoming:
                if any(_overlaps(bounds, other) for other in taken):
                    if not skip_taken:
                        local = bounds[0].astimezone(self._tz).strftime("%d/%m/%Y %H:%M")
                        raise Conflict(f"{user.display_name} already has a shift overlapping {local}", field="day")
                    skipped += 1
                    continue
                taken.append(bounds)
                new_rows.append(
                    OnCallShiftRow(
                        hub_id=hub_id,
                        specialty=user.specialty,
                        user_id=user.id,
                        starts_at=bounds[0],
                        ends_at=bounds[1],
                        created_by_user_id=actor.user_id if actor else None,
                        created_at=now,
                    )
                )
            tx.add_all(new_rows)
            await tx.flush()  # one batched INSERT for the whole pattern; gives the ids the audit refers to
            for row in new_rows:
                detail = f"user={user.id} {row.starts_at:%Y-%m-%dT%H:%MZ}/{row.ends_at:%Y-%m-%dT%H:%MZ}"
                self._audit(tx, actor, "roster.shift_add", "on_call_shift", row.id, source, detail)
            added = [self._shift(row, user.display_name) for row in new_rows]
        return AddedShifts(added, skipped, len(wanted) - len(upcoming))

    async def remove_shift(self, actor: Actor | None, shift_id: int, *, source: str) -> str:
        """Take a shift off the roster. A future shift is deleted; one under way ends now, so the record of who
        was on call stays true. A past shift is kept. Returns "removed" or "ended"."""
        async with self._db.transaction() as tx:
            row = await tx.get(OnCallShiftRow, shift_id)
            hub_id = row.hub_id if row is not None else None
        if hub_id is None:
            raise NotFound("no such shift", field="shift")
        await self._require_roster(actor, hub_id, "roster.shift_remove", source)
        now = self._clock.now()
        async with self._db.transaction() as tx:
            row = await tx.get(OnCallShiftRow, shift_id, with_for_update=True)
            if row is None:
                raise NotFound("no such shift", field="shift")
            if row.ends_at <= now:
                raise Conflict("this shift is over; past shifts stay on the record", field="shift")
            if row.starts_at >= now:
                await tx.delete(row)
                outcome = "removed"
            else:
                row.ends_at = now
                outcome = "ended"
            self._audit(tx, actor, "roster.shift_remove", "on_call_shift", shift_id, source, outcome)
        return outcome

    # -- queries -------------------------------------------------------------------------------------------------

    async def _support_map(self, tx: AsyncSession) -> dict[int, list[int]]:
        rows = await tx.execute(
            select(FacilitySupportRow.facility_id, FacilitySupportRow.hub_id).order_by(
                FacilitySupportRow.facility_id, FacilitySupportRow.priority, FacilitySupportRow.hub_id
            )
        )
        support: dict[int, list[int]] = {}
        for facility_id, hub_id in rows:
            support.setdefault(facility_id, []).append(hub_id)
        return support

    async def _facility_row(self, tx: AsyncSession, code: str, *, for_update: bool = False) -> FacilityRow | None:
        stmt = select(FacilityRow).where(FacilityRow.code == code)
        if for_update:
            stmt = stmt.with_for_update()
        return (await tx.execute(stmt)).scalar_one_or_none()

    async def _manageable_hubs(self, tx: AsyncSession, actor: Actor | None) -> list[FacilityRef]:
        stmt = select(FacilityRow).order_by(FacilityRow.code)
        if actor is not None and actor.role is Role.COORDINATOR:
            stmt = stmt.where(FacilityRow.id == actor.facility_id)
        elif actor is None or actor.role is Role.ADMIN:
            stmt = stmt.where(FacilityRow.level == FacilityLevel.CENTRAL.value)
        else:
            return []
        return [FacilityRef(f.id, f.code, f.name) for f in (await tx.execute(stmt)).scalars()]

    async def _members(self, tx: AsyncSession, hub_id: int) -> list[RosterMember]:
        users = await tx.execute(
            select(UserRow)
            .where(UserRow.facility_id == hub_id, UserRow.role == Role.SPECIALIST.value, UserRow.active.is_(True))
            .order_by(UserRow.specialty, UserRow.display_name)
        )
        return [RosterMember(u.id, u.username, u.display_name, u.specialty or "") for u in users.scalars()]

    async def _roster_member(self, tx: AsyncSession, hub_id: int, user_id: int) -> UserRow:
        # Locked: two coordinators adding overlapping shifts for one specialist at once queue here.
        stmt = select(UserRow).where(UserRow.id == user_id).with_for_update()
        user = (await tx.execute(stmt)).scalar_one_or_none()
        if user is None or not user.active or user.role != Role.SPECIALIST.value or not user.specialty:
            raise ValidationFailed("only an active specialist can be on call", field="user")
        if user.facility_id != hub_id:
            raise ValidationFailed(f"{user.display_name} is not a specialist of this hub", field="user")
        return user

    async def _taken(
        self, tx: AsyncSession, user_id: int, start: datetime, end: datetime
    ) -> list[tuple[datetime, datetime]]:
        rows = await tx.execute(
            select(OnCallShiftRow.starts_at, OnCallShiftRow.ends_at).where(
                OnCallShiftRow.user_id == user_id, OnCallShiftRow.starts_at < end, OnCallShiftRow.ends_at > start
            )
        )
        return [(s, e) for s, e in rows.all()]

    async def _shifts(self, tx: AsyncSession, hub_id: int, start: datetime, end: datetime) -> list[Shift]:
        rows = await tx.execute(
            select(OnCallShiftRow, UserRow.display_name)
            .join(UserRow, UserRow.id == OnCallShiftRow.user_id)
            .where(OnCallShiftRow.hub_id == hub_id, OnCallShiftRow.starts_at < end, OnCallShiftRow.ends_at > start)
            .order_by(OnCallShiftRow.starts_at, OnCallShiftRow.specialty, UserRow.display_name)
        )
        return [self._shift(row, name) for row, name in rows.all()]

    async def _on_call(self, tx: AsyncSession, hub_id: int, now: datetime) -> list[Shift]:
        rows = await tx.execute(
            select(OnCallShiftRow, UserRow.display_name)
            .join(UserRow, UserRow.id == OnCallShiftRow.user_id)
            .where(
                OnCallShiftRow.hub_id == hub_id,
                OnCallShiftRow.starts_at <= now,
                OnCallShiftRow.ends_at > now,
                UserRow.active.is_(True),
                UserRow.role == Role.SPECIALIST.value,
                UserRow.facility_id == OnCallShiftRow.hub_id,
                UserRow.specialty == OnCallShiftRow.specialty,
            )
            .order_by(OnCallShiftRow.specialty, UserRow.display_name)
        )
        return [self._shift(row, name) for row, name in rows.all()]

    @staticmethod
    def _shift(row: OnCallShiftRow, display_name: str) -> Shift:
        return Shift(row.id, row.hub_id, row.specialty, row.user_id, display_name, row.starts_at, row.ends_at)

    # -- authorization and audit ---------------------------------------------------------------------------------

    async def _require_admin(
        self, actor: Actor | None, action: str, entity_type: str, entity_id: object, source: str
    ) -> None:
        if actor is not None and actor.role is not Role.ADMIN:
            await self._deny(actor, action, entity_type, entity_id, source, "only administrators manage the network")

    async def _require_roster(self, actor: Actor | None, hub_id: int, action: str, source: str) -> None:
        """An administrator keeps any hub's roster; a coordinator, their own hub's."""
        if actor is None or actor.role is Role.ADMIN:
            return
        if actor.role is Role.COORDINATOR and actor.facility_id == hub_id:
            return
        await self._deny(actor, action, "hub", hub_id, source, "you may keep the roster of your own hub only")

    async def _deny(
        self, actor: Actor, action: str, entity_type: str, entity_id: object, source: str, message: str
    ) -> None:
        async with self._db.transaction() as tx:
            repo.audit(
                tx,
                at=self._clock.now(),
                actor_user_id=actor.user_id,
                action=action,
                entity_type=entity_type,
                entity_id=None if entity_id is None else str(entity_id)[:64],
                outcome="denied",
                source=source,
            )
        raise PermissionDenied(message)

    def _audit(
        self,
        tx: AsyncSession,
        actor: Actor | None,
        action: str,
        entity_type: str,
        entity_id: object,
        source: str,
        detail: str = "",
    ) -> None:
        repo.audit(
            tx,
            at=self._clock.now(),
            actor_user_id=actor.user_id if actor else None,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            outcome="success",
            source=source,
            detail=detail,
        )
