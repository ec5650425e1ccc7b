"""The signaling protocol: every socket.io event, its payload and its ack, as pydantic models.

This module is the protocol. docs/signaling.md is generated from it (``python -m signaling.docs``) and a
test fails when the two disagree. Client events are validated with ``extra="forbid"`` before dispatch;
every client event is answered through its ack with ``Ack``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PeerId = str


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- shared shapes -----------------------------------------------------------------------------------------


class ErrorBody(_Model):
    code: str = Field(
        description="machine-readable: invalid, unauthenticated, forbidden, not_found, conflict, "
        "room_full, rate_limited, too_large, unavailable (retry later), internal"
    )
    message: str


class Ack(_Model):
    """Every ack: ``{"ok": true, ...}`` or ``{"ok": false, "error": {...}}``."""

    ok: bool
    error: ErrorBody | None = None


class SessionDescription(_Model):
    type: Literal["offer", "answer", "pranswer", "rollback"]
    sdp: str = Field(default="", max_length=200_000)


class IceCandidate(_Model):
    candidate: str = Field(max_length=2_000)
    sdpMid: str | None = Field(default=None, max_length=64)  # noqa: N815 - WebRTC's own field names
    sdpMLineIndex: int | None = Field(default=None, ge=0, le=255)  # noqa: N815
    usernameFragment: str | None = Field(default=None, max_length=256)  # noqa: N815


class Peer(_Model):
    peer_id: PeerId
    user_id: int
    display_name: str
    role: str


class IceServer(_Model):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class NoteOut(_Model):
    id: int
    consultation_id: int
    author_user_id: int
    author_name: str
    text: str
    created_at: str = Field(description="ISO 8601, UTC")
    client_id: str


class ConsultationOut(_Model):
    id: int
    status: str
    specialty: str
    urgency: str
    summary: str
    patient_name: str
    patient_age: int
    patient_sex: str
    facility_name: str
    requested_by_name: str
    specialist_name: str | None
    created_at: str


class SignalOut(_Model):
    name: str = Field(description="as the source named it, e.g. MLII, ii, PLETH")
    label: str = Field(description="as a clinician reads it, e.g. II, aVR")
    kind: str = Field(description="ecg, pleth, abp, resp or other")
    units: str
    gain: float = Field(description="digital units per physical unit")
    baseline: int = Field(description="digital value of physical zero")


class StreamOut(_Model):
    id: int
    consultation_id: int | None
    label: str
    sample_rate: float = Field(description="Hz")
    signals: list[SignalOut]
    started_at: str = Field(description="ISO 8601, UTC")
    active: bool
    next_sample: int = Field(description="samples stored so far per signal")


class VitalOut(_Model):
    id: int
    consultation_id: int | None
    kind: str = Field(description="hr, spo2, bp, rr or temp")
    value: float
    value2: float | None = Field(default=None, description="diastolic, for bp")
    unit: str = Field(description="UCUM: /min, %, mm[Hg], Cel")
    observed_at: str = Field(description="ISO 8601, UTC")
    source: str = Field(description="manual or device")
    recorded_by_name: str
    client_id: str


class SignalIn(_Model):
    name: str = Field(min_length=1, max_length=32)
    units: str = Field(min_length=1, max_length=16)
    gain: float = Field(gt=0, le=1e9)
    baseline: int = Field(ge=-(2**31), le=2**31 - 1)


class OfferOut(_Model):
    id: int
    consultation_id: int
    specialist_user_id: int
    specialist_name: str
    specialty: str
    hub_name: str
    status: str = Field(description="pending, accepted, declined, expired, taken or withdrawn")
    offered_at: str = Field(description="ISO 8601, UTC")
    deadline_at: str = Field(description="ISO 8601, UTC: the offer stops ringing then")
    handed_by_name: str | None = None


class PairingStatusOut(_Model):
    """A request's pairing as the requester and the hub's coordinators see it: no patient identity."""

    consultation_id: int
    state: str = Field(
        description="queued, offered, escalated (nobody left: the hub's coordinator is alerted), accepted, "
        "in_progress, completed, cancelled or expired"
    )
    urgency: str
    specialty: str
    facility_name: str
    created_at: str = Field(description="ISO 8601, UTC")
    waited_s: float = Field(description="from the request until it was accepted, or until now")
    queue_position: int | None = Field(description="1 = next for this specialty; None once no longer waiting")
    offers: list[OfferOut] = Field(description="ringing now")
    escalated_at: str | None = None
    specialist_name: str | None = None


class PresenceOut(_Model):
    user_id: int
    display_name: str
    hub_id: int
    specialty: str | None
    availability: str = Field(description="available, busy or away (the specialist's own toggle)")
    connected: bool
    in_consultation: bool
    on_call: bool


class StaffOut(_Model):
    presence: PresenceOut
    state: str = Field(description="available, or why no case would be offered now (not_on_call, offline, ...)")


# --- client -> server --------------------------------------------------------------------------------------


class RoomJoin(_Model):
    """Enter a consultation room. Joining again from a new connection replaces the old one (no ghosts)."""

    event: Literal["room.join"] = "room.join"
    consultation_id: int = Field(gt=0)


class RoomJoinAck(Ack):
    peer_id: PeerId | None = None
    status: str | None = None
    participants: list[Peer] = Field(default_factory=list, description="the others already in the room")
    ice_servers: list[IceServer] = Field(default_factory=list)
    notes: list[NoteOut] = Field(default_factory=list, description="every saved note, oldest first")
    streams: list[StreamOut] = Field(default_factory=list, description="the consultation's waveform streams")
    vitals: list[VitalOut] = Field(default_factory=list, description="the consultation's vital signs, oldest first")


class RoomLeave(_Model):
    event: Literal["room.leave"] = "room.leave"
    consultation_id: int = Field(gt=0)


class RtcSignal(_Model):
    """SDP or an ICE candidate for one peer in the same room (``candidate: null`` ends candidates)."""

    event: Literal["rtc.signal"] = "rtc.signal"
    consultation_id: int = Field(gt=0)
    to: PeerId = Field(min_length=1, max_length=64)
    description: SessionDescription | None = None
    candidate: IceCandidate | None = None

    @model_validator(mode="after")
    def _one_payload(self) -> RtcSignal:
        if self.description is not None and self.candidate is not None:
            raise ValueError("send either a description or a candidate, not both")
        return self


class NoteAdd(_Model):
    """Save a case note. ``client_id`` is chosen by the writer; a resend with the same id is not stored twice."""

    event: Literal["note.add"] = "note.add"
    consultation_id: int = Field(gt=0)
    text: str = Field(min_length=1)
    client_id: str = Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")


class NoteAddAck(Ack):
    note: NoteOut | None = None
    created: bool | None = Field(default=None, description="false when this client_id was already saved")


class StreamOpen(_Model):
    """A source (the device gateway, or an importer) opens a stream of monitor signals for a consultation.
    Opening again with the same ``source_key`` resumes the same stream: the ack says which frame and sample
    the store expects next, so the source drops what is already saved and resends the rest."""

    event: Literal["stream.open"] = "stream.open"
    consultation_id: int = Field(gt=0)
    source_key: str = Field(pattern=r"^[A-Za-z0-9_.:-]{8,64}$")
    label: str = Field(min_length=1, max_length=120)
    sample_rate: float = Field(gt=0, le=20_000)
    signals: list[SignalIn] = Field(min_length=1, max_length=64)


class StreamOpenAck(Ack):
    stream: StreamOut | None = None
    next_seq: int | None = Field(default=None, description="the first frame sequence number not yet stored")


class StreamFrame(_Model):
    """Binary: the event's only argument is one frame as bytes (docs/waveform-format.md), not JSON.
    Acked only once the frame is committed; a frame already stored is acked again with ``duplicate``."""

    event: Literal["stream.frame"] = "stream.frame"


class StreamFrameAck(Ack):
    seq: int | None = None
    duplicate: bool | None = None


class StreamClose(_Model):
    event: Literal["stream.close"] = "stream.close"
    stream_id: int = Field(gt=0)


class StreamBackfill(_Model):
    """The last ``seconds`` of every stream of the consultation, from the store, as frames (bytes)."""

    event: Literal["stream.backfill"] = "stream.backfill"
    consultation_id: int = Field(gt=0)
    seconds: float = Field(default=60, gt=0, le=600)


class StreamBackfillAck(Ack):
    streams: list[StreamOut] = Field(default_factory=list)
    frames: list[bytes] = Field(default_factory=list, description="one frame per stream, binary")


class VitalsAdd(_Model):
    """A vital-sign reading, typed in or from a device. ``client_id`` makes a resend harmless."""

    event: Literal["vitals.add"] = "vitals.add"
    consultation_id: int = Field(gt=0)
    kind: Literal["hr", "spo2", "bp", "rr", "temp"]
    value: float
    value2: float | None = None
    observed_at: str | None = Field(default=None, description="ISO 8601 with offset; default: now")
    client_id: str = Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")


class VitalsAddAck(Ack):
    vital: VitalOut | None = None
    created: bool | None = None


class PairingOffers(_Model):
    """What rings for me now (a specialist): asked after every (re)connect, so no offer is missed."""

    event: Literal["pairing.offers"] = "pairing.offers"


class PairingOffersAck(Ack):
    offers: list[OfferRing] = Field(default_factory=list)


class PairingAccept(_Model):
    """Take a request. Exactly one accept wins, across every server process; the others hear ``conflict``."""

    event: Literal["pairing.accept"] = "pairing.accept"
    consultation_id: int = Field(gt=0)


class PairingAcceptAck(Ack):
    consultation: ConsultationOut | None = None


class PairingDecline(_Model):
    event: Literal["pairing.decline"] = "pairing.decline"
    offer_id: int = Field(gt=0)
    reason: str = Field(min_length=1, max_length=500)


class PairingDeclineAck(Ack):
    offer: OfferOut | None = None


class PairingWatch(_Model):
    """The pairing status of one request (requester, the hub's coordinators)."""

    event: Literal["pairing.status"] = "pairing.status"
    consultation_id: int = Field(gt=0)


class PairingStatusAck(Ack):
    status: PairingStatusOut | None = None


class PairingRaise(_Model):
    """Raise a waiting request's urgency (never lower): ringing offers shorten, an emergency fans out."""

    event: Literal["pairing.raise"] = "pairing.raise"
    consultation_id: int = Field(gt=0)
    urgency: Literal["emergency", "urgent", "routine"]


class PairingHand(_Model):
    """A coordinator rings a named specialist for a waiting case."""

    event: Literal["pairing.hand"] = "pairing.hand"
    consultation_id: int = Field(gt=0)
    specialist_user_id: int = Field(gt=0)


class PairingHandAck(Ack):
    offer: OfferOut | None = None


class PairingQueue(_Model):
    """A coordinator's hub: waiting cases and its specialists. ``hub_id`` defaults to the coordinator's own."""

    event: Literal["pairing.queue"] = "pairing.queue"
    hub_id: int | None = Field(default=None, gt=0)


class PairingQueueAck(Ack):
    hub_id: int | None = None
    cases: list[PairingStatusOut] = Field(default_factory=list)
    staff: list[StaffOut] = Field(default_factory=list)


class PresenceSet(_Model):
    """A specialist's availability toggle; kept across reconnects and restarts."""

    event: Literal["presence.set"] = "presence.set"
    availability: Literal["available", "busy", "away"]


class PresenceSetAck(Ack):
    presence: PresenceOut | None = None


# --- server -> client --------------------------------------------------------------------------------------


class PeerJoined(_Model):
    event: Literal["room.peer_joined"] = "room.peer_joined"
    consultation_id: int
    peer: Peer


class PeerLeft(_Model):
    event: Literal["room.peer_left"] = "room.peer_left"
    consultation_id: int
    peer_id: PeerId


class RtcSignalIn(_Model):
    event: Literal["rtc.signal"] = "rtc.signal"
    consultation_id: int
    from_: PeerId = Field(alias="from", serialization_alias="from")
    description: SessionDescription | None = None
    candidate: IceCandidate | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class NoteAdded(_Model):
    event: Literal["note.added"] = "note.added"
    note: NoteOut


class ConsultationUpdated(_Model):
    """To the specialists of the specialty, the requesting facility, and the room."""

    event: Literal["consultation.updated"] = "consultation.updated"
    consultation: ConsultationOut


class RoomClosed(_Model):
    event: Literal["room.closed"] = "room.closed"
    consultation_id: int
    status: str


class RoomReplaced(_Model):
    """To a connection whose user joined the same room from another connection."""

    event: Literal["room.replaced"] = "room.replaced"
    consultation_id: int


class SessionExpired(_Model):
    event: Literal["session.expired"] = "session.expired"
    message: str


class StreamOpened(_Model):
    event: Literal["stream.opened"] = "stream.opened"
    stream: StreamOut


class StreamFrameIn(_Model):
    """Binary: one frame as bytes (docs/waveform-format.md), relayed as the source sent it, before it is
    committed. A viewer that misses some (reconnect, Redis restart) fills the gap with ``stream.backfill``."""

    event: Literal["stream.frame"] = "stream.frame"


class StreamClosed(_Model):
    event: Literal["stream.closed"] = "stream.closed"
    stream_id: int


class VitalsAdded(_Model):
    event: Literal["vitals.added"] = "vitals.added"
    vital: VitalOut


class HeartRateDerived(_Model):
    """Heart rate from R-peaks detected in the stream's first ECG lead (wfdb.processing XQRS)."""

    event: Literal["stream.heart_rate"] = "stream.heart_rate"
    stream_id: int
    bpm: float | None = Field(description="null when no beats were found in the window")
    lead: str
    window_s: float
    at_sample: int


class OfferRing(_Model):
    """An offer ringing for this specialist: the case summary to decide on, and the deadline."""

    offer: OfferOut
    consultation: ConsultationOut


class OfferClosed(_Model):
    """An offer stopped ringing: accepted, declined, expired (no answer), taken (by someone else) or withdrawn."""

    offer: OfferOut


class PairingStatusChanged(_Model):
    status: PairingStatusOut


class PresenceUpdated(_Model):
    presence: PresenceOut


# --- the conference room (multi-site teleconferences through the SFU) --------------------------------------------


class ConferenceSessionOut(_Model):
    id: int
    conference_id: int
    title: str
    purpose: str
    starts_at: str = Field(description="ISO 8601, UTC")
    ends_at: str = Field(description="ISO 8601, UTC")
    status: str = Field(description="open | closed")
    current_position: int | None = Field(description="the agenda case under discussion")
    media: bool = Field(description="video runs through the SFU on this server")


class ConferenceNoteOut(_Model):
    id: int
    session_id: int
    agenda_item_id: int
    author_user_id: int
    author_name: str
    text: str
    created_at: str = Field(description="ISO 8601, UTC")
    client_id: str


class ConferenceDecisionOut(_Model):
    session_id: int
    agenda_item_id: int
    recommendation: str
    icd10: str
    outcome: str = Field(description="manage_locally, further_investigation, transfer, review_again, other")
    version: int
    decided_by_user_id: int
    decided_by_name: str
    decided_at: str = Field(description="ISO 8601, UTC")


class ConferenceVitalOut(_Model):
    kind: str
    value: float
    value2: float | None = None
    unit: str
    observed_at: str


class ConferenceCaseOut(_Model):
    """One agenda case with the record summary shown while it is discussed (participants only)."""

    item_id: int
    position: int
    presenter_user_id: int
    presenter_name: str
    patient_id: int
    patient_name: str
    patient_age: int
    patient_sex: str
    consultation_id: int | None = None
    specialty: str | None = None
    urgency: str | None = None
    summary: str
    vitals: list[ConferenceVitalOut]
    notes: list[ConferenceNoteOut]
    decision: ConferenceDecisionOut | None = None


class ConferenceParticipantOut(_Model):
    user_id: int
    display_name: str
    facility_id: int
    facility_name: str


class ConferencePublisherOut(_Model):
    publisher_id: int = Field(description="the SFU's id of this participant's stream; subscribe with it")
    user_id: int
    display_name: str
    facility_name: str
    audio_only: bool


class LobbyOut(_Model):
    session_id: int
    user_id: int
    display_name: str
    facility_name: str
    role: str
    status: str = Field(description="waiting | admitted | refused")
    asked_at: str


class ConferenceStreamOut(_Model):
    mid: str
    publisher_id: int | None = None
    type: str = Field(description="audio | video | data")


class ConferenceEnter(_Model):
    conference_id: int = Field(gt=0)


class ConferenceEnterAck(Ack):
    entry: Literal["enter", "lobby", "closed"] | None = None
    session: ConferenceSessionOut | None = None
    is_host: bool = False
    opens_at: str | None = Field(default=None, description="when the next session's room opens (closed)")
    cases: list[ConferenceCaseOut] = Field(default_factory=list)
    participants: list[ConferenceParticipantOut] = Field(default_factory=list)
    publishers: list[ConferencePublisherOut] = Field(default_factory=list)
    lobby: list[LobbyOut] = Field(default_factory=list, description="the host's view of who waits")
    ice_servers: list[IceServer] = Field(default_factory=list)


class ConferenceSessionRef(_Model):
    session_id: int = Field(gt=0)


class ConferenceAdmit(_Model):
    session_id: int = Field(gt=0)
    user_id: int = Field(gt=0)
    admit: bool


class ConferenceAdmitAck(Ack):
    admission: LobbyOut | None = None


class ConferenceCase(_Model):
    session_id: int = Field(gt=0)
    position: int = Field(ge=1, le=1000)


class ConferenceNote(_Model):
    session_id: int = Field(gt=0)
    agenda_item_id: int = Field(gt=0)
    client_id: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=20_000)


