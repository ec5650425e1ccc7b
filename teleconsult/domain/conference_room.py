"""The live conference room: who is host, who is invited, case decisions and attendance. Pure: no clock, no I/O.

When the room opens and who walks straight in is ``teleconsult.domain.conference.may_enter``; this module adds
the roles behind it and the records a session leaves: one decision per reviewed case (recommendation, ICD-10
code, outcome) and the attendance of every person and site.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from teleconsult.domain.errors import ValidationFailed
from teleconsult.domain.people import Actor, Role

MAX_RECOMMENDATION_CHARS = 4000


class Outcome(StrEnum):
    """What the conference decided for the patient."""

    MANAGE_LOCALLY = "manage_locally"  # continue care at the presenting site with the advice given
    FURTHER_INVESTIGATION = "further_investigation"  # tests first, then review again
    TRANSFER = "transfer"  # transfer to a higher-level hospital
    REVIEW_AGAIN = "review_again"  # bring the case back to a later session
    OTHER = "other"


# ICD-10 (WHO) code: a letter (U is reserved for special purposes but valid), two digits or digit + letter,
# then an optional dot and up to four more characters (national extensions such as ICD-10-CM add them).
_ICD10 = re.compile(r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")


def normalise_icd10(code: str) -> str:
    """``i21.4`` → ``I21.4``; ``I214`` → ``I21.4``. Raises ValidationFailed on anything that is not a code."""
    text = code.strip().upper().replace(" ", "")
    if len(text) > 3 and "." not in text:
        text = f"{text[:3]}.{text[3:]}"
    if not _ICD10.fullmatch(text):
        raise ValidationFailed("not an ICD-10 code (e.g. I21.4)", field="icd10")
    return text


@dataclass(frozen=True, slots=True)
class Decision:
    recommendation: str
    icd10: str
    outcome: Outcome


def validate_decision(recommendation: str, icd10: str, outcome: str) -> Decision:
    text = recommendation.strip()
    if not text:
        raise ValidationFailed("the recommendation is empty", field="recommendation")
    if len(text) > MAX_RECOMMENDATION_CHARS:
        raise ValidationFailed(
            f"the recommendation is longer than {MAX_RECOMMENDATION_CHARS} characters", field="recommendation"
        )
    try:
        chosen = Outcome(outcome)
    except ValueError:
        raise ValidationFailed("unknown outcome", field="outcome") from None
    return Decision(text, normalise_icd10(icd10), chosen)


# -- roles ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoomRoles:
    """Who a conference belongs to, as far as the room is concerned."""

    organizer_user_id: int | None
    host_facility_id: int
    invited_user_ids: frozenset[int]
    invited_site_ids: frozenset[int]  # the host facility is always a site of its own conference


def is_host(actor: Actor, roles: RoomRoles) -> bool:
    """The organizer, a coordinator of the host facility, or an administrator runs the room: admits from the
    lobby, moves through the agenda, ends the session."""
    if actor.role is Role.ADMIN or actor.user_id == roles.organizer_user_id:
        return True
    return actor.role is Role.COORDINATOR and actor.facility_id == roles.host_facility_id


def is_invited(actor: Actor, roles: RoomRoles) -> bool:
    """Invited by name, or working at an invited site (sites join from their rooms with whoever is on duty)."""
    return actor.user_id in roles.invited_user_ids or actor.facility_id in roles.invited_site_ids


# -- attendance -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stay:
    user_id: int
    facility_id: int
    joined_at: datetime
    left_at: datetime | None  # None: still in the room


@dataclass(frozen=True, slots=True)
class Attendance:
    user_id: int
    facility_id: int
    first_joined: datetime
    last_left: datetime | None  # None: still in the room
    present: timedelta  # union of the stays, so two open tabs are not counted twice
    stays: int


def attendance(stays: Iterable[Stay], until: datetime) -> list[Attendance]:
    """One line per person and site they joined from, in order of first arrival. Open stays count up to
    ``until`` (now, or the session's close)."""
    grouped: dict[tuple[int, int], list[Stay]] = {}
    for stay in stays:
        grouped.setdefault((stay.user_id, stay.facility_id), []).append(stay)
    lines = []
    for (user_id, facility_id), group in grouped.items():
        still_in = any(s.left_at is None for s in group)
        lines.append(
            Attendance(
                user_id=user_id,
                facility_id=facility_id,
                first_joined=min(s.joined_at for s in group),
                last_left=None if still_in else max(s.left_at for s in group if s.left_at is not None),
                present=_union(group, until),
                stays=len(group),
            )
        )
    return sorted(lines, key=lambda a: (a.first_joined, a.user_id, a.facility_id))


def _union(stays: Sequence[Stay], until: datetime) -> timedelta:
    spans = sorted((s.joined_at, min(s.left_at or until, until)) for s in stays)
    total = timedelta(0)
    current_start: datetime | None = None
    current_end: datetime | None = None
    for start, end in spans:
        if end <= start:
            continue
        if current_end is None or start > current_end:
            if current_start is not None and current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_start is not None and current_end is not None:
        total += current_end - current_start
    return total
