"""Tables. Times are stored as UTC; SQLite has no timezone type, so UTCDateTime normalises both ways."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class FacilityRow(Base):
    __tablename__ = "facilities"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16))
    province: Mapped[str] = mapped_column(String(120), default="")
    hub_id: Mapped[int | None] = mapped_column(ForeignKey("facilities.id"), nullable=True)


class SpecialtyRow(Base):
    __tablename__ = "specialties"
    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name_en: Mapped[str] = mapped_column(String(120))
    name_vi: Mapped[str] = mapped_column(String(120))


class UserRow(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"))
    specialty: Mapped[str | None] = mapped_column(ForeignKey("specialties.code"), nullable=True)
    locale: Mapped[str | None] = mapped_column(String(8), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SessionRow(Base):
    """A browser session or an API token. Only the SHA-256 of the secret is stored."""

    __tablename__ = "sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    source_ip: Mapped[str] = mapped_column(String(64), default="")


class PatientRow(Base):
    __tablename__ = "patients"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cccd: Mapped[str] = mapped_column(String(12), unique=True)
    full_name: Mapped[str] = mapped_column(String(120))
    name_folded: Mapped[str] = mapped_column(String(120), index=True)
    date_of_birth: Mapped[date] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(8))
    bhyt: Mapped[str | None] = mapped_column(String(15), nullable=True)
    address: Mapped[str] = mapped_column(String(300), default="")
    province: Mapped[str] = mapped_column(String(120), default="")
    registered_by_facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConsultationRow(Base):
    __tablename__ = "consultations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    requesting_facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"))
    requested_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    specialty: Mapped[str] = mapped_column(ForeignKey("specialties.code"))
    urgency: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    specialist_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    recommendation: Mapped[str | None] = mapped_column(Text, nullable=True)
    icd10_code: Mapped[str | None] = mapped_column(String(10), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Pairing: raised by every pairing decision, so two processes deciding at once cannot both commit one.
    pairing_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        Index("ix_consultations_status_specialty", "status", "specialty"),
        Index("ix_consultations_specialist_accepted", "specialist_user_id", "accepted_at"),
    )


class FacilitySupportRow(Base):
    """A central hospital that supports a facility (and, through the referral line, the facilities below it)."""

    __tablename__ = "facility_support"
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"), primary_key=True)
    hub_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"), primary_key=True)
    priority: Mapped[int] = mapped_column(Integer, default=1)


class OnCallShiftRow(Base):
    """A specialist on call for one specialty at one hub, from starts_at to ends_at (UTC)."""

    __tablename__ = "on_call_shifts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hub_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"))
    specialty: Mapped[str] = mapped_column(ForeignKey("specialties.code"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_on_call_shifts_specialty_ends", "specialty", "ends_at"),)


class SpecialistPresenceRow(Base):
    """The specialist's own availability toggle; survives reconnects and restarts."""

    __tablename__ = "specialist_presence"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    availability: Mapped[str] = mapped_column(String(16))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PresenceLeaseRow(Base):
    """A user is connected while a server process holds an unexpired lease for them. A process renews its
    leases while it runs; a killed process's leases simply run out."""

    __tablename__ = "presence_leases"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    connections: Mapped[int] = mapped_column(Integer, default=1)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class PairingOfferRow(Base):
    """One offer of one request to one specialist: it rings until deadline_at, then the next is tried."""

    __tablename__ = "pairing_offers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultations.id"), index=True)
    specialist_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(16))
    offered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime())
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    handed_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)

    __table_args__ = (
        Index("ix_pairing_offers_status_deadline", "status", "deadline_at"),
        # A specialist's phone rings for one case at a time, whatever the number of deciding processes.
        Index(
            "uq_pairing_offers_one_ringing",
            "specialist_user_id",
            unique=True,
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )


class ParticipationRow(Base):
    """One stay of one user in a consultation room: joined, and (later) left."""

    __tablename__ = "participations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultations.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    connection_id: Mapped[str] = mapped_column(String(64))
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime())
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class CaseNoteRow(Base):
    __tablename__ = "case_notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultations.id"), index=True)
    author_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # Chosen by the writer's client: a resend after a dropped link is recognised, not stored twice.
    client_id: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("consultation_id", "author_user_id", "client_id", name="uq_case_notes_client"),)