class ConferenceNoteAck(Ack):
    note: ConferenceNoteOut | None = None


class ConferenceDecide(_Model):
    session_id: int = Field(gt=0)
    agenda_item_id: int = Field(gt=0)
    recommendation: str = Field(min_length=1, max_length=20_000)
    icd10: str = Field(min_length=1, max_length=16)
    outcome: str = Field(min_length=1, max_length=32)
    expected_version: int = Field(ge=0, description="the version the writer saw; 0 when there was none")


class ConferenceDecideAck(Ack):
    decision: ConferenceDecisionOut | None = None


class ConferencePublish(_Model):
    session_id: int = Field(gt=0)
    description: SessionDescription = Field(description="the site's offer: one audio and at most one video stream")
    audio_only: bool = False


class ConferencePublishAck(Ack):
    description: SessionDescription | None = None
    publisher_id: int | None = None


class ConferenceSubscribe(_Model):
    session_id: int = Field(gt=0)
    publisher_ids: list[int] = Field(min_length=1, max_length=100)


class ConferenceSubscribeAck(Ack):
    description: SessionDescription | None = Field(default=None, description="the SFU's offer; answer it")
    streams: list[ConferenceStreamOut] = Field(default_factory=list)
    subscription_id: int | None = None


class ConferenceStart(_Model):
    session_id: int = Field(gt=0)
    subscription_id: int = Field(gt=0)
    description: SessionDescription


