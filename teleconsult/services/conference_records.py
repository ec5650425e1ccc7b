"""What a conference session leaves in the records: notes and decisions per case (part of each patient's record),
attendance per person and site, and the CSV a coordinator exports. Views and queries shared by
``ConferenceRoomService`` and ``PatientService``; no authorization here (the callers decide)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from teleconsult.domain import conference as dom
from teleconsult.domain import conference_room as room
from teleconsult.storage.models import (
    ConferenceAttendanceRow,
    ConferenceDecisionRow,
    ConferenceNoteRow,
    ConferenceRow,
    ConferenceSessionRow,
    FacilityRow,
    UserRow,
)


@dataclass(frozen=True, slots=True)
class NoteView:
    id: int
    session_id: int
    agenda_item_id: int
    patient_id: int
    author_user_id: int
    author_name: str
    text: str
    created_at: datetime
    client_id: str


@dataclass(frozen=True, slots=True)
class DecisionView:
    session_id: int
    agenda_item_id: int
    patient_id: int
    recommendation: str
    icd10: str
    outcome: room.Outcome
    version: int
    decided_by_user_id: int
    decided_by_name: str
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class VitalView:
    kind: str
    value: float
    value2: float | None
    unit: str
    observed_at: datetime


@dataclass(frozen=True, slots=True)
class AgendaCase:
    """One case to review, with the record summary the room shows while it is discussed."""

    item_id: int
    position: int
    presenter_user_id: int
    presenter_name: str
    patient_id: int
    patient_name: str
    patient_age: int
    patient_sex: str
    consultation_id: int | None
    specialty: str | None
    urgency: str | None
    summary: str
    vitals: tuple[VitalView, ...]
    notes: tuple[NoteView, ...]
    decision: DecisionView | None


@dataclass(frozen=True, slots=True)
class Stay:
    session_id: int
    user_id: int
    display_name: str
    facility_id: int
    facility_name: str


@dataclass(frozen=True, slots=True)
class AttendanceLine:
    session_id: int
    session_starts_at: datetime
    user_id: int
    display_name: str
    role: str
    facility_id: int
    facility_name: str
    first_joined: datetime
    last_left: datetime | None
    minutes_present: int
    stays: int


@dataclass(frozen=True, slots=True)
class ConferenceReview:
    """One agenda case about this patient in one session: its notes and decision, as the record shows them.
    (A patient may be on an agenda twice, e.g. two problems: each case is a review of its own.)"""

    conference_id: int
    title: str
    session_id: int
    session_starts_at: datetime
    agenda_item_id: int
    decision: DecisionView | None
    notes: tuple[NoteView, ...]


async def attendance_lines(tx: AsyncSession, conference_id: int, now: datetime) -> list[AttendanceLine]:
    rows = (
        await tx.execute(
            select(ConferenceAttendanceRow, ConferenceSessionRow, UserRow, FacilityRow.name)
            .join(ConferenceSessionRow, ConferenceSessionRow.id == ConferenceAttendanceRow.session_id)
            .join(UserRow, UserRow.id == ConferenceAttendanceRow.user_id)
            .join(FacilityRow, FacilityRow.id == ConferenceAttendanceRow.facility_id)
            .where(ConferenceSessionRow.conference_id == conference_id)
        )
    ).all()
    lines: list[AttendanceLine] = []
    sessions = {s.id: s for _, s, _, _ in rows}
    for session in sorted(sessions.values(), key=lambda s: s.starts_at):
        here = [(a, u, fac) for a, s, u, fac in rows if s.id == session.id]
        users = {u.id: u for _, u, _ in here}
        sites = {a.facility_id: fac for a, _, fac in here}
        until = session.closed_at or now
        stays = [room.Stay(a.user_id, a.facility_id, a.joined_at, a.left_at) for a, _, _ in here]
        for line in room.attendance(stays, until):
            user = users[line.user_id]
            lines.append(
                AttendanceLine(
                    session_id=session.id,
                    session_starts_at=session.starts_at,
                    user_id=user.id,
                    display_name=user.display_name,
                    role=user.role,
                    facility_id=line.facility_id,
                    facility_name=sites[line.facility_id],
                    first_joined=line.first_joined,
                    last_left=line.last_left,
                    minutes_present=int(line.present.total_seconds() // 60),
                    stays=line.stays,
                )
            )
    return lines


def note_view(row: ConferenceNoteRow, author_name: str) -> NoteView:
    return NoteView(
        id=row.id,
        session_id=row.session_id,
        agenda_item_id=row.agenda_item_id,
        patient_id=row.patient_id,
        author_user_id=row.author_user_id,
        author_name=author_name,
        text=row.text,
        created_at=row.created_at,
        client_id=row.client_id,
    )


def decision_view(row: ConferenceDecisionRow, name: str) -> DecisionView:
    return DecisionView(
        session_id=row.session_id,
        agenda_item_id=row.agenda_item_id,
        patient_id=row.patient_id,
        recommendation=row.recommendation,
        icd10=row.icd10,
        outcome=room.Outcome(row.outcome),
        version=row.version,
        decided_by_user_id=row.decided_by_user_id,
        decided_by_name=name,
        decided_at=row.decided_at,
    )


def age(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def to_csv(
    conf: ConferenceRow,
    lines: Sequence[AttendanceLine],
    decided: Sequence[tuple[ConferenceSessionRow, AgendaCase]],
) -> str:
    tz = conf.tz

    def local(at: datetime | None) -> str:
        return dom.utc_to_local(at, tz).strftime("%Y-%m-%d %H:%M") if at is not None else ""

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["conference", conf.id, conf.title, f"times in {tz}"])
    writer.writerow([])
    writer.writerow(["attendance"])
    writer.writerow(
        ["session start", "person", "role", "site", "first joined", "last left", "minutes present", "stays"]
    )
    for line in lines:
        writer.writerow(
            [
                local(line.session_starts_at),
                line.display_name,
                line.role,
                line.facility_name,
                local(line.first_joined),
                local(line.last_left) or "still in the room",
                line.minutes_present,
                line.stays,
            ]
        )
    writer.writerow([])
    writer.writerow(["decisions"])
    writer.writerow(
        [
            "session start",
            "case",
            "patient",
            "presenter",
            "ICD-10",
            "outcome",
            "recommendation",
            "decided by",
            "decided at",
        ]
    )
    for session, case in decided:
        d = case.decision
        writer.writerow(
            [
                local(session.starts_at),
                case.position,
                case.patient_name,
                case.presenter_name,
                d.icd10 if d else "",
                d.outcome.value if d else "no decision",
                d.recommendation if d else "",
                d.decided_by_name if d else "",
                local(d.decided_at) if d else "",
            ]
        )
    return out.getvalue()


async def reviews_of(tx: AsyncSession, patient_id: int) -> list[ConferenceReview]:
    """For the patient's record (called inside ``PatientService.record``'s transaction, after its check)."""
    notes = list(
        (
            await tx.execute(
                select(ConferenceNoteRow, UserRow.display_name)
                .join(UserRow, UserRow.id == ConferenceNoteRow.author_user_id)
                .where(ConferenceNoteRow.patient_id == patient_id)
                .order_by(ConferenceNoteRow.created_at, ConferenceNoteRow.id)
            )
        ).all()
    )
    decisions = list(
        (
            await tx.execute(
                select(ConferenceDecisionRow, UserRow.display_name)
                .join(UserRow, UserRow.id == ConferenceDecisionRow.decided_by_user_id)
                .where(ConferenceDecisionRow.patient_id == patient_id)
            )
        ).all()
    )
    session_ids = {n.session_id for n, _ in notes} | {d.session_id for d, _ in decisions}
    if not session_ids:
        return []
    sessions = (
        await tx.execute(
            select(ConferenceSessionRow, ConferenceRow.title)
            .join(ConferenceRow, ConferenceRow.id == ConferenceSessionRow.conference_id)
            .where(ConferenceSessionRow.id.in_(session_ids))
            .order_by(ConferenceSessionRow.starts_at.desc())
        )
    ).all()
    by_case = {(d.session_id, d.agenda_item_id): decision_view(d, name) for d, name in decisions}
    cases = sorted({(n.session_id, n.agenda_item_id) for n, _ in notes} | set(by_case), key=lambda c: c[1])
    reviews = []
    for s, title in sessions:
        for session_id, item_id in cases:
            if session_id != s.id:
                continue
            reviews.append(
                ConferenceReview(
                    conference_id=s.conference_id,
                    title=title,
                    session_id=s.id,
                    session_starts_at=s.starts_at,
                    agenda_item_id=item_id,
                    decision=by_case.get((s.id, item_id)),
                    notes=tuple(
                        note_view(n, name) for n, name in notes if (n.session_id, n.agenda_item_id) == (s.id, item_id)
                    ),
                )
            )
    return reviews
