"""Who may do what. Pure functions over the actor and the facts about the thing they reach for.

Services call these before every read and write; transports never decide.
"""

from __future__ import annotations

from collections.abc import Iterable

from teleconsult.domain.consultation import ACTIVE_STATUSES, OPEN_STATUSES, Consultation, Status
from teleconsult.domain.people import Actor, Role


def can_register_patient(actor: Actor) -> bool:
    return actor.role in (Role.CLINICIAN, Role.ADMIN)


def can_search_patients(actor: Actor) -> bool:
    return actor.role in (Role.CLINICIAN, Role.ADMIN)


def can_request_consultation(actor: Actor) -> bool:
    return actor.role is Role.CLINICIAN


def can_view_record(
    actor: Actor,
    *,
    registered_by_facility_id: int,
    requesting_facility_ids: Iterable[int],
    specialist_ids: Iterable[int],
    participant_ids: Iterable[int],
) -> bool:
    """A clinician of a facility that registered or consulted on the patient, a specialist who took
    part in one of the patient's consultations, or an admin."""
    if actor.role is Role.ADMIN:
        return True
    if actor.role is Role.CLINICIAN:
        return actor.facility_id == registered_by_facility_id or actor.facility_id in set(requesting_facility_ids)
    if actor.role is Role.SPECIALIST:
        return actor.user_id in set(specialist_ids) or actor.user_id in set(participant_ids)
    return False


def is_eligible_specialist(actor: Actor, consultation: Consultation) -> bool:
    """A specialist of the requested specialty: may take the request while it is open."""
    return actor.role is Role.SPECIALIST and actor.specialty == consultation.specialty


def can_accept(actor: Actor, consultation: Consultation) -> bool:
    return (
        actor.role is Role.SPECIALIST
        and actor.specialty == consultation.specialty
        and consultation.status in OPEN_STATUSES
    )


def can_see_request(actor: Actor, consultation: Consultation) -> bool:
    """The case summary of an open request is shown to the specialists who could take it."""
    if actor.role is Role.SPECIALIST:
        return actor.specialty == consultation.specialty or actor.user_id == consultation.specialist_user_id
    if actor.role is Role.CLINICIAN:
        return actor.facility_id == consultation.requesting_facility_id
    return actor.role is Role.ADMIN


def can_join_room(actor: Actor, consultation: Consultation) -> bool:
    """The requesting facility's clinicians (they wait in the room for the specialist) and the specialist
    who accepted. The room is open only while the consultation is active."""
    if consultation.status not in ACTIVE_STATUSES:
        return False
    if actor.role is Role.CLINICIAN:
        return actor.facility_id == consultation.requesting_facility_id
    if actor.role is Role.SPECIALIST:
        return consultation.specialist_user_id == actor.user_id and consultation.status in (
            Status.ACCEPTED,
            Status.IN_PROGRESS,
        )
    return False


def can_write_note(actor: Actor, consultation: Consultation) -> bool:
    return can_join_room(actor, consultation)


def can_close(actor: Actor, consultation: Consultation) -> bool:
    return actor.role is Role.SPECIALIST and consultation.specialist_user_id == actor.user_id


def can_cancel(actor: Actor, consultation: Consultation) -> bool:
    return actor.role is Role.CLINICIAN and actor.facility_id == consultation.requesting_facility_id


def can_stream_signals(actor: Actor, consultation: Consultation) -> bool:
    """A monitor gateway signs in as a clinician of the requesting facility; the bedside is theirs."""
    return (
        actor.role is Role.CLINICIAN
        and actor.facility_id == consultation.requesting_facility_id
        and consultation.status in ACTIVE_STATUSES
    )