class ConferenceLayer(_Model):
    session_id: int = Field(gt=0)
    subscription_id: int = Field(gt=0)
    mid: str = Field(min_length=1, max_length=16)
    substream: int = Field(ge=0, le=2, description="simulcast layer: 0 is the lightest")
    temporal: int = Field(default=2, ge=0, le=2)


class ConferenceEntered(_Model):
    session_id: int
    participant: ConferenceParticipantOut


class ConferenceLeft(_Model):
    session_id: int
    user_id: int
    facility_id: int


class ConferencePublished(_Model):
    session_id: int
    publisher: ConferencePublisherOut


class ConferenceUnpublished(_Model):
    session_id: int
    publisher_id: int


class ConferenceKnock(_Model):
    entry: LobbyOut


class ConferenceAdmission(_Model):
    entry: LobbyOut


class ConferenceCaseChanged(_Model):
    session_id: int
    position: int


class ConferenceNoteAdded(_Model):
    note: ConferenceNoteOut


class ConferenceDecided(_Model):
    decision: ConferenceDecisionOut


class ConferenceEnded(_Model):
    session_id: int


class NotificationOut(_Model):
    id: int
    kind: str
    text: str
    conference_id: int | None = None
    created_at: str


class NotificationNew(_Model):
    notification: NotificationOut


