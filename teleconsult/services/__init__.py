"""Use cases. The only layer that opens transactions, decides authorization and writes audit events."""

from __future__ import annotations

from dataclasses import dataclass

from teleconsult.clock import Clock
from teleconsult.services.auth import AuthService
from teleconsult.services.conference_room import ConferenceRoomService
from teleconsult.services.conferences import ConferenceService
from teleconsult.services.consultations import ConsultationService
from teleconsult.services.directory import DirectoryService
from teleconsult.services.fhir import FhirService
from teleconsult.services.metrics import Metrics
from teleconsult.services.network import NetworkService
from teleconsult.services.notify import Notifier, NullNotifier
from teleconsult.services.pairing import PairingService
from teleconsult.services.patients import PatientService
from teleconsult.services.presence import PresenceService
from teleconsult.services.vitals import VitalsService
from teleconsult.services.waveforms import WaveformService
from teleconsult.settings import Settings
from teleconsult.storage.db import Database


@dataclass
class Services:
    settings: Settings
    db: Database
    clock: Clock
    auth: AuthService
    directory: DirectoryService
    patients: PatientService
    consultations: ConsultationService
    fhir: FhirService
    vitals: VitalsService
    waveforms: WaveformService
    presence: PresenceService
    pairing: PairingService
    network: NetworkService
    metrics: Metrics
    conferences: ConferenceService
    conference_room: ConferenceRoomService

    def set_notifier(self, notifier: Notifier) -> None:
        self.consultations.notifier = notifier
        self.pairing.notifier = notifier
        self.vitals.notifier = notifier
        self.waveforms.notifier = notifier
        self.conference_room.notifier = notifier
        self.conferences.notifier = notifier


def build_services(settings: Settings, db: Database, clock: Clock, notifier: Notifier | None = None) -> Services:
    notifier = notifier or NullNotifier()
    metrics = Metrics()
    consultations = ConsultationService(db, clock, settings, notifier)
    pairing = PairingService(db, clock, settings, notifier, consultations, metrics)
    consultations.pairing = pairing
    return Services(
        settings=settings,
        db=db,
        clock=clock,
        auth=AuthService(db, clock, settings),
        directory=DirectoryService(db, clock),
        patients=PatientService(db, clock, settings),
        consultations=consultations,
        fhir=FhirService(db, clock, settings),
        vitals=VitalsService(db, clock, settings, notifier),
        waveforms=WaveformService(db, clock, settings, notifier),
        presence=PresenceService(db, clock, settings),
        pairing=pairing,
        network=NetworkService(db, clock, settings),
        metrics=metrics,
        conferences=ConferenceService(db, clock, settings),
        conference_room=ConferenceRoomService(db, clock, settings, notifier),
    )
