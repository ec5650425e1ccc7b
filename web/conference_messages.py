"""The booking form's errors in the user's language.

The domain's messages are English and stay so in ``error.message`` (scripts and logs read them); the booking
endpoints add ``error.display``, the same refusal through gettext, which the form shows next to the field.
Messages are matched by pattern; one this table does not know gets its field's general sentence with the
original message after it, so nothing the server said is lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from teleconsult.domain.errors import DomainError
from web.i18n import _

Render = Callable[[re.Match[str]], str]

_MESSAGES: list[tuple[re.Pattern[str], Render]] = [
    (re.compile(r"give the conference a title"), lambda m: _("Give the teleconference a title.")),
    (
        re.compile(r"the title may have at most (\d+) characters"),
        lambda m: _("The title may have at most %(count)s characters.", count=m[1]),
    ),
    (re.compile(r"a conference must end after it starts"), lambda m: _("The end time must be after the start time.")),
    (
        re.compile(r"a conference may last at most ([\d.]+) hours"),
        lambda m: _("A session may last at most %(hours)s hours.", hours=m[1]),
    ),
    (re.compile(r"invite at least one site or one person"), lambda m: _("Invite at least one site or one person.")),
    (
        re.compile(r"at most (\d+) sites may be invited"),
        lambda m: _("At most %(count)s sites may be invited.", count=m[1]),
    ),
    (
        re.compile(r"at most (\d+) people may be invited"),
        lambda m: _("At most %(count)s people may be invited.", count=m[1]),
    ),
    (
        re.compile(r"an agenda may have at most (\d+) cases"),
        lambda m: _("The agenda may have at most %(count)s cases.", count=m[1]),
    ),
    (
        re.compile(r"case (\d+) names no patient or consultation"),
        lambda m: _("Case %(number)s names no patient or consultation.", number=m[1]),
    ),
    (
        re.compile(r"case (\d+) is already on the agenda"),
        lambda m: _("Case %(number)s is already on the agenda.", number=m[1]),
    ),
    (
        re.compile(r"the presenter of case (\d+) is not among the invited people"),
        lambda m: _("The presenter of case %(number)s must be among the invited people.", number=m[1]),
    ),
    (
        re.compile(r"case (\d+): no such consultation for that patient"),
        lambda m: _("Case %(number)s: this consultation does not belong to that patient.", number=m[1]),
    ),
    (
        re.compile(r"case (\d+): no such patient"),
        lambda m: _("Case %(number)s: the patient was not found.", number=m[1]),
    ),
    (re.compile(r"an invited site does not exist"), lambda m: _("One of the chosen sites no longer exists.")),
    (
        re.compile(r"an invited person does not exist or is inactive"),
        lambda m: _("One of the invited people no longer has an active account."),
    ),
    (
        re.compile(r"calendar invitations leave the hospital: .*"),
        lambda m: _(
            "Calendar invitations leave the hospital: do not name the patient in the title; describe the case "
            "instead (for example: cardiology, 62-year-old man)."
        ),
    ),
    (
        re.compile(r"the first session \((.+), (\w\w)\) is not one of the rule's days"),
        lambda m: _("The first session (%(day)s) must fall on one of the chosen weekdays.", day=m[1]),
    ),
    (
        re.compile(r"the rule gives more than (\d+) sessions; shorten it"),
        lambda m: _("The repetition gives more than %(count)s sessions; shorten it.", count=m[1]),
    ),
    (
        re.compile(r"the recurrence rule ends before the first session"),
        lambda m: _("The repetition ends before the first session."),
    ),
    (re.compile(r"this conference was cancelled"), lambda m: _("This teleconference was cancelled.")),
    (
        re.compile(r"only coordinators book teleconferences"),
        lambda m: _("Only coordinators and administrators book teleconferences."),
    ),
    (
        re.compile(r"only the conference's coordinators may do this"),
        lambda m: _("Only the coordinators of this teleconference may change it."),
    ),
    (re.compile(r"no such conference"), lambda m: _("This teleconference was not found.")),
    (
        re.compile(r"a citizen ID \(CCCD\) has exactly 12 digits"),
        lambda m: _("A citizen ID (CCCD) has exactly 12 digits."),
    ),
    (
        re.compile(r"type at least 2 letters of the name, or the 12-digit CCCD"),
        lambda m: _("Type at least 2 letters of the name, or the 12-digit CCCD."),
    ),
]


def _field_sentence(field: str | None) -> str:
    root = (field or "").split(".")[0]
    sentences = {
        "title": _("Check the title."),
        "summary": _("Check the title."),
        "purpose": _("Choose the purpose."),
        "day": _("Choose a valid date."),
        "start": _("Check the start time."),
        "end": _("Check the end time."),
        "rrule": _("Check the repetition."),
        "host_facility_id": _("Choose the host facility."),
        "invited_site_ids": _("Check the invited sites."),
        "invited_user_ids": _("Check the invited people."),
        "agenda": _("Check the cases on the agenda."),
        "role": _("Choose a role from the list."),
        "q": _("Check the search text."),
    }
    return sentences.get(root, _("The request was not accepted."))


def localized(exc: DomainError) -> str:
    """The refusal in the current request's language."""
    for pattern, render in _MESSAGES:
        found = pattern.fullmatch(exc.message)
        if found:
            return render(found)
    return f"{_field_sentence(exc.field)} ({exc.message})"
