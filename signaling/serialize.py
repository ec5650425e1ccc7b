"""Domain and service objects as the protocol's models (signaling/events.py): one place, so the socket.io
events and the HTTP API say the same thing."""

from __future__ import annotations

from signaling import events as ev
from teleconsult.domain.consultation import CaseNote
from teleconsult.domain.pairing import Candidate
from teleconsult.domain.signals import describe
from teleconsult.domain.vitals import VitalSign
from teleconsult.services.notify import RequestCard
from teleconsult.services.pairing import OfferView, PairingStatus
from teleconsult.services.presence import PresenceView
from teleconsult.services.waveforms import StreamInfo


def note_out(note: CaseNote) -> ev.NoteOut:
    return ev.NoteOut(
        id=note.id,
        consultation_id=note.consultation_id,
        author_user_id=note.author_user_id,
        author_name=note.author_name,
        text=note.text,
        created_at=note.created_at.isoformat(),
        client_id=note.client_id,
    )


def stream_out(stream: StreamInfo) -> ev.StreamOut:
    signals = []
    for s in stream.signals:
        info = describe(s.name)
        signals.append(
            ev.SignalOut(
                name=s.name, label=info.label, kind=info.kind.value, units=s.units, gain=s.gain, baseline=s.baseline
            )
        )
    return ev.StreamOut(
        id=stream.id,
        consultation_id=stream.consultation_id,
        label=stream.label,
        sample_rate=stream.sample_rate,
        signals=signals,
        started_at=stream.started_at.isoformat(),
        active=stream.ended_at is None,
        next_sample=stream.next_sample,
    )


def vital_out(vital: VitalSign) -> ev.VitalOut:
    return ev.VitalOut(
        id=vital.id,
        consultation_id=vital.consultation_id,
        kind=vital.kind.value,
        value=vital.value,
        value2=vital.value2,
        unit=vital.unit,
        observed_at=vital.observed_at.isoformat(),
        source=vital.source.value,
        recorded_by_name=vital.recorded_by_name,
        client_id=vital.client_id,
    )


def offer_out(offer: OfferView) -> ev.OfferOut:
    return ev.OfferOut(
        id=offer.id,
        consultation_id=offer.consultation_id,
        specialist_user_id=offer.specialist_user_id,
        specialist_name=offer.specialist_name,
        specialty=offer.specialty,
        hub_name=offer.hub_name,
        status=offer.status.value,
        offered_at=offer.offered_at.isoformat(),
        deadline_at=offer.deadline_at.isoformat(),
        handed_by_name=offer.handed_by_name,
    )


def status_out(status: PairingStatus) -> ev.PairingStatusOut:
    return ev.PairingStatusOut(
        consultation_id=status.consultation_id,
        state=status.state,
        urgency=status.urgency.value,
        specialty=status.specialty,
        facility_name=status.facility_name,
        created_at=status.created_at.isoformat(),
        waited_s=round(status.waited_s, 1),
        queue_position=status.queue_position,
        offers=[offer_out(o) for o in status.offers],
        escalated_at=status.escalated_at.isoformat() if status.escalated_at else None,
        specialist_name=status.specialist_name,
    )


def presence_out(view: PresenceView) -> ev.PresenceOut:
    return ev.PresenceOut(
        user_id=view.user_id,
        display_name=view.display_name,
        hub_id=view.hub_id,
        specialty=view.specialty,
        availability=view.availability.value,
        connected=view.connected,
        in_consultation=view.in_consultation,
        on_call=view.on_call,
    )


def candidate_presence(c: Candidate) -> PresenceView:
    return PresenceView(
        user_id=c.user_id,
        display_name=c.display_name,
        hub_id=c.hub_id,
        specialty=c.specialty,
        availability=c.availability,
        connected=c.connected,
        in_consultation=c.in_consultation,
        on_call=c.on_call,
    )


def consultation_out(card: RequestCard) -> ev.ConsultationOut:
    c = card.consultation
    return ev.ConsultationOut(
        id=c.id,
        status=c.status.value,
        specialty=c.specialty,
        urgency=c.urgency.value,
        summary=c.summary,
        patient_name=card.patient_name,
        patient_age=card.patient_age,
        patient_sex=card.patient_sex,
        facility_name=card.facility_name,
        requested_by_name=card.requested_by_name,
        specialist_name=card.specialist_name,
        created_at=c.created_at.isoformat(),
    )