CLIENT_EVENTS: dict[str, tuple[type[_Model], type[Ack]]] = {
    "room.join": (RoomJoin, RoomJoinAck),
    "room.leave": (RoomLeave, Ack),
    "rtc.signal": (RtcSignal, Ack),
    "note.add": (NoteAdd, NoteAddAck),
    "stream.open": (StreamOpen, StreamOpenAck),
    "stream.frame": (StreamFrame, StreamFrameAck),
    "stream.close": (StreamClose, Ack),
    "stream.backfill": (StreamBackfill, StreamBackfillAck),
    "vitals.add": (VitalsAdd, VitalsAddAck),
    "pairing.offers": (PairingOffers, PairingOffersAck),
    "pairing.accept": (PairingAccept, PairingAcceptAck),
    "pairing.decline": (PairingDecline, PairingDeclineAck),
    "pairing.status": (PairingWatch, PairingStatusAck),
    "pairing.raise": (PairingRaise, PairingStatusAck),
    "pairing.hand": (PairingHand, PairingHandAck),
    "pairing.queue": (PairingQueue, PairingQueueAck),
    "presence.set": (PresenceSet, PresenceSetAck),
    "conference.enter": (ConferenceEnter, ConferenceEnterAck),
    "conference.leave": (ConferenceSessionRef, Ack),
    "conference.admit": (ConferenceAdmit, ConferenceAdmitAck),
    "conference.case": (ConferenceCase, Ack),
    "conference.note": (ConferenceNote, ConferenceNoteAck),
    "conference.decide": (ConferenceDecide, ConferenceDecideAck),
    "conference.end": (ConferenceSessionRef, Ack),
    "conference.publish": (ConferencePublish, ConferencePublishAck),
    "conference.unpublish": (ConferenceSessionRef, Ack),
    "conference.subscribe": (ConferenceSubscribe, ConferenceSubscribeAck),
    "conference.start": (ConferenceStart, Ack),
    "conference.layer": (ConferenceLayer, Ack),
}

