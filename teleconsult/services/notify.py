"""How services tell the people concerned that something changed. Transports implement this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from teleconsult.domain.consultation import CaseNote, Consultation


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


class NullNotifier:
    """For the CLI and for services used without a live transport."""

    async def consultation_changed(self, card: RequestCard) -> None:
        return None

    async def note_added(self, note: CaseNote) -> None:
        return None