class AuditEventRow(Base):
    """Who did what, when, from where, with what outcome. Never holds patient data, only references."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), nullable=True, index=True)
    source: Mapped[str] = mapped_column(String(64), default="")
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(String(200), default="")


class WaveformStreamRow(Base):
    """One run of monitor signals (a device playing, or an imported WFDB record) for one patient.

    Committed frames are exactly seq < next_seq: the source sends in order and a gap is refused, so one
    counter both orders the stream and recognises a resend."""

    __tablename__ = "waveform_streams"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    consultation_id: Mapped[int | None] = mapped_column(ForeignKey("consultations.id"), nullable=True, index=True)
    # None: imported by an operator with the command line, not by a signed-in user.
    source_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    # Chosen by the source (gateway outbox, importer): opening again with the same key resumes the stream.
    source_key: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(120))
    rate_mhz: Mapped[int] = mapped_column(BigInteger)
    signals: Mapped[str] = mapped_column(Text)  # JSON list of {name, units, gain, baseline}
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    next_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    next_sample: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (UniqueConstraint("patient_id", "source_key", name="uq_waveform_streams_source"),)


class WaveformFrameRow(Base):
    """A frame as received, kept until compaction folds it into a chunk."""

    __tablename__ = "waveform_frames"
    stream_id: Mapped[int] = mapped_column(ForeignKey("waveform_streams.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    first_sample: Mapped[int] = mapped_column(BigInteger)
    n_samples: Mapped[int] = mapped_column(Integer)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WaveformChunkRow(Base):
    """Consecutive frames re-coded as one sample block (docs/waveform-format.md), headers dropped."""

    __tablename__ = "waveform_chunks"
    stream_id: Mapped[int] = mapped_column(ForeignKey("waveform_streams.id"), primary_key=True)
    first_sample: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    n_samples: Mapped[int] = mapped_column(Integer)
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class VitalSignRow(Base):
    """One vital-sign observation: typed in by a clinician or sent by a device. Blood pressure keeps the
    systolic in ``value`` and the diastolic in ``value2``."""

    __tablename__ = "vital_signs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    consultation_id: Mapped[int | None] = mapped_column(ForeignKey("consultations.id"), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[float] = mapped_column(Float)
    value2: Mapped[float | None] = mapped_column(Float, nullable=True)
    unit: Mapped[str] = mapped_column(String(16))
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(16))
    recorded_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    stream_id: Mapped[int | None] = mapped_column(ForeignKey("waveform_streams.id"), nullable=True)
    client_id: Mapped[str] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("patient_id", "recorded_by_user_id", "client_id", name="uq_vital_signs_client"),)


# -- teleconferences (issue 5, docs/conferences.md) ------------------------------------------------------------


class ConferenceRow(Base):
    """A booked teleconference: one session or a bounded series. ``starts_at``/``ends_at`` are the first
    session's; ``last_ends_at`` is when the series' last session ends, so time-range queries need no expansion.
    ``sequence`` is the iCalendar SEQUENCE, raised by every change that is sent to the invitees."""

    __tablename__ = "conferences"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # conference-<id>@<calendar domain>; set in the transaction that creates the row, never changed after.
    uid: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    title: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(String(16))
    host_facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"))
    organizer_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    tz: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    rrule: Mapped[str | None] = mapped_column(String(200), nullable=True)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))  # booked | cancelled
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_conferences_status_span", "status", "starts_at", "last_ends_at"),)


class ConferenceSiteRow(Base):
    """An invited site (facility); the host facility is on the conference row itself."""

    __tablename__ = "conference_sites"
    conference_id: Mapped[int] = mapped_column(ForeignKey("conferences.id"), primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"), primary_key=True)


class ConferenceInviteeRow(Base):
    __tablename__ = "conference_invitees"
    conference_id: Mapped[int] = mapped_column(ForeignKey("conferences.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    rsvp: Mapped[str] = mapped_column(String(16))
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ConferenceAgendaRow(Base):
    """A case to review, in order, with its presenter."""

    __tablename__ = "conference_agenda"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conference_id: Mapped[int] = mapped_column(ForeignKey("conferences.id"))
    position: Mapped[int] = mapped_column(Integer)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), nullable=True)
    consultation_id: Mapped[int | None] = mapped_column(ForeignKey("consultations.id"), nullable=True)
    presenter_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))

    __table_args__ = (UniqueConstraint("conference_id", "position", name="uq_conference_agenda_position"),)


class ConferenceExceptionRow(Base):
    """One session of a series cancelled or moved. ``recurrence_id`` is the session's original local start, a
    naive wall-clock time in the conference's zone (what RECURRENCE-ID;TZID=... carries), never UTC."""

    __tablename__ = "conference_exceptions"
    conference_id: Mapped[int] = mapped_column(ForeignKey("conferences.id"), primary_key=True)
    recurrence_id: Mapped[datetime] = mapped_column(DateTime(timezone=False), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # cancelled | moved
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class CalendarFeedTokenRow(Base):
    """A user's private calendar feed. Only the SHA-256 of the secret is stored; revoked tokens stay as rows."""

    __tablename__ = "calendar_feed_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ConferenceReminderRow(Base):
    """A reminder sent. ``key`` is the domain's ``ReminderKey.text``: its uniqueness is what makes a reminder go
    out once however many processes look for due reminders at the same moment."""

    __tablename__ = "conference_reminders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    conference_id: Mapped[int] = mapped_column(ForeignKey("conferences.id"), index=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())
    instance_id: Mapped[str] = mapped_column(String(32), default="")


class NotificationRow(Base):
    """An in-app notification. ``text`` never names a patient: it may be shown on a locked screen."""

    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(String(500))
    conference_id: Mapped[int | None] = mapped_column(ForeignKey("conferences.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_notifications_user_created", "user_id", "created_at"),)


# -- the conference room (issue 5): one live session per occurrence ----------------------------------------------


class ConferenceSessionRow(Base):
    """One occurrence of a conference, live or over. Opened by the first person to enter it, closed by the host
    or when its time is up. ``sfu_room``/``sfu_secret``/``sfu_pin`` are the Janus VideoRoom's id and secrets:
    only servers read them; no event or page ever carries them."""

    __tablename__ = "conference_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conference_id: Mapped[int] = mapped_column(ForeignKey("conferences.id"))
    # The occurrence's original local start in the conference's zone (RECURRENCE-ID), naive wall-clock time.
    recurrence_id: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16))  # open | closed
    current_position: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sfu_room: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sfu_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sfu_pin: Mapped[str | None] = mapped_column(String(64), nullable=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        UniqueConstraint("conference_id", "recurrence_id", name="uq_conference_sessions_occurrence"),
        Index("ix_conference_sessions_status_ends", "status", "ends_at"),
    )