# Events whose payload is one binary frame rather than a JSON object.
BINARY_EVENTS = frozenset({"stream.frame"})

SERVER_EVENTS: dict[str, type[_Model]] = {
    "room.peer_joined": PeerJoined,
    "room.peer_left": PeerLeft,
    "rtc.signal": RtcSignalIn,
    "note.added": NoteAdded,
    "consultation.updated": ConsultationUpdated,
    "room.closed": RoomClosed,
    "room.replaced": RoomReplaced,
    "session.expired": SessionExpired,
    "stream.opened": StreamOpened,
    "stream.frame": StreamFrameIn,
    "stream.closed": StreamClosed,
    "vitals.added": VitalsAdded,
    "stream.heart_rate": HeartRateDerived,
    "pairing.offer": OfferRing,
    "pairing.offer_closed": OfferClosed,
    "pairing.status": PairingStatusChanged,
    "pairing.escalated": PairingStatusChanged,
    "presence.updated": PresenceUpdated,
    "conference.entered": ConferenceEntered,
    "conference.left": ConferenceLeft,
    "conference.published": ConferencePublished,
    "conference.unpublished": ConferenceUnpublished,
    "conference.knock": ConferenceKnock,
    "conference.admission": ConferenceAdmission,
    "conference.case": ConferenceCaseChanged,
    "conference.note_added": ConferenceNoteAdded,
    "conference.decided": ConferenceDecided,
    "conference.ended": ConferenceEnded,
    "notification.new": NotificationNew,
}


def wire(model: _Model) -> dict[str, Any]:
    """The JSON payload of a server event: the model without its ``event`` tag, aliases applied."""
    return model.model_dump(mode="json", by_alias=True, exclude={"event"})


def error_ack(code: str, message: str) -> dict[str, Any]:
    return Ack(ok=False, error=ErrorBody(code=code, message=message)).model_dump(mode="json", exclude_none=True)


PairingOffersAck.model_rebuild()
