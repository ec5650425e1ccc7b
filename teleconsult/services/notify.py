"""How services tell the people concerned that something changed. Transports implement this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from teleconsult.domain.consultation import CaseNote, Consultation
from teleconsult.domain.vitals import VitalSign

if TYPE_CHECKING:
    from teleconsult.services.conferences import NotificationView
    from teleconsult.services.pairing import OfferView, PairingStatus
    from teleconsult.services.presence import PresenceView
    from teleconsult.services.waveforms import StreamInfo


@dataclass(frozen=True, slots=True)
class RequestCard:
    """What a specialist sees of a request before accepting: enough to decide, no identifiers."""

    consultation: Consultation
    patient_name: str
    patient_age: int
    patient_sex: str
    facility_name: str
    facility_level: str
    requested_by_name: str
    specialist_name: str | None


class Notifier(Protocol):
    async def consultation_changed(self, card: RequestCard) -> None: ...

    async def note_added(self, note: CaseNote) -> None: ...

    async def vital_added(self, vital: VitalSign) -> None: ...

    async def stream_opened(self, stream: StreamInfo) -> None: ...

    async def stream_closed(self, stream: StreamInfo) -> None: ...

    async def heart_rate_derived(self, stream: StreamInfo, bpm: float | None, lead: str, window_s: float) -> None: ...

    async def offer_made(self, offer: OfferView, card: RequestCard) -> None: ...

    async def offer_closed(self, offer: OfferView) -> None: ...

    async def pairing_changed(self, status: PairingStatus) -> None: ...

    async def pairing_escalated(self, status: PairingStatus) -> None: ...

    async def presence_changed(self, presence: PresenceView) -> None: ...

    async def conference_ended(self, session_id: int) -> None: ...

    async def notified(self, user_id: int, notification: NotificationView) -> None: ...


class NullNotifier:
    """For the CLI and for services used without a live transport."""

    async def consultation_changed(self, card: RequestCard) -> None:
        return None

    async def note_added(self, note: CaseNote) -> None:
        return None

    async def vital_added(self, vital: VitalSign) -> None:
        return None

    async def stream_opened(self, stream: StreamInfo) -> None:
        return None

    async def stream_closed(self, stream: StreamInfo) -> None:
        return None

    async def heart_rate_derived(self, stream: StreamInfo, bpm: float | None, lead: str, window_s: float) -> None:
        return None

    async def offer_made(self, offer: OfferView, card: RequestCard) -> None:
        return None

    async def offer_closed(self, offer: OfferView) -> None:
        return None

    async def pairing_changed(self, status: PairingStatus) -> None:
        return None

    async def pairing_escalated(self, status: PairingStatus) -> None:
        return None

    async def presence_changed(self, presence: PresenceView) -> None:
        return None

    async def conference_ended(self, session_id: int) -> None:
        return None

    async def notified(self, user_id: int, notification: NotificationView) -> None:
        return None
