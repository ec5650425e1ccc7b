"""The live conference room: sessions, the lobby, the agenda, case notes and decisions, attendance, the SFU room.

A session is one occurrence of a booked conference. The first person to enter an occurrence's window opens
its session (a unique row per occurrence, so two processes opening it at once end with one). The host (the
organizer, a coordinator of the host facility, an administrator) admits people from the lobby, moves through
the agenda and ends the session; the session also closes by itself when its time is up.

Case notes and decisions are about one agenda case and are saved with the patient they concern, so they are
part of that patient's record (``PatientService.record`` lists them). Every stay in the room is a row
(person, site, joined, left); a killed process's stays are closed by lease, like consultation stays.

Media goes through Janus (``teleconsult.sfu``): this service creates the session's VideoRoom with random
secrets, keeps them in the session row for the other processes, recreates the room if Janus lost it, and
destroys it when the session ends. ``media_access`` is the one place that hands the room's secrets to the
signaling layer, and only for someone who is in the room right now; they never leave the server.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from teleconsult.clock import Clock
from teleconsult.domain import conference as dom
from teleconsult.domain import conference_room as room
from teleconsult.domain.errors import Conflict, NotFound, PermissionDenied, Unavailable, ValidationFailed
from teleconsult.domain.people import Actor, Role
from teleconsult.services.conference_records import (
    AgendaCase,
    AttendanceLine,
    DecisionView,
    NoteView,
    Stay,
    VitalView,
    age,
    attendance_lines,
    decision_view,
    note_view,
    to_csv,
)
from teleconsult.services.notify import Notifier, NullNotifier
from teleconsult.settings import Settings
from teleconsult.sfu import NO_SUCH_SESSION, JanusClient, JanusError, RoomAccess
from teleconsult.storage import repositories as repo
from teleconsult.storage.db import Database
from teleconsult.storage.models import (
    ConferenceAdmissionRow,
    ConferenceAgendaRow,
    ConferenceAttendanceRow,
    ConferenceDecisionRow,
    ConferenceExceptionRow,
    ConferenceInviteeRow,
    ConferenceNoteRow,
    ConferenceRow,
    ConferenceSessionRow,
    ConferenceSiteRow,
    ConsultationRow,
    FacilityRow,
    PatientRow,
    PresenceLeaseRow,
    UserRow,
    VitalSignRow,
)

log = logging.getLogger(__name__)

OPEN, CLOSED = "open", "closed"
WAITING, ADMITTED, REFUSED = "waiting", "admitted", "refused"
RECENT_VITALS = 8


@dataclass(frozen=True, slots=True)
class SessionView:
    id: int
    conference_id: int
    title: str
    purpose: str
    starts_at: datetime
    ends_at: datetime
    status: str
    current_position: int | None
    host_facility_id: int
    media: bool  # an SFU is configured for this server


@dataclass(frozen=True, slots=True)
class LobbyEntry:
    session_id: int
    user_id: int
    display_name: str
    facility_name: str
    role: str
    status: str
    asked_at: datetime


@dataclass(frozen=True, slots=True)
class Entered:
    """The answer to "let me in". ``entry`` is ENTER (``cases`` filled), LOBBY (wait for the host) or CLOSED
    (``opens_at``: when the next session's room opens, if any)."""

    entry: dom.Entry
    session: SessionView | None
    is_host: bool
    opens_at: datetime | None
    cases: tuple[AgendaCase, ...] = ()
    lobby: tuple[LobbyEntry, ...] = ()
    knocked: bool = False  # LOBBY, asked for the first time: tell the hosts


class ConferenceRoomService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: Settings,
        notifier: Notifier | None = None,
        sfu: JanusClient | None = None,
    ) -> None:
        self.notifier: Notifier = notifier or NullNotifier()
        self._db = db
        self._clock = clock
        self._settings = settings
        self.sfu = sfu
        self._task: asyncio.Task[None] | None = None

    # -- the closing loop ---------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="conference-sessions")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.close_due_sessions()
                await self.close_stale_stays()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("closing conference sessions failed")
            await asyncio.sleep(self._settings.conference_reminder_tick_s)

    async def close_due_sessions(self) -> list[int]:
        """Close the sessions whose time is up (their stays end at the close) and destroy their SFU rooms."""
        now = self._clock.now()
        async with self._db.transaction() as tx:
            due = list(
                (
                    await tx.execute(
                        select(ConferenceSessionRow).where(
                            ConferenceSessionRow.status == OPEN, ConferenceSessionRow.ends_at <= now
                        )
                    )
                ).scalars()
            )
            closed = [await self._close(tx, row, now, None, "time") for row in due]
        for row, access in zip(due, closed, strict=True):
            await self._destroy_sfu(access)
            await self.notifier.conference_ended(row.id)
        return [row.id for row in due]

    async def close_stale_stays(self) -> int:
        """Close the stays held by processes that are gone (their presence leases have run out)."""
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
                    select(ConferenceAttendanceRow.id, ConferenceAttendanceRow.connection_id).where(
                        ConferenceAttendanceRow.left_at.is_(None)
                    )
                )
            ).all()
            stale = [s.id for s in open_stays if s.connection_id.split(":", 1)[0] not in alive]
            if stale:
                await tx.execute(
                    update(ConferenceAttendanceRow).where(ConferenceAttendanceRow.id.in_(stale)).values(left_at=now)
                )
            return len(stale)

    # -- entering -----------------------------------------------------------------------------------------------

    async def enter(self, actor: Actor, conference_id: int, connection_id: str, *, source: str) -> Entered:
        """Open (or find) the session of the occurrence whose room is open now and let the actor in, put them
        in the lobby, or tell them when the room opens."""
        now = self._clock.now()
        opened = await self._current_session(conference_id, now)
        async with self._db.transaction() as tx:
            conf = await self._conference(tx, conference_id)
            roles = await self._roles(tx, conf)
            host = room.is_host(actor, roles)
            if isinstance(opened, datetime) or opened is None:
                return Entered(dom.Entry.CLOSED, None, host, opened)
            session = await self._session_row(tx, opened)
            if session.status != OPEN:
                return Entered(dom.Entry.CLOSED, self._session_view(conf, session), host, None)
            admission = await tx.get(ConferenceAdmissionRow, (session.id, actor.user_id))
            if admission is not None and admission.status == REFUSED and not host:
                raise PermissionDenied("the host did not admit you to this session")
            # Someone already in this session once (their link dropped) walks back in without the lobby.
            been_in = (
                await tx.execute(
                    select(ConferenceAttendanceRow.id).where(
                        ConferenceAttendanceRow.session_id == session.id,
                        ConferenceAttendanceRow.user_id == actor.user_id,
                    )
                )
            ).first() is not None
            entry = dom.may_enter(
                room.is_invited(actor, roles),
                host,
                been_in or (admission is not None and admission.status == ADMITTED),
                now,
                session.starts_at,
                session.ends_at,
                opens_minutes=self._settings.conference_room_opens_minutes,
                late_after=timedelta(minutes=self._settings.conference_late_after_minutes),
            )
            view = self._session_view(conf, session)
            if entry is dom.Entry.LOBBY:
                if admission is not None:  # asking again while waiting: the hosts were told already
                    return Entered(entry, view, host, None)
                waiting = ConferenceAdmissionRow(
                    session_id=session.id, user_id=actor.user_id, status=WAITING, asked_at=now
                )
                tx.add(waiting)
                self._audit(tx, actor, "conference.knock", session.id, source)
                return Entered(entry, view, host, None, knocked=True)
            await self._close_stays_of(tx, connection_id, now)
            tx.add(
                ConferenceAttendanceRow(
                    session_id=session.id,
                    user_id=actor.user_id,
                    facility_id=actor.facility_id,
                    connection_id=connection_id,
                    joined_at=now,
                )
            )
            self._audit(tx, actor, "conference.enter", session.id, source)
            cases = await self._cases(tx, conf.id, session.id)
            lobby = await self._lobby(tx, session.id) if host else []
            return Entered(entry, view, host, None, tuple(cases), tuple(lobby))

    async def _current_session(self, conference_id: int, now: datetime) -> int | datetime | None:
        """The id of the session whose room is open now (opened here if nobody has yet), else when the next
        room opens (None: no session ahead). Its own transaction: two processes opening the same occurrence
        at once collide on the unique occurrence key and the loser reads the winner's row."""
        minutes = self._settings.conference_room_opens_minutes
        for _ in range(2):
            async with self._db.transaction() as tx:
                conf = await self._conference(tx, conference_id)
                if conf.status != "booked":
                    return None
                series = await _series(tx, conf)
                span = timedelta(hours=self._settings.conference_max_duration_h)
                around = dom.expand(series, now - span, now + timedelta(minutes=minutes, seconds=1))
                current = [o for o in around if o.ends_at > now and dom.room_opens_at(o.starts_at, minutes) <= now]
                if not current:
                    later = dom.expand(series, now, now + timedelta(days=400))
                    return dom.room_opens_at(later[0].starts_at, minutes) if later else None
                occurrence = current[0]
                stmt = select(ConferenceSessionRow.id).where(
                    ConferenceSessionRow.conference_id == conf.id,
                    ConferenceSessionRow.recurrence_id == occurrence.recurrence_id,
                )
                found = (await tx.execute(stmt)).scalar_one_or_none()
                if found is not None:
                    return int(found)
            try:
                async with self._db.transaction() as tx:
                    row = ConferenceSessionRow(
                        conference_id=conference_id,
                        recurrence_id=occurrence.recurrence_id,
                        starts_at=occurrence.starts_at,
                        ends_at=occurrence.ends_at,
                        status=OPEN,
                        current_position=1,
                        opened_at=now,
                    )
                    tx.add(row)
                    await tx.flush()
                    return row.id
            except IntegrityError:
                continue  # another process opened it a moment ago: read it
        raise Conflict("the session could not be opened; please retry")

    async def leave(self, connection_id: str) -> list[Stay]:
        """Close the stays of this connection (it left the room or disconnected); returns who left."""
        now = self._clock.now()
        async with self._db.transaction() as tx:
            rows = list(
                (
                    await tx.execute(
                        select(ConferenceAttendanceRow, UserRow.display_name, FacilityRow.name)
                        .join(UserRow, UserRow.id == ConferenceAttendanceRow.user_id)
                        .join(FacilityRow, FacilityRow.id == ConferenceAttendanceRow.facility_id)
                        .where(
                            ConferenceAttendanceRow.connection_id == connection_id,
                            ConferenceAttendanceRow.left_at.is_(None),
                        )
                    )
                ).all()
            )
            for stay, _, _ in rows:
                stay.left_at = now
            return [Stay(s.session_id, s.user_id, name, s.facility_id, fac) for s, name, fac in rows]

    async def present(self, session_id: int) -> list[Stay]:
        """Who is in the room now, one line per person and site."""
        async with self._db.transaction() as tx:
            rows = (
                await tx.execute(
                    select(ConferenceAttendanceRow, UserRow.display_name, FacilityRow.name)
                    .join(UserRow, UserRow.id == ConferenceAttendanceRow.user_id)
                    .join(FacilityRow, FacilityRow.id == ConferenceAttendanceRow.facility_id)
                    .where(ConferenceAttendanceRow.session_id == session_id, ConferenceAttendanceRow.left_at.is_(None))
                    .order_by(ConferenceAttendanceRow.joined_at)
                )
            ).all()
        seen: dict[tuple[int, int], Stay] = {}
        for s, name, fac in rows:
            seen.setdefault((s.user_id, s.facility_id), Stay(s.session_id, s.user_id, name, s.facility_id, fac))
        return list(seen.values())

    # -- the host's controls ------------------------------------------------------------------------------------

    async def admit(self, actor: Actor, session_id: int, user_id: int, admit: bool, *, source: str) -> LobbyEntry:
        now = self._clock.now()
        async with self._db.transaction() as tx:
            session, conf = await self._session(tx, session_id)
            if not room.is_host(actor, await self._roles(tx, conf)):
                raise PermissionDenied("only the host admits people to the room")
            self._require_open(session)
            row = await tx.get(ConferenceAdmissionRow, (session_id, user_id))
            if row is None:
                raise NotFound("this person is not waiting in the lobby", field="user_id")
            row.status = ADMITTED if admit else REFUSED
            row.decided_at = now
            row.decided_by_user_id = actor.user_id
            self._audit(
                tx, actor, "conference.admit" if admit else "conference.refuse", session_id, source, f"user={user_id}"
            )
            [entry] = [e for e in await self._lobby(tx, session_id, everyone=True) if e.user_id == user_id]
            return entry

    async def lobby(self, actor: Actor, session_id: int) -> list[LobbyEntry]:
        async with self._db.transaction() as tx:
            _, conf = await self._session(tx, session_id)
            if not room.is_host(actor, await self._roles(tx, conf)):
                raise PermissionDenied("only the host sees the lobby")
            return await self._lobby(tx, session_id)

    async def lobby_of(self, session_id: int) -> list[LobbyEntry]:
        """Who waits, for telling the hosts (the transport sends it to the hosts' room only)."""
        async with self._db.transaction() as tx:
            return await self._lobby(tx, session_id)

    async def hosts_of(self, session_id: int) -> tuple[int | None, int]:
        """(organizer user id, host facility id): whom to tell that someone knocks."""
        async with self._db.transaction() as tx:
            _, conf = await self._session(tx, session_id)
            return conf.organizer_user_id, conf.host_facility_id

    async def set_case(self, actor: Actor, session_id: int, position: int, *, source: str) -> int:
        async with self._db.transaction() as tx:
            session, conf = await self._session(tx, session_id, lock=True)
            if not room.is_host(actor, await self._roles(tx, conf)):
                raise PermissionDenied("only the host moves through the agenda")
            self._require_open(session)
            positions = set(
                (
                    await tx.execute(
                        select(ConferenceAgendaRow.position).where(ConferenceAgendaRow.conference_id == conf.id)
                    )
                ).scalars()
            )
            if position not in positions:
                raise ValidationFailed("no such case on the agenda", field="position")
            session.current_position = position
            self._audit(tx, actor, "conference.case", session_id, source, f"position={position}")
            return position

    async def end(self, actor: Actor, session_id: int, *, source: str) -> int:
        now = self._clock.now()
        async with self._db.transaction() as tx:
            session, conf = await self._session(tx, session_id, lock=True)
            if not room.is_host(actor, await self._roles(tx, conf)):
                raise PermissionDenied("only the host ends the session")
            self._require_open(session)
            access = await self._close(tx, session, now, actor, source)
        await self._destroy_sfu(access)
        await self.notifier.conference_ended(session_id)
        return session_id

    # -- notes and decisions (the patient's record) ---------------------------------------------------------------

    async def add_note(
        self, actor: Actor, session_id: int, agenda_item_id: int, client_id: str, text: str, *, source: str
    ) -> NoteView:
        clean = text.strip()
        if not clean:
            raise ValidationFailed("the note is empty", field="text")
        if len(clean) > self._settings.max_note_chars:
            raise ValidationFailed(f"a note is at most {self._settings.max_note_chars} characters", field="text")
        now = self._clock.now()
        async with self._db.transaction() as tx:
            session, conf = await self._session(tx, session_id)
            await self._require_in_room(tx, actor, session, conf)
            item = await self._item(tx, conf.id, agenda_item_id)
            patient_id = await self._patient_of(tx, item)
            existing = (
                await tx.execute(
                    select(ConferenceNoteRow).where(
                        ConferenceNoteRow.session_id == session_id,
                        ConferenceNoteRow.author_user_id == actor.user_id,
                        ConferenceNoteRow.client_id == client_id,
                    )
                )
            ).scalar_one_or_none()
            if existing is not None:  # a resend after a dropped link
                return note_view(existing, actor.display_name)
            row = ConferenceNoteRow(
                session_id=session_id,
                agenda_item_id=item.id,
                patient_id=patient_id,
                author_user_id=actor.user_id,
                client_id=client_id,
                text=clean,
                created_at=now,
            )
            tx.add(row)
            await tx.flush()
            repo.audit(
                tx,
                at=now,
                actor_user_id=actor.user_id,
                action="conference.note",
                entity_type="conference_session",
                entity_id=session_id,
                patient_id=patient_id,
                outcome="success",
                source=source,
            )
            return note_view(row, actor.display_name)

    async def decide(
        self,
        actor: Actor,
        session_id: int,
        agenda_item_id: int,
        recommendation: str,
        icd10: str,
        outcome: str,
        *,
        expected_version: int,
        source: str,
    ) -> DecisionView:
        """Record (version 1) or change (a higher version) the decision on one case. ``expected_version`` is
        the version the writer saw (0: none yet); if someone changed it meanwhile the answer is ``conflict``."""
        decision = room.validate_decision(recommendation, icd10, outcome)
        try:
            return await self._decide(actor, session_id, agenda_item_id, decision, expected_version, source)
        except IntegrityError:  # two first decisions on one case at the same moment
            raise Conflict("someone recorded this decision meanwhile; review it and save again") from None

    async def _decide(
        self,
        actor: Actor,
        session_id: int,
        agenda_item_id: int,
        decision: room.Decision,
        expected_version: int,
        source: str,
    ) -> DecisionView:
        now = self._clock.now()
        async with self._db.transaction() as tx:
            session, conf = await self._session(tx, session_id)
            await self._require_in_room(tx, actor, session, conf)
            roles = await self._roles(tx, conf)
            if not (room.is_host(actor, roles) or actor.role is Role.SPECIALIST):
                raise PermissionDenied("decisions are recorded by the host or a specialist in the room")
            item = await self._item(tx, conf.id, agenda_item_id)
            patient_id = await self._patient_of(tx, item)
            row = (
                await tx.execute(
                    select(ConferenceDecisionRow)
                    .where(
                        ConferenceDecisionRow.session_id == session_id,
                        ConferenceDecisionRow.agenda_item_id == item.id,
                    )
                    .with_for_update()
                )
            ).scalar_one_or_none()
            current = row.version if row is not None else 0
            if current != expected_version:
                raise Conflict("someone changed this decision meanwhile; review it and save again")
            if row is None:
                row = ConferenceDecisionRow(session_id=session_id, agenda_item_id=item.id, patient_id=patient_id)
                tx.add(row)
            row.recommendation = decision.recommendation
            row.icd10 = decision.icd10
            row.outcome = decision.outcome.value
            row.version = current + 1
            row.decided_by_user_id = actor.user_id
            row.decided_at = now
            await tx.flush()
            repo.audit(
                tx,
                at=now,
                actor_user_id=actor.user_id,
                action="conference.decide",
                entity_type="conference_session",
                entity_id=session_id,
                patient_id=patient_id,
                outcome="success",
                source=source,
                detail=f"version={row.version}",
            )
            return decision_view(row, actor.display_name)

    async def cases(self, actor: Actor, session_id: int) -> list[AgendaCase]:
        async with self._db.transaction() as tx:
            session, conf = await self._session(tx, session_id)
            await self._require_in_room(tx, actor, session, conf, while_open=False)
            return await self._cases(tx, conf.id, session_id)

    # -- media ------------------------------------------------------------------------------------------------------

    async def media_access(self, actor: Actor, session_id: int, connection_id: str) -> RoomAccess:
        """The SFU room of the session, for a connection that is in the room now. Creates the room the first
        time (or again, if Janus restarted and lost it); the secrets stay on the server."""
        if self.sfu is None:
            raise Unavailable("this server has no SFU configured; video is not available in conferences")
        async with self._db.transaction() as tx:
            session, conf = await self._session(tx, session_id)
            self._require_open(session)
            here = (
                await tx.execute(
                    select(ConferenceAttendanceRow.id).where(
                        ConferenceAttendanceRow.session_id == session_id,
                        ConferenceAttendanceRow.connection_id == connection_id,
                        ConferenceAttendanceRow.user_id == actor.user_id,
                        ConferenceAttendanceRow.left_at.is_(None),
                    )
                )
            ).first()
            if here is None:
                raise PermissionDenied("enter the room first")
            stored = _access(session)
        for attempt in (1, 2):
            try:
                await self.sfu.ensure_connected()
                if stored is not None and await self.sfu.room_exists(stored.room):
                    return stored
                return await self._create_sfu_room(session_id, stored)
            except JanusError as exc:
                if exc.code == NO_SUCH_SESSION and attempt == 1:
                    continue  # Janus restarted since our last call: a new session, then the room again
                log.warning("SFU refused: %s", exc.code)
            except (OSError, TimeoutError, aiohttp.ClientError) as exc:
                log.warning("SFU unreachable: %s", type(exc).__name__)
            break
        raise Unavailable("the video server is not reachable; notes and decisions still work")

    async def _create_sfu_room(self, session_id: int, lost: RoomAccess | None) -> RoomAccess:
        assert self.sfu is not None
        publishers = self._settings.conference_max_publishers
        bitrate = self._settings.conference_publisher_bitrate
        if lost is not None:  # Janus restarted: the same room again, so a racing process finds it too
            try:
                return await self.sfu.recreate_room(lost, publishers=publishers, bitrate=bitrate)
            except JanusError:
                return lost  # another process recreated it a moment ago
        access = await self.sfu.create_room(
            description=f"conference session {session_id}", publishers=publishers, bitrate=bitrate
        )
        async with self._db.transaction() as tx:
            result = await tx.execute(
                update(ConferenceSessionRow)
                .where(ConferenceSessionRow.id == session_id, ConferenceSessionRow.sfu_room.is_(None))
                .values(sfu_room=access.room, sfu_secret=access.secret, sfu_pin=access.pin)
            )
            won = result.rowcount == 1  # type: ignore[attr-defined]
            winner = access if won else _access(await self._session_row(tx, session_id))
        if not won:
            await self._destroy_sfu(access)
        assert winner is not None
        return winner

    # -- attendance and export --------------------------------------------------------------------------------------

    async def attendance(self, actor: Actor, conference_id: int, *, source: str) -> list[AttendanceLine]:
        now = self._clock.now()
        async with self._db.transaction() as tx:
            conf = await self._conference(tx, conference_id)
            if not room.is_host(actor, await self._roles(tx, conf)):
                raise PermissionDenied("only the conference's coordinators see its attendance")
            self._audit(tx, actor, "conference.attendance", conference_id, source)
            return await attendance_lines(tx, conference_id, now)

    async def export_csv(self, actor: Actor, conference_id: int, *, source: str) -> str:
        """Attendance per person and site, then the decision on each case, per session (UTF-8 CSV)."""
        now = self._clock.now()
        async with self._db.transaction() as tx:
            conf = await self._conference(tx, conference_id)
            if not room.is_host(actor, await self._roles(tx, conf)):
                raise PermissionDenied("only the conference's coordinators export its attendance")
            lines = await attendance_lines(tx, conference_id, now)
            sessions = list(
                (
                    await tx.execute(
                        select(ConferenceSessionRow)
                        .where(ConferenceSessionRow.conference_id == conference_id)
                        .order_by(ConferenceSessionRow.starts_at)
                    )
                ).scalars()
            )
            decided = []
            for session in sessions:
                for case in await self._cases(tx, conference_id, session.id, with_vitals=False):
                    decided.append((session, case))
            self._audit(tx, actor, "conference.export", conference_id, source)
        return to_csv(conf, lines, decided)

    # -- loading ------------------------------------------------------------------------------------------------------

    async def _conference(self, tx: AsyncSession, conference_id: int) -> ConferenceRow:
        row = await tx.get(ConferenceRow, conference_id)
        if row is None:
            raise NotFound("no such conference", field="conference")
        return row

    async def _session_row(self, tx: AsyncSession, session_id: int, *, lock: bool = False) -> ConferenceSessionRow:
        row = await tx.get(ConferenceSessionRow, session_id, with_for_update=lock)
        if row is None:
            raise NotFound("no such conference session", field="session")
        return row

    async def _session(
        self, tx: AsyncSession, session_id: int, *, lock: bool = False
    ) -> tuple[ConferenceSessionRow, ConferenceRow]:
        session = await self._session_row(tx, session_id, lock=lock)
        return session, await self._conference(tx, session.conference_id)

    async def _roles(self, tx: AsyncSession, conf: ConferenceRow) -> room.RoomRoles:
        invited = (
            await tx.execute(select(ConferenceInviteeRow.user_id).where(ConferenceInviteeRow.conference_id == conf.id))
        ).scalars()
        sites = (
            await tx.execute(select(ConferenceSiteRow.facility_id).where(ConferenceSiteRow.conference_id == conf.id))
        ).scalars()
        return room.RoomRoles(
            organizer_user_id=conf.organizer_user_id,
            host_facility_id=conf.host_facility_id,
            invited_user_ids=frozenset(invited),
            invited_site_ids=frozenset(sites) | {conf.host_facility_id},
        )

    async def _require_in_room(
        self,
        tx: AsyncSession,
        actor: Actor,
        session: ConferenceSessionRow,
        conf: ConferenceRow,
        *,
        while_open: bool = True,
    ) -> None:
        """The host, an invitee or someone the host admitted, who has entered this session."""
        if while_open:
            self._require_open(session)
        roles = await self._roles(tx, conf)
        if room.is_host(actor, roles):
            return
        admission = await tx.get(ConferenceAdmissionRow, (session.id, actor.user_id))
        entitled = room.is_invited(actor, roles) or (admission is not None and admission.status == ADMITTED)
        entered = (
            await tx.execute(
                select(ConferenceAttendanceRow.id).where(
                    ConferenceAttendanceRow.session_id == session.id,
                    ConferenceAttendanceRow.user_id == actor.user_id,
                )
            )
        ).first()
        if not entitled or entered is None or (admission is not None and admission.status == REFUSED):
            raise PermissionDenied("you are not in this conference")

    @staticmethod
    def _require_open(session: ConferenceSessionRow) -> None:
        if session.status != OPEN:
            raise Conflict("this session has ended")

    async def _item(self, tx: AsyncSession, conference_id: int, agenda_item_id: int) -> ConferenceAgendaRow:
        item = await tx.get(ConferenceAgendaRow, agenda_item_id)
        if item is None or item.conference_id != conference_id:
            raise NotFound("no such case on this conference's agenda", field="agenda_item_id")
        return item

    async def _patient_of(self, tx: AsyncSession, item: ConferenceAgendaRow) -> int:
        if item.patient_id is not None:
            return item.patient_id
        consultation = await tx.get(ConsultationRow, item.consultation_id)
        if consultation is None:
            raise NotFound("the case's consultation is gone", field="agenda_item_id")
        return consultation.patient_id

    async def _lobby(self, tx: AsyncSession, session_id: int, *, everyone: bool = False) -> list[LobbyEntry]:
        stmt = (
            select(ConferenceAdmissionRow, UserRow, FacilityRow.name)
            .join(UserRow, UserRow.id == ConferenceAdmissionRow.user_id)
            .join(FacilityRow, FacilityRow.id == UserRow.facility_id)
            .where(ConferenceAdmissionRow.session_id == session_id)
            .order_by(ConferenceAdmissionRow.asked_at)
        )
        if not everyone:
            stmt = stmt.where(ConferenceAdmissionRow.status == WAITING)
        return [
            LobbyEntry(session_id, u.id, u.display_name, fac, u.role, a.status, a.asked_at)
            for a, u, fac in (await tx.execute(stmt)).all()
        ]

    async def _cases(
        self, tx: AsyncSession, conference_id: int, session_id: int, *, with_vitals: bool = True
    ) -> list[AgendaCase]:
        items = list(
            (
                await tx.execute(
                    select(ConferenceAgendaRow)
                    .where(ConferenceAgendaRow.conference_id == conference_id)
                    .order_by(ConferenceAgendaRow.position)
                )
            ).scalars()
        )
        notes = (
            await tx.execute(
                select(ConferenceNoteRow, UserRow.display_name)
                .join(UserRow, UserRow.id == ConferenceNoteRow.author_user_id)
                .where(ConferenceNoteRow.session_id == session_id)
                .order_by(ConferenceNoteRow.created_at, ConferenceNoteRow.id)
            )
        ).all()
        decisions = {
            d.agenda_item_id: decision_view(d, name)
            for d, name in (
                await tx.execute(
                    select(ConferenceDecisionRow, UserRow.display_name)
                    .join(UserRow, UserRow.id == ConferenceDecisionRow.decided_by_user_id)
                    .where(ConferenceDecisionRow.session_id == session_id)
                )
            ).all()
        }
        today = self._clock.now().date()
        cases = []
        for item in items:
            consultation = await tx.get(ConsultationRow, item.consultation_id) if item.consultation_id else None
            patient = await tx.get(PatientRow, item.patient_id or (consultation.patient_id if consultation else 0))
            presenter = await tx.get(UserRow, item.presenter_user_id)
            if patient is None:
                continue
            vitals = await self._recent_vitals(tx, patient.id) if with_vitals else ()
            cases.append(
                AgendaCase(
                    item_id=item.id,
                    position=item.position,
                    presenter_user_id=item.presenter_user_id,
                    presenter_name=presenter.display_name if presenter else "",
                    patient_id=patient.id,
                    patient_name=patient.full_name,
                    patient_age=age(patient.date_of_birth, today),
                    patient_sex=patient.sex,
                    consultation_id=item.consultation_id,
                    specialty=consultation.specialty if consultation else None,
                    urgency=consultation.urgency if consultation else None,
                    summary=consultation.summary if consultation else "",
                    vitals=vitals,
                    notes=tuple(note_view(n, name) for n, name in notes if n.agenda_item_id == item.id),
                    decision=decisions.get(item.id),
                )
            )
        return cases

    async def _recent_vitals(self, tx: AsyncSession, patient_id: int) -> tuple[VitalView, ...]:
        rows = (
            await tx.execute(
                select(VitalSignRow)
                .where(VitalSignRow.patient_id == patient_id)
                .order_by(VitalSignRow.observed_at.desc(), VitalSignRow.id.desc())
                .limit(RECENT_VITALS)
            )
        ).scalars()
        return tuple(VitalView(v.kind, v.value, v.value2, v.unit, v.observed_at) for v in rows)

    # -- writing ------------------------------------------------------------------------------------------------------

    async def _close(
        self, tx: AsyncSession, session: ConferenceSessionRow, now: datetime, actor: Actor | None, source: str
    ) -> RoomAccess | None:
        session.status = CLOSED
        session.closed_at = now
        await tx.execute(
            update(ConferenceAttendanceRow)
            .where(ConferenceAttendanceRow.session_id == session.id, ConferenceAttendanceRow.left_at.is_(None))
            .values(left_at=now)
        )
        self._audit(tx, actor, "conference.end", session.id, source)
        return _access(session)

    async def _close_stays_of(self, tx: AsyncSession, connection_id: str, now: datetime) -> None:
        await tx.execute(
            update(ConferenceAttendanceRow)
            .where(ConferenceAttendanceRow.connection_id == connection_id, ConferenceAttendanceRow.left_at.is_(None))
            .values(left_at=now)
        )

    async def _destroy_sfu(self, access: RoomAccess | None) -> None:
        if access is None or self.sfu is None:
            return
        try:
            await self.sfu.ensure_connected()
            await self.sfu.destroy_room(access)
        except (JanusError, OSError, TimeoutError, aiohttp.ClientError) as exc:
            # Janus drops a room nobody is in when it restarts; a room left behind holds no one's data.
            log.warning("could not destroy an SFU room: %s", type(exc).__name__)

    def _session_view(self, conf: ConferenceRow, session: ConferenceSessionRow) -> SessionView:
        return SessionView(
            id=session.id,
            conference_id=conf.id,
            title=conf.title,
            purpose=conf.purpose,
            starts_at=session.starts_at,
            ends_at=session.ends_at,
            status=session.status,
            current_position=session.current_position,
            host_facility_id=conf.host_facility_id,
            media=self.sfu is not None,
        )

    def _audit(
        self, tx: AsyncSession, actor: Actor | None, action: str, entity_id: object, source: str, detail: str = ""
    ) -> None:
        repo.audit(
            tx,
            at=self._clock.now(),
            actor_user_id=actor.user_id if actor else None,
            action=action,
            entity_type="conference"
            if action in ("conference.attendance", "conference.export")
            else "conference_session",
            entity_id=entity_id,
            outcome="success",
            source=source,
            detail=detail,
        )


async def _series(tx: AsyncSession, row: ConferenceRow) -> dom.Series:
    exceptions = list(
        (
            await tx.execute(select(ConferenceExceptionRow).where(ConferenceExceptionRow.conference_id == row.id))
        ).scalars()
    )
    return dom.Series(
        booking_id=row.id,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        tz=row.tz,
        rule=dom.parse_rrule(row.rrule, row.tz) if row.rrule else None,
        exdates=frozenset(e.recurrence_id for e in exceptions if e.kind == "cancelled"),
        overrides=tuple(
            dom.Override(e.recurrence_id, e.starts_at, e.ends_at)
            for e in exceptions
            if e.kind == "moved" and e.starts_at is not None and e.ends_at is not None
        ),
    )


def _access(session: ConferenceSessionRow) -> RoomAccess | None:
    if session.sfu_room is None or session.sfu_secret is None or session.sfu_pin is None:
        return None
    return RoomAccess(session.sfu_room, session.sfu_secret, session.sfu_pin)
