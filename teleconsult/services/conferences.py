"""Teleconferences: booking with conflict warnings, edits and cancellations that raise the iCalendar SEQUENCE,
RSVP, invitations and a private calendar feed, and in-app reminders sent once across processes.

The rules are pure and live in ``teleconsult.domain.conference``; iCalendar text is built by
``teleconsult.calendar``. This service loads and stores, decides who may do what, and audits every change and
every read of an invitation or feed. Reminders: each process looks for due reminders on a timer; one
transaction inserts the reminder's key (unique) and the invitees' notifications, so when two processes race the
second gets a unique violation and sends nothing. A restarted process needs no recovery: sent keys are rows.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from teleconsult import calendar as ics
from teleconsult.clock import Clock
from teleconsult.domain import conference as dom
from teleconsult.domain.conference import (
    AgendaItem,
    BookingDraft,
    OnCallShift,
    Rsvp,
    ScheduleConflict,
    Scheduled,
    Series,
)
from teleconsult.domain.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from teleconsult.domain.patients import fold_for_search
from teleconsult.domain.people import Actor, Facility, Role
from teleconsult.services.notify import Notifier, NullNotifier
from teleconsult.settings import Settings
from teleconsult.storage import repositories as repo
from teleconsult.storage.db import Database
from teleconsult.storage.models import (
    CalendarFeedTokenRow,
    ConferenceAgendaRow,
    ConferenceExceptionRow,
    ConferenceInviteeRow,
    ConferenceReminderRow,
    ConferenceRow,
    ConferenceSiteRow,
    ConsultationRow,
    FacilityRow,
    NotificationRow,
    OnCallShiftRow,
    PatientRow,
    UserRow,
)

log = logging.getLogger(__name__)
BOOKED, CANCELLED = "booked", "cancelled"
FEED_PAST = timedelta(days=30)
FEED_AHEAD = timedelta(days=365)
MAX_NOTIFICATIONS = 100
_FAR = timedelta(days=3 * 366)  # beyond any bounded series the limits allow


@dataclass(frozen=True, slots=True)
class Invitee:
    user_id: int
    display_name: str
    facility_id: int
    rsvp: Rsvp
    responded_at: datetime | None


@dataclass(frozen=True, slots=True)
class ConferenceView:
    id: int
    uid: str
    title: str
    purpose: dom.Purpose
    host_facility_id: int
    organizer_user_id: int | None
    starts_at: datetime
    ends_at: datetime
    tz: str
    rrule: str | None
    sequence: int
    status: str
    site_ids: tuple[int, ...]
    invitees: tuple[Invitee, ...]
    agenda: tuple[AgendaItem, ...]


@dataclass(frozen=True, slots=True)
class BookingResult:
    conference: ConferenceView
    warnings: list[ScheduleConflict]  # shown to the coordinator; the booking is saved regardless


@dataclass(frozen=True, slots=True)
class SiteResponses:
    facility_id: int
    facility_name: str
    invitees: tuple[Invitee, ...]


@dataclass(frozen=True, slots=True)
class UpcomingSession:
    conference_id: int
    title: str
    recurrence_id: datetime
    starts_at: datetime
    ends_at: datetime
    rsvp: Rsvp | None  # None: the actor organizes it without being invited


@dataclass(frozen=True, slots=True)
class NotificationView:
    id: int
    kind: str
    text: str
    conference_id: int | None
    created_at: datetime
    read_at: datetime | None


@dataclass(frozen=True, slots=True)
class ConflictNote:
    """A warning with the names the coordinator reads: who, which site, which other conference."""

    conflict: ScheduleConflict
    person_name: str | None
    site_name: str | None
    other_title: str | None


@dataclass(frozen=True, slots=True)
class PersonChoice:
    """Someone the booking form may invite (staff only, never a patient)."""

    user_id: int
    display_name: str
    role: Role
    specialty: str | None
    facility_id: int
    facility_name: str


@dataclass(frozen=True, slots=True)
class CaseConsultation:
    id: int
    specialty: str
    status: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CaseChoice:
    """A patient the agenda may review, with their latest consultations. No CCCD, BHYT or address."""

    patient_id: int
    patient_name: str
    age: int
    sex: str
    consultations: tuple[CaseConsultation, ...]


@dataclass(frozen=True, slots=True)
class BookingForm:
    """A booking as the edit form shows it: the people and cases by name, not only by id."""

    conference: ConferenceView
    people: tuple[PersonChoice, ...]  # the invitees and the organizer
    cases: tuple[CaseChoice | None, ...]  # one per agenda item, in order, with only that item's consultation


MAX_CASE_CONSULTATIONS = 5


def feed_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ConferenceService:
    def __init__(self, db: Database, clock: Clock, settings: Settings, instance_id: str | None = None) -> None:
        self._db = db
        self._clock = clock
        self._settings = settings
        self.instance_id = instance_id or secrets.token_hex(4)
        self.limits = dom.Limits(
            max_occurrences=settings.conference_max_occurrences,
            max_duration=timedelta(hours=settings.conference_max_duration_h),
        )
        self.offsets = [timedelta(seconds=s) for s in settings.conference_reminder_offsets_s]
        self.grace = timedelta(seconds=settings.conference_reminder_grace_s)
        self._task: asyncio.Task[None] | None = None
        self.notifier: Notifier = NullNotifier()

    # -- the reminder loop ------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="conference-reminders")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.send_due_reminders()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database may be restarting; sent keys are rows, so the next round picks up where it was.
                log.exception("conference reminders failed")
            await asyncio.sleep(self._settings.conference_reminder_tick_s)

    async def send_due_reminders(self) -> int:
        """Send every reminder due now, each once across processes. Returns how many this call sent."""
        now = self._clock.now()
        horizon = max(self.offsets, default=timedelta(0))
        async with self._db.transaction() as tx:
            rows = list(
                (
                    await tx.execute(
                        select(ConferenceRow).where(
                            ConferenceRow.status == BOOKED,
                            ConferenceRow.starts_at <= now + horizon,
                            ConferenceRow.last_ends_at > now - self.grace,
                        )
                    )
                ).scalars()
            )
            series = {row.id: await self._series(tx, row) for row in rows}
            sent = set(
                (
                    await tx.execute(
                        select(ConferenceReminderRow.key).where(ConferenceReminderRow.conference_id.in_(list(series)))
                    )
                ).scalars()
            )
        occurrences = [
            occ
            for s in series.values()
            for occ in dom.expand(s, now - self.grace, now + horizon + timedelta(seconds=1))
        ]
        due = dom.due_reminders(occurrences, self.offsets, set(), now, self.grace)
        titles = {row.id: row.title for row in rows}
        count = 0
        for reminder in due:
            if reminder.key.text in sent:
                continue
            if await self._send_reminder(reminder, titles[reminder.key.booking_id], series[reminder.key.booking_id]):
                count += 1
        return count

    async def _send_reminder(self, reminder: dom.Reminder, title: str, series: Series) -> bool:
        now = self._clock.now()
        local = dom.utc_to_local(reminder.occurrence.starts_at, series.tz)
        text = f"{title}: starts {local:%H:%M %d/%m/%Y}"[:500]
        try:
            async with self._db.transaction() as tx:
                tx.add(
                    ConferenceReminderRow(
                        key=reminder.key.text,
                        conference_id=reminder.key.booking_id,
                        sent_at=now,
                        instance_id=self.instance_id,
                    )
                )
                # The key goes first: a process that loses the race stops here, before any notification.
                await tx.flush()
                invitees = (
                    await tx.execute(
                        select(ConferenceInviteeRow.user_id).where(
                            ConferenceInviteeRow.conference_id == reminder.key.booking_id,
                            ConferenceInviteeRow.rsvp != Rsvp.DECLINED.value,
                        )
                    )
                ).scalars()
                created = [
                    NotificationRow(
                        user_id=user_id,
                        kind="conference.reminder",
                        text=text,
                        conference_id=reminder.key.booking_id,
                        created_at=now,
                    )
                    for user_id in invitees
                ]
                tx.add_all(created)
                await tx.flush()
        except IntegrityError:
            return False  # another process sent it
        # Pushed after the commit to whoever is online; the list reloads from the table, so a lost push loses
        # nothing.
        for row in created:
            view = NotificationView(row.id, row.kind, row.text, row.conference_id, row.created_at, None)
            try:
                await self.notifier.notified(row.user_id, view)
            except Exception:
                log.exception("could not push a reminder")
        return True

    # -- booking ----------------------------------------------------------------------------------------------

    async def book(self, actor: Actor, draft: BookingDraft, *, source: str) -> BookingResult:
        await self._require_booker(actor, "conference.book", None, source)
        booking = dom.validate_booking(draft, self.limits)
        now = self._clock.now()
        async with self._db.transaction() as tx:
            await self._check_references(tx, booking)
            series = dom.series_of(0, booking)
            warnings = await self._conflicts(tx, series, booking)
            row = ConferenceRow(sequence=0, status=BOOKED, organizer_user_id=actor.user_id, created_at=now)
            self._apply(row, booking, series, now)
            tx.add(row)
            await tx.flush()
            row.uid = ics.uid_for(row.id, self._settings.calendar_domain)
            await self._replace_people(tx, row.id, booking, keep={})
            self._audit(tx, actor, "conference.book", row.id, source, f"warnings={len(warnings)}")
            view = await self._view(tx, row)
        return BookingResult(view, warnings)

    async def edit(self, actor: Actor, conference_id: int, draft: BookingDraft, *, source: str) -> BookingResult:
        """Replace the booking's details; the UID stays, the SEQUENCE rises, RSVPs of people still invited stay
        (a moved time asks them again only through the new invitation)."""
        await self._require_manager(actor, conference_id, "conference.edit", source)
        booking = dom.validate_booking(draft, self.limits)
        now = self._clock.now()
        async with self._db.transaction() as tx:
            row = await self._own(tx, conference_id)
            if row.status == CANCELLED:
                raise Conflict("this conference was cancelled", field="conference")
            await self._check_references(tx, booking)
            series = dom.series_of(row.id, booking)
            # Exceptions of sessions the new rule no longer has are dropped with them.
            kept = set(dom.recurrence_ids(series))
            exceptions = await self._exceptions(tx, row.id)
            for exc in exceptions:
                if exc.recurrence_id not in kept:
                    await tx.delete(exc)
            warnings = await self._conflicts(tx, series, booking)
            self._apply(row, booking, series, now)
            row.sequence += 1
            previous = {i.user_id: i for i in await self._invitee_rows(tx, row.id)}
            await self._replace_people(tx, row.id, booking, keep=previous)
            self._audit(tx, actor, "conference.edit", row.id, source, f"sequence={row.sequence}")
            view = await self._view(tx, row)
        return BookingResult(view, warnings)

    async def cancel(
        self, actor: Actor, conference_id: int, *, recurrence_id: datetime | None = None, source: str
    ) -> bytes:
        """Cancel the whole series, or one session of it. Returns the METHOD:CANCEL for the invitees."""
        await self._require_manager(actor, conference_id, "conference.cancel", source)
        async with self._db.transaction() as tx:
            row = await self._own(tx, conference_id)
            if row.status == CANCELLED:
                raise Conflict("this conference is already cancelled", field="conference")
            series = await self._series(tx, row)
            if recurrence_id is None:
                row.status = CANCELLED
            else:
                dom.cancel_occurrence(series, recurrence_id)  # validates the session exists
                await tx.execute(
                    delete(ConferenceExceptionRow).where(
                        ConferenceExceptionRow.conference_id == row.id,
                        ConferenceExceptionRow.recurrence_id == recurrence_id,
                    )
                )
                tx.add(ConferenceExceptionRow(conference_id=row.id, recurrence_id=recurrence_id, kind="cancelled"))
            row.sequence += 1
            row.updated_at = self._clock.now()
            detail = "series" if recurrence_id is None else f"session {recurrence_id:%Y%m%dT%H%M%S}"
            self._audit(tx, actor, "conference.cancel", row.id, source, detail)
            text, attendees, organizer, private = await self._calendar_parts(tx, row)
            return ics.cancel(
                series,
                text,
                attendees,
                organizer,
                sequence=row.sequence,
                dtstamp=self._clock.now(),
                domain=self._settings.calendar_domain,
                recurrence_id=recurrence_id,
                patient_identifiers=private,
            )

    async def move(
        self,
        actor: Actor,
        conference_id: int,
        recurrence_id: datetime,
        day: date,
        start: time,
        end: time,
        *,
        source: str,
    ) -> ConferenceView:
        """Move one session of a series (entered as local day and wall-clock times). It keeps its recurrence id,
        so the calendar replaces that one session; the SEQUENCE rises."""
        await self._require_manager(actor, conference_id, "conference.move", source)
        async with self._db.transaction() as tx:
            row = await self._own(tx, conference_id)
            if row.status == CANCELLED:
                raise Conflict("this conference was cancelled", field="conference")
            starts_at = dom.local_to_utc(day, start, row.tz, field="start")
            ends_at = dom.local_to_utc(day, end, row.tz, field="end")
            series = dom.move_occurrence(await self._series(tx, row), recurrence_id, starts_at, ends_at, self.limits)
            await tx.execute(
                delete(ConferenceExceptionRow).where(
                    ConferenceExceptionRow.conference_id == row.id,
                    ConferenceExceptionRow.recurrence_id == recurrence_id,
                )
            )
            tx.add(
                ConferenceExceptionRow(
                    conference_id=row.id,
                    recurrence_id=recurrence_id,
                    kind="moved",
                    starts_at=starts_at,
                    ends_at=ends_at,
                )
            )
            sessions = dom.expand(series, series.starts_at - timedelta(days=1), series.starts_at + _FAR)
            row.last_ends_at = max([row.last_ends_at, *(o.ends_at for o in sessions)])
            row.sequence += 1
            row.updated_at = self._clock.now()
            self._audit(tx, actor, "conference.move", row.id, source, f"session {recurrence_id:%Y%m%dT%H%M%S}")
            return await self._view(tx, row)

    async def rsvp(self, actor: Actor, conference_id: int, answer: str, *, source: str) -> Invitee:
        try:
            value = Rsvp(answer)
        except ValueError:
            raise ValidationFailed("answer accepted, declined or tentative", field="rsvp") from None
        if value is Rsvp.NEEDS_ACTION:
            raise ValidationFailed("answer accepted, declined or tentative", field="rsvp")
        async with self._db.transaction() as tx:
            conference = await tx.get(ConferenceRow, conference_id)
            invitee = await tx.get(ConferenceInviteeRow, (conference_id, actor.user_id), with_for_update=True)
            if conference is not None and invitee is not None:
                invitee.rsvp, invitee.responded_at = value.value, self._clock.now()
                self._audit(tx, actor, "conference.rsvp", conference_id, source, value.value)
                user = await tx.get(UserRow, actor.user_id)
                assert user is not None
                return Invitee(actor.user_id, user.display_name, user.facility_id, value, invitee.responded_at)
        if conference is None:
            raise NotFound("no such conference", field="conference")
        await self._deny(actor, "conference.rsvp", conference_id, source, "only invitees answer an invitation")
        raise AssertionError("unreachable")

    # -- the booking form -------------------------------------------------------------------------------------

    async def check(
        self, actor: Actor, draft: BookingDraft, *, conference_id: int | None = None, source: str
    ) -> list[ScheduleConflict]:
        """The warnings that booking ``draft`` (or saving it over ``conference_id``) would give, before
        anything is saved: validated as book and edit do, nothing written. Like other reads of the schedule it
        is not audited; a refusal is."""
        if conference_id is None:
            await self._require_booker(actor, "conference.check", None, source)
        else:
            await self._require_manager(actor, conference_id, "conference.check", source)
        booking = dom.validate_booking(draft, self.limits)
        async with self._db.transaction() as tx:
            row = await tx.get(ConferenceRow, conference_id) if conference_id is not None else None
            if row is not None and row.status == CANCELLED:
                raise Conflict("this conference was cancelled", field="conference")
            await self._check_references(tx, booking)
            # The conference's own id: an edit does not warn about the sessions it replaces.
            return await self._conflicts(tx, dom.series_of(conference_id or 0, booking), booking)

    async def explain(self, actor: Actor, warnings: Sequence[ScheduleConflict], *, source: str) -> list[ConflictNote]:
        """The warnings with the person's, the site's and the other conference's names."""
        await self._require_booker(actor, "conference.check", None, source)
        users = {w.user_id for w in warnings if w.user_id is not None}
        sites = {w.site_id for w in warnings if w.site_id is not None}
        others = {w.other_booking_id for w in warnings if w.other_booking_id is not None}
        async with self._db.transaction() as tx:
            people = await _names(tx, UserRow.id, UserRow.display_name, users)
            places = await _names(tx, FacilityRow.id, FacilityRow.name, sites)
            titles = await _names(tx, ConferenceRow.id, ConferenceRow.title, others)
        return [
            ConflictNote(w, people.get(w.user_id), places.get(w.site_id), titles.get(w.other_booking_id))
            for w in warnings
        ]

    async def booking_sites(self, actor: Actor, *, source: str) -> list[Facility]:
        """Every facility, for the host and invited-site choices of the booking form."""
        await self._require_booker(actor, "conference.form", None, source)
        async with self._db.transaction() as tx:
            rows = (await tx.execute(select(FacilityRow).order_by(FacilityRow.name, FacilityRow.id))).scalars()
            return [repo.to_facility(r) for r in rows]

    async def find_people(
        self, actor: Actor, query: str, *, role: str | None = None, specialty: str | None = None, source: str
    ) -> list[PersonChoice]:
        """Active staff whose name (diacritics or not) contains ``query``, for the invitation list."""
        await self._require_booker(actor, "conference.people", None, source)
        if role and role not in {r.value for r in Role}:
            raise ValidationFailed("role must be clinician, specialist, coordinator or admin", field="role")
        stmt = select(UserRow.id).where(UserRow.active.is_(True))
        if role:
            stmt = stmt.where(UserRow.role == role)
        if specialty:
            stmt = stmt.where(UserRow.specialty == specialty[:40])
        folded = fold_for_search(query[:120])
        async with self._db.transaction() as tx:
            # Staff lists are small; names are matched here so that "tuan" finds "Tuấn".
            found = await self._people(tx, list((await tx.execute(stmt)).scalars()))
        matching = [p for p in found if folded in fold_for_search(p.display_name)]
        return matching[: self._settings.max_search_results]

    async def find_cases(self, actor: Actor, query: str, *, source: str) -> list[CaseChoice]:
        """Patients for the agenda by name or 12-digit CCCD, with their latest consultations. Audited like
        a patient search (the query itself is not written: it may be a name)."""
        await self._require_booker(actor, "conference.case_search", None, source)
        query = query.strip()[:120]
        digits = query.replace(" ", "")
        cccd = digits if digits.isdigit() else None
        if cccd is not None and len(cccd) != 12:
            raise ValidationFailed("a citizen ID (CCCD) has exactly 12 digits", field="q")
        folded = None if cccd else fold_for_search(query)
        if folded is not None and len(folded) < 2:
            raise ValidationFailed("type at least 2 letters of the name, or the 12-digit CCCD", field="q")
        async with self._db.transaction() as tx:
            patients = await repo.search_patients(
                tx, cccd=cccd, folded_name=folded, limit=self._settings.max_search_results
            )
            cases = [await self._case(tx, p.id, None) for p in patients]
            self._audit_cases(tx, actor, "conference.case_search", None, source, len(cases))
        return [c for c in cases if c is not None]

    async def booking_form(self, actor: Actor, conference_id: int, *, source: str) -> BookingForm:
        """The booking with names, for its edit form. Audited: it names the patients on the agenda."""
        await self._require_manager(actor, conference_id, "conference.form", source)
        async with self._db.transaction() as tx:
            row = await self._own(tx, conference_id)
            if row.status == CANCELLED:
                raise Conflict("this conference was cancelled", field="conference")
            view = await self._view(tx, row)
            ids = [i.user_id for i in view.invitees] + ([row.organizer_user_id] if row.organizer_user_id else [])
            people = await self._people(tx, ids)
            cases = [await self._case(tx, a.patient_id, a.consultation_id) for a in view.agenda]
            self._audit_cases(tx, actor, "conference.form", row.id, source, len(cases))
        return BookingForm(view, tuple(people), tuple(cases))

    async def _people(self, tx: AsyncSession, user_ids: Sequence[int]) -> list[PersonChoice]:
        if not user_ids:
            return []
        rows = await tx.execute(
            select(UserRow, FacilityRow.name)
            .join(FacilityRow, FacilityRow.id == UserRow.facility_id)
            .where(UserRow.id.in_(set(user_ids)))
            .order_by(UserRow.display_name, UserRow.id)
        )
        return [
            PersonChoice(u.id, u.display_name, Role(u.role), u.specialty, u.facility_id, name) for u, name in rows.all()
        ]

    async def _case(self, tx: AsyncSession, patient_id: int | None, consultation_id: int | None) -> CaseChoice | None:
        """A patient with their latest consultations, or with only ``consultation_id`` when one is given."""
        stmt = select(ConsultationRow)
        if consultation_id is not None:
            consultation = await tx.get(ConsultationRow, consultation_id)
            patient_id = consultation.patient_id if consultation else patient_id
            stmt = stmt.where(ConsultationRow.id == consultation_id)
        patient = await tx.get(PatientRow, patient_id) if patient_id is not None else None
        if patient is None:
            return None
        stmt = stmt.where(ConsultationRow.patient_id == patient.id)
        latest = stmt.order_by(ConsultationRow.created_at.desc(), ConsultationRow.id.desc())
        found = (await tx.execute(latest.limit(MAX_CASE_CONSULTATIONS))).scalars()
        return CaseChoice(
            patient.id,
            patient.full_name,
            _age(patient.date_of_birth, self._clock.now().date()),
            patient.sex,
            tuple(CaseConsultation(c.id, c.specialty, c.status, c.created_at) for c in found),
        )

    def _audit_cases(
        self, tx: AsyncSession, actor: Actor, action: str, conference_id: int | None, source: str, found: int
    ) -> None:
        repo.audit(
            tx,
            at=self._clock.now(),
            actor_user_id=actor.user_id,
            action=action,
            entity_type="patient" if conference_id is None else "conference",
            entity_id=conference_id,
            outcome="success",
            source=source,
            detail=f"cases={found}",
        )

    # -- reading ----------------------------------------------------------------------------------------------

    async def get(self, actor: Actor, conference_id: int) -> ConferenceView:
        async with self._db.transaction() as tx:
            row = await self._visible(tx, actor, conference_id)
            return await self._view(tx, row)

    async def responses(self, actor: Actor, conference_id: int, *, source: str) -> list[SiteResponses]:
        """The coordinator's view: who answered what, grouped by the invitee's site."""
        await self._require_manager(actor, conference_id, "conference.responses", source)
        async with self._db.transaction() as tx:
            row = await self._own(tx, conference_id)
            view = await self._view(tx, row)
            names = dict(
                (await tx.execute(select(FacilityRow.id, FacilityRow.name))).all()  # a small table
            )
        by_site: dict[int, list[Invitee]] = {}
        for invitee in view.invitees:
            by_site.setdefault(invitee.facility_id, []).append(invitee)
        return [
            SiteResponses(fid, names.get(fid, ""), tuple(by_site[fid]))
            for fid in sorted(by_site, key=lambda f: names.get(f, ""))
        ]

    async def upcoming(self, actor: Actor, *, days: int = 30) -> list[UpcomingSession]:
        """The actor's sessions from now for ``days`` days: invited or organizing, not cancelled."""
        now = self._clock.now()
        end = now + timedelta(days=max(1, min(days, 366)))
        async with self._db.transaction() as tx:
            rows, answers = await self._mine(tx, actor.user_id, now, end, include_cancelled=False)
            series = [(row, await self._series(tx, row)) for row in rows]
        found = [
            UpcomingSession(row.id, row.title, o.recurrence_id, o.starts_at, o.ends_at, answers.get(row.id))
            for row, s in series
            for o in dom.expand(s, now, end)
        ]
        return sorted(found, key=lambda u: (u.starts_at, u.conference_id))

    async def invitation(self, actor: Actor, conference_id: int, *, source: str) -> bytes:
        """The invitation as an .ics (METHOD:REQUEST; METHOD:CANCEL once cancelled), for an invitee or the
        organizer. Audited: it tells when and where a case is reviewed."""
        async with self._db.transaction() as tx:
            row = await tx.get(ConferenceRow, conference_id)
            if row is None:
                raise NotFound("no such conference", field="conference")
            invited = await tx.get(ConferenceInviteeRow, (conference_id, actor.user_id))
            if invited is None and row.organizer_user_id != actor.user_id:
                denied = True
            else:
                denied = False
                series = await self._series(tx, row)
                text, attendees, organizer, private = await self._calendar_parts(tx, row)
                self._audit(tx, actor, "conference.ics", row.id, source)
        if denied:
            await self._deny(actor, "conference.ics", conference_id, source, "only invitees get the invitation")
        kwargs = dict(
            sequence=row.sequence,
            dtstamp=self._clock.now(),
            domain=self._settings.calendar_domain,
            patient_identifiers=private,
        )
        if row.status == CANCELLED:
            return ics.cancel(series, text, attendees, organizer, **kwargs)  # type: ignore[arg-type]
        return ics.invite(series, text, attendees, organizer, **kwargs)  # type: ignore[arg-type]

    # -- the private calendar feed ----------------------------------------------------------------------------

    async def issue_feed_token(self, actor: Actor, *, source: str) -> str:
        """A new secret feed token; any earlier one stops working. Only its hash is stored."""
        token = secrets.token_urlsafe(32)
        now = self._clock.now()
        async with self._db.transaction() as tx:
            await self._revoke_tokens(tx, actor.user_id, now)
            tx.add(CalendarFeedTokenRow(user_id=actor.user_id, token_hash=feed_token_hash(token), created_at=now))
            self._audit(tx, actor, "calendar.token_issue", actor.user_id, source)
        return token

    async def revoke_feed_token(self, actor: Actor, *, source: str) -> int:
        async with self._db.transaction() as tx:
            revoked = await self._revoke_tokens(tx, actor.user_id, self._clock.now())
            self._audit(tx, actor, "calendar.token_revoke", actor.user_id, source, f"revoked={revoked}")
        return revoked

    async def feed(self, token: str, *, source: str) -> bytes:
        """The feed of the token's owner. A wrong or revoked token gets NotFound with no hint which it was."""
        digest = feed_token_hash(token)
        now = self._clock.now()
        async with self._db.transaction() as tx:
            found = (
                await tx.execute(select(CalendarFeedTokenRow).where(CalendarFeedTokenRow.token_hash == digest))
            ).scalar_one_or_none()
            # The lookup is by hash (a timing leak of the hash tells nothing of the token); compare anyway in
            # constant time so the decision itself never depends on how many characters matched.
            valid = found is not None and hmac.compare_digest(found.token_hash, digest) and found.revoked_at is None
            user = await tx.get(UserRow, found.user_id) if valid and found is not None else None
            if found is None or user is None or not user.active:
                repo.audit(
                    tx,
                    at=now,
                    actor_user_id=found.user_id if found else None,
                    action="calendar.feed",
                    entity_type="calendar_feed",
                    entity_id=None,
                    outcome="denied",
                    source=source,
                )
                denied = True
            else:
                denied = False
                rows, _answers = await self._mine(
                    tx, user.id, now - FEED_PAST, now + FEED_AHEAD, include_cancelled=True
                )
                entries, private = [], []
                for row in rows:
                    text, _att, _org, ids = await self._calendar_parts(tx, row)
                    series = await self._series(tx, row)
                    entries.append(ics.FeedEntry(series, text, row.sequence, cancelled=row.status == CANCELLED))
                    private.extend(ids)
                repo.audit(
                    tx,
                    at=now,
                    actor_user_id=user.id,
                    action="calendar.feed",
                    entity_type="calendar_feed",
                    entity_id=found.id,
                    outcome="success",
                    source=source,
                    detail=f"conferences={len(entries)}",
                )
        if denied:
            raise NotFound("no such calendar feed")
        return ics.feed(
            entries,
            name="Teleconsult",
            dtstamp=now,
            domain=self._settings.calendar_domain,
            patient_identifiers=private,
        )

    # -- in-app notifications ---------------------------------------------------------------------------------

    async def notifications(self, actor: Actor, *, unread_only: bool = False) -> list[NotificationView]:
        stmt = select(NotificationRow).where(NotificationRow.user_id == actor.user_id)
        if unread_only:
            stmt = stmt.where(NotificationRow.read_at.is_(None))
        stmt = stmt.order_by(NotificationRow.created_at.desc(), NotificationRow.id.desc()).limit(MAX_NOTIFICATIONS)
        async with self._db.transaction() as tx:
            rows = (await tx.execute(stmt)).scalars()
            return [NotificationView(n.id, n.kind, n.text, n.conference_id, n.created_at, n.read_at) for n in rows]

    async def mark_read(self, actor: Actor, notification_ids: Iterable[int]) -> int:
        ids = list(notification_ids)[:MAX_NOTIFICATIONS]
        async with self._db.transaction() as tx:
            result = await tx.execute(
                update(NotificationRow)
                .where(
                    NotificationRow.user_id == actor.user_id,
                    NotificationRow.id.in_(ids),
                    NotificationRow.read_at.is_(None),
                )
                .values(read_at=self._clock.now())
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # -- storage helpers --------------------------------------------------------------------------------------

    def _apply(self, row: ConferenceRow, booking: dom.Booking, series: Series, now: datetime) -> None:
        starts = dom.expand(series, booking.starts_at - timedelta(days=1), booking.starts_at + _FAR)
        row.title, row.purpose, row.tz = booking.title, booking.purpose.value, booking.tz
        row.host_facility_id = booking.host_facility_id
        row.starts_at, row.ends_at = booking.starts_at, booking.ends_at
        row.last_ends_at = max((o.ends_at for o in starts), default=booking.ends_at)
        row.rrule = booking.rule.to_ical() if booking.rule is not None else None
        row.updated_at = now

    async def _replace_people(
        self, tx: AsyncSession, conference_id: int, booking: dom.Booking, keep: dict[int, ConferenceInviteeRow]
    ) -> None:
        for table in (ConferenceSiteRow, ConferenceAgendaRow, ConferenceInviteeRow):
            await tx.execute(delete(table).where(table.conference_id == conference_id))
        for facility_id in booking.invited_site_ids:
            tx.add(ConferenceSiteRow(conference_id=conference_id, facility_id=facility_id))
        for user_id in booking.invited_user_ids:
            old = keep.get(user_id)
            rsvp, at = (old.rsvp, old.responded_at) if old else (Rsvp.NEEDS_ACTION.value, None)
            tx.add(ConferenceInviteeRow(conference_id=conference_id, user_id=user_id, rsvp=rsvp, responded_at=at))
        for position, item in enumerate(booking.agenda, start=1):
            tx.add(
                ConferenceAgendaRow(
                    conference_id=conference_id,
                    position=position,
                    patient_id=item.patient_id,
                    consultation_id=item.consultation_id,
                    presenter_user_id=item.presenter_user_id,
                )
            )

    async def _check_references(self, tx: AsyncSession, booking: dom.Booking) -> None:
        sites = set(booking.site_ids)
        found = set((await tx.execute(select(FacilityRow.id).where(FacilityRow.id.in_(sites)))).scalars())
        if found != sites:
            raise ValidationFailed("an invited site does not exist", field="invited_site_ids")
        people = set(booking.invited_user_ids)
        active = set(
            (await tx.execute(select(UserRow.id).where(UserRow.id.in_(people), UserRow.active.is_(True)))).scalars()
        )
        if active != people:
            raise ValidationFailed("an invited person does not exist or is inactive", field="invited_user_ids")
        for number, item in enumerate(booking.agenda, start=1):
            if item.consultation_id is not None:
                consultation = await tx.get(ConsultationRow, item.consultation_id)
                if consultation is None or item.patient_id not in (None, consultation.patient_id):
                    raise ValidationFailed(f"case {number}: no such consultation for that patient", field="agenda")
            elif item.patient_id is not None and await tx.get(PatientRow, item.patient_id) is None:
                raise ValidationFailed(f"case {number}: no such patient", field="agenda")
        title = ics.EventText(booking.title)
        ics.check_private(title, await self._patient_identifiers(tx, booking.agenda))

    async def _conflicts(self, tx: AsyncSession, series: Series, booking: dom.Booking) -> list[ScheduleConflict]:
        candidates = dom.expand(series, series.starts_at - timedelta(days=1), series.starts_at + _FAR)
        if not candidates:
            return []
        start, end = candidates[0].starts_at, max(o.ends_at for o in candidates)
        others = (
            await tx.execute(
                select(ConferenceRow).where(
                    ConferenceRow.status == BOOKED,
                    ConferenceRow.id != series.booking_id,
                    ConferenceRow.starts_at < end,
                    ConferenceRow.last_ends_at > start,
                )
            )
        ).scalars()
        existing: list[Scheduled] = []
        for other in list(others):
            people = frozenset(
                (
                    await tx.execute(
                        select(ConferenceInviteeRow.user_id).where(
                            ConferenceInviteeRow.conference_id == other.id,
                            ConferenceInviteeRow.rsvp != Rsvp.DECLINED.value,
                        )
                    )
                ).scalars()
            )
            sites = frozenset(
                (
                    await tx.execute(
                        select(ConferenceSiteRow.facility_id).where(ConferenceSiteRow.conference_id == other.id)
                    )
                ).scalars()
            ) | {other.host_facility_id}
            for occ in dom.expand(await self._series(tx, other), start, end):
                existing.append(Scheduled(occ, people, sites))
        shifts = (
            await tx.execute(
                select(OnCallShiftRow).where(
                    OnCallShiftRow.user_id.in_(booking.invited_user_ids),
                    OnCallShiftRow.starts_at < end,
                    OnCallShiftRow.ends_at > start,
                )
            )
        ).scalars()
        on_call = [OnCallShift(s.user_id, s.starts_at, s.ends_at) for s in shifts]
        return dom.conflicts(candidates, existing, on_call, booking.invited_user_ids, booking.site_ids)

    async def _exceptions(self, tx: AsyncSession, conference_id: int) -> list[ConferenceExceptionRow]:
        stmt = select(ConferenceExceptionRow).where(ConferenceExceptionRow.conference_id == conference_id)
        return list((await tx.execute(stmt)).scalars())

    async def _series(self, tx: AsyncSession, row: ConferenceRow) -> Series:
        exceptions = await self._exceptions(tx, row.id)
        return Series(
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

    async def _invitee_rows(self, tx: AsyncSession, conference_id: int) -> list[ConferenceInviteeRow]:
        stmt = select(ConferenceInviteeRow).where(ConferenceInviteeRow.conference_id == conference_id)
        return list((await tx.execute(stmt)).scalars())

    async def _view(self, tx: AsyncSession, row: ConferenceRow) -> ConferenceView:
        invitees = (
            await tx.execute(
                select(ConferenceInviteeRow, UserRow)
                .join(UserRow, UserRow.id == ConferenceInviteeRow.user_id)
                .where(ConferenceInviteeRow.conference_id == row.id)
                .order_by(UserRow.display_name)
            )
        ).all()
        sites = (
            await tx.execute(
                select(ConferenceSiteRow.facility_id)
                .where(ConferenceSiteRow.conference_id == row.id)
                .order_by(ConferenceSiteRow.facility_id)
            )
        ).scalars()
        agenda = (
            await tx.execute(
                select(ConferenceAgendaRow)
                .where(ConferenceAgendaRow.conference_id == row.id)
                .order_by(ConferenceAgendaRow.position)
            )
        ).scalars()
        return ConferenceView(
            id=row.id,
            uid=row.uid or ics.uid_for(row.id, self._settings.calendar_domain),
            title=row.title,
            purpose=dom.Purpose(row.purpose),
            host_facility_id=row.host_facility_id,
            organizer_user_id=row.organizer_user_id,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            tz=row.tz,
            rrule=row.rrule,
            sequence=row.sequence,
            status=row.status,
            site_ids=tuple(sites),
            invitees=tuple(
                Invitee(u.id, u.display_name, u.facility_id, Rsvp(i.rsvp), i.responded_at) for i, u in invitees
            ),
            agenda=tuple(AgendaItem(a.presenter_user_id, a.patient_id, a.consultation_id) for a in agenda),
        )

    async def _mine(
        self, tx: AsyncSession, user_id: int, start: datetime, end: datetime, *, include_cancelled: bool
    ) -> tuple[list[ConferenceRow], dict[int, Rsvp]]:
        answers = dict(
            (
                await tx.execute(
                    select(ConferenceInviteeRow.conference_id, ConferenceInviteeRow.rsvp).where(
                        ConferenceInviteeRow.user_id == user_id
                    )
                )
            ).all()
        )
        stmt = select(ConferenceRow).where(
            (ConferenceRow.id.in_(list(answers))) | (ConferenceRow.organizer_user_id == user_id),
            ConferenceRow.starts_at < end,
            ConferenceRow.last_ends_at > start,
        )
        if not include_cancelled:
            stmt = stmt.where(ConferenceRow.status == BOOKED)
        rows = list((await tx.execute(stmt.order_by(ConferenceRow.starts_at, ConferenceRow.id))).scalars())
        return rows, {cid: Rsvp(value) for cid, value in answers.items()}

    async def _patient_identifiers(self, tx: AsyncSession, agenda: Sequence[AgendaItem]) -> list[str]:
        ids = {a.patient_id for a in agenda if a.patient_id is not None}
        consultations = [a.consultation_id for a in agenda if a.consultation_id is not None]
        if consultations:
            stmt = select(ConsultationRow.patient_id).where(ConsultationRow.id.in_(consultations))
            ids |= set((await tx.execute(stmt)).scalars())
        if not ids:
            return []
        patients = (await tx.execute(select(PatientRow).where(PatientRow.id.in_(ids)))).scalars()
        return [value for p in patients for value in (p.full_name, p.cccd, p.bhyt) if value]

    async def _calendar_parts(
        self, tx: AsyncSession, row: ConferenceRow
    ) -> tuple[ics.EventText, list[ics.Attendee], ics.Person, list[str]]:
        """What the calendar shows: the agenda as specialty, age and sex, never who the patient is."""
        view = await self._view(tx, row)
        today = self._clock.now().date()
        cases = []
        for item in view.agenda:
            specialty, patient = "case", None
            if item.consultation_id is not None:
                consultation = await tx.get(ConsultationRow, item.consultation_id)
                if consultation is not None:
                    specialty = consultation.specialty
                    patient = await tx.get(PatientRow, consultation.patient_id)
            if patient is None and item.patient_id is not None:
                patient = await tx.get(PatientRow, item.patient_id)
            age = _age(patient.date_of_birth, today) if patient else None
            cases.append(ics.CaseSummary(specialty, age, patient.sex if patient else None))
        host = await tx.get(FacilityRow, row.host_facility_id)
        text = ics.EventText(
            summary=row.title,
            description=ics.agenda_description(cases, intro=f"Purpose: {row.purpose.replace('_', ' ')}"),
            location=host.name if host else "",
        )
        users = {
            u.id: u
            for u in (
                await tx.execute(
                    select(UserRow).where(
                        UserRow.id.in_(
                            [i.user_id for i in view.invitees]
                            + ([row.organizer_user_id] if row.organizer_user_id else [])
                        )
                    )
                )
            ).scalars()
        }
        attendees = [
            ics.Attendee(ics.Person(i.display_name, self._address(users[i.user_id])), i.rsvp) for i in view.invitees
        ]
        chair = users.get(row.organizer_user_id) if row.organizer_user_id else None
        organizer = (
            ics.Person(chair.display_name, self._address(chair))
            if chair
            else ics.Person("Teleconsult", f"mailto:noreply@{self._settings.calendar_domain}")
        )
        return text, attendees, organizer, await self._patient_identifiers(tx, view.agenda)

    def _address(self, user: UserRow) -> str:
        # Users have no e-mail address here; a per-user address on the deployment's domain keeps ATTENDEE unique.
        return f"mailto:{user.username}@{self._settings.calendar_domain}"

    async def _revoke_tokens(self, tx: AsyncSession, user_id: int, now: datetime) -> int:
        result = await tx.execute(
            update(CalendarFeedTokenRow)
            .where(CalendarFeedTokenRow.user_id == user_id, CalendarFeedTokenRow.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # -- authorization and audit ------------------------------------------------------------------------------

    async def _require_booker(self, actor: Actor, action: str, conference_id: int | None, source: str) -> None:
        if actor.role not in (Role.COORDINATOR, Role.ADMIN):
            await self._deny(actor, action, conference_id, source, "only coordinators book teleconferences")

    async def _own(self, tx: AsyncSession, conference_id: int) -> ConferenceRow:
        row = await tx.get(ConferenceRow, conference_id, with_for_update=True)
        if row is None:
            raise NotFound("no such conference", field="conference")
        return row

    async def _require_manager(self, actor: Actor, conference_id: int, action: str, source: str) -> None:
        """An administrator manages any conference, a coordinator the ones they organize or their facility
        hosts. Checked in a transaction of its own: a refusal is audited in another one, never nested."""
        async with self._db.transaction() as tx:
            row = await tx.get(ConferenceRow, conference_id)
        if row is None:
            raise NotFound("no such conference", field="conference")
        if actor.role is Role.ADMIN:
            return
        if actor.role is Role.COORDINATOR and actor.user_id == row.organizer_user_id:
            return
        if actor.role is Role.COORDINATOR and actor.facility_id == row.host_facility_id:
            return
        await self._deny(actor, action, conference_id, source, "only the conference's coordinators may do this")

    async def _visible(self, tx: AsyncSession, actor: Actor, conference_id: int) -> ConferenceRow:
        row = await tx.get(ConferenceRow, conference_id)
        if row is None:
            raise NotFound("no such conference", field="conference")
        if actor.role is Role.ADMIN or actor.user_id == row.organizer_user_id:
            return row
        if actor.role is Role.COORDINATOR and actor.facility_id == row.host_facility_id:
            return row
        if await tx.get(ConferenceInviteeRow, (conference_id, actor.user_id)) is not None:
            return row
        raise NotFound("no such conference", field="conference")

    async def _deny(self, actor: Actor, action: str, conference_id: int | None, source: str, message: str) -> None:
        async with self._db.transaction() as tx:
            repo.audit(
                tx,
                at=self._clock.now(),
                actor_user_id=actor.user_id,
                action=action,
                entity_type="conference",
                entity_id=conference_id,
                outcome="denied",
                source=source,
            )
        raise PermissionDenied(message)

    def _audit(
        self, tx: AsyncSession, actor: Actor | None, action: str, entity_id: object, source: str, detail: str = ""
    ) -> None:
        repo.audit(
            tx,
            at=self._clock.now(),
            actor_user_id=actor.user_id if actor else None,
            action=action,
            entity_type="conference" if action.startswith("conference") else "calendar_feed",
            entity_id=entity_id,
            outcome="success",
            source=source,
            detail=detail,
        )


async def _names(tx: AsyncSession, key: Any, name: Any, ids: set[int]) -> dict[int | None, str]:
    if not ids:
        return {}
    return {k: v for k, v in (await tx.execute(select(key, name).where(key.in_(ids)))).all()}


def _age(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))