class ConferenceAdmissionRow(Base):
    """Someone waiting in the lobby of a session, and the host's answer."""

    __tablename__ = "conference_admissions"
    session_id: Mapped[int] = mapped_column(ForeignKey("conference_sessions.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # waiting | admitted | refused
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    decided_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)


class ConferenceAttendanceRow(Base):
    """One stay of one person (one connection) in a session. ``facility_id`` is the site they joined from.
    ``connection_id`` is ``<process instance>:<socket id>``: a killed process's stays are closed by lease."""

    __tablename__ = "conference_attendance"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("conference_sessions.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"))
    connection_id: Mapped[str] = mapped_column(String(96))
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime())
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ConferenceNoteRow(Base):
    """A case note written in a conference about one agenda case: part of that patient's record."""

    __tablename__ = "conference_notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("conference_sessions.id"))
    agenda_item_id: Mapped[int] = mapped_column(ForeignKey("conference_agenda.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    author_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    client_id: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("session_id", "author_user_id", "client_id", name="uq_conference_notes_client"),
        Index("ix_conference_notes_session_item", "session_id", "agenda_item_id"),
    )


class ConferenceDecisionRow(Base):
    """The conference's decision on one case in one session: part of that patient's record. ``version`` rises
    with each change; a change names the version it replaces, so two editors cannot silently overwrite."""

    __tablename__ = "conference_decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("conference_sessions.id"))
    agenda_item_id: Mapped[int] = mapped_column(ForeignKey("conference_agenda.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    recommendation: Mapped[str] = mapped_column(Text)
    icd10: Mapped[str] = mapped_column(String(8))
    outcome: Mapped[str] = mapped_column(String(24))
    version: Mapped[int] = mapped_column(Integer)
    decided_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("session_id", "agenda_item_id", name="uq_conference_decisions_case"),)
