"""Pages for teleconferences: the user's upcoming sessions with RSVP, invitation download and the private
calendar feed; the coordinator's responses per site; the booking form (new and edit). Authenticate -> call
ConferenceService -> render or redirect (POST-redirect-GET). Times in the display timezone.

The booking form is one page driven by static/js/conference-book.js: it asks /api/v1/conferences/check for
warnings first, then books (POST) or saves (PUT) through the JSON API, which decides everything."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from teleconsult.display import to_local
from teleconsult.domain.conference import Purpose
from teleconsult.domain.errors import DomainError
from teleconsult.domain.people import Actor, Facility, FacilityLevel, Role
from teleconsult.services.conferences import BookingForm, ConferenceService
from web.conference_api import case_json, person_json
from web.i18n import _
from web.keys import SERVICES, SETTINGS
from web.pages import _auth, _int, _render, error_page
from web.security import client_source

routes = web.RouteTableDef()


def _conferences(request: web.Request) -> ConferenceService:
    service: ConferenceService = request.app[SERVICES].conferences
    return service


def rsvp_label(value: str | None) -> str:
    labels = {
        "needs_action": _("Not answered"),
        "accepted": _("Attending"),
        "declined": _("Not attending"),
        "tentative": _("Maybe"),
    }
    return labels.get(value or "", _("Organizer"))


def _notice(code: str | None) -> str | None:
    return {
        "booked": _("The teleconference has been booked; the invitations are ready."),
        "saved": _("The changes have been saved; the invitations have been updated."),
        "rsvp": _("Your answer has been saved."),
        "feed_revoked": _("The calendar feed address no longer works."),
    }.get(code or "")


@routes.get("/conferences")
async def conferences_page(request: web.Request, feed_url: str | None = None) -> web.Response:
    auth = _auth(request)
    tz = request.app[SETTINGS].display_timezone
    sessions = await _conferences(request).upcoming(auth.actor, days=60)
    rows = [
        {
            "id": s.conference_id,
            "title": s.title,
            "day": to_local(s.starts_at, tz).date(),
            "start": to_local(s.starts_at, tz).strftime("%H:%M"),
            "end": to_local(s.ends_at, tz).strftime("%H:%M"),
            "rsvp": s.rsvp.value if s.rsvp else None,
            "rsvp_label": rsvp_label(s.rsvp.value if s.rsvp else None),
        }
        for s in sessions
    ]
    return await _render(
        request,
        "conferences.html",
        {
            "sessions": rows,
            "feed_url": feed_url,
            "notice": _notice(request.query.get("notice")),
            "may_book": auth.actor.role in (Role.COORDINATOR, Role.ADMIN),
        },
    )


@routes.post("/conferences/{conference_id}/rsvp")
async def conference_rsvp(request: web.Request) -> web.Response:
    auth = _auth(request)
    form = await request.post()
    try:
        await _conferences(request).rsvp(
            auth.actor,
            _int(request.match_info["conference_id"]),
            str(form.get("answer", "")),
            source=client_source(request),
        )
    except DomainError as exc:
        return await error_page(request, exc)
    raise web.HTTPSeeOther("/conferences?notice=rsvp")


@routes.post("/conferences/feed")
async def feed_issue(request: web.Request) -> web.Response:
    """Shown once: only the token's hash is kept, so a lost address is replaced, not looked up."""
    auth = _auth(request)
    token = await _conferences(request).issue_feed_token(auth.actor, source=client_source(request))
    url = str(request.url.with_path(f"/calendar/{token}.ics").with_query(None))
    return await conferences_page(request, feed_url=url)


@routes.post("/conferences/feed/revoke")
async def feed_revoke(request: web.Request) -> web.Response:
    auth = _auth(request)
    await _conferences(request).revoke_feed_token(auth.actor, source=client_source(request))
    raise web.HTTPSeeOther("/conferences?notice=feed_revoked")


@routes.get("/conferences/{conference_id}/responses")
async def responses_page(request: web.Request) -> web.Response:
    auth = _auth(request)
    conference_id = _int(request.match_info["conference_id"])
    try:
        conference = await _conferences(request).get(auth.actor, conference_id)
        sites = await _conferences(request).responses(auth.actor, conference_id, source=client_source(request))
    except DomainError as exc:
        return await error_page(request, exc)
    tz = request.app[SETTINGS].display_timezone
    groups = [
        {
            "name": s.facility_name,
            "invitees": [
                {"name": i.display_name, "rsvp": i.rsvp.value, "label": rsvp_label(i.rsvp.value)} for i in s.invitees
            ],
        }
        for s in sites
    ]
    return await _render(
        request,
        "conference_responses.html",
        {
            "conference": conference,
            "starts": to_local(conference.starts_at, tz),
            "sites": groups,
        },
    )


# -- the booking form -------------------------------------------------------------------------------------------


def purpose_label(value: str) -> str:
    labels = {
        "case_review": _("Case review"),
        "mdt": _("Multidisciplinary team meeting (MDT)"),
        "training": _("Training"),
        "other": _("Other"),
    }
    return labels.get(value, value)


def _site_groups(sites: list[Facility]) -> list[dict[str, Any]]:
    """Facilities grouped by level, central hospitals first, as the form lists them."""
    return [
        {"level": level.value, "sites": [s for s in sites if s.level is level]}
        for level in FacilityLevel
        if any(s.level is level for s in sites)
    ]


def _new_state(actor: Actor) -> dict[str, Any]:
    organizer = {"id": actor.user_id, "display_name": actor.display_name, "role": actor.role.value}
    return {"conference_id": None, "organizer": organizer, "people": [], "agenda": []}


def _edit_state(form: BookingForm, tz: str) -> dict[str, Any]:
    c = form.conference
    people = {p.user_id: person_json(p) for p in form.people}
    invited = {i.user_id for i in c.invitees}
    starts, ends = to_local(c.starts_at, tz), to_local(c.ends_at, tz)
    return {
        "conference_id": c.id,
        "title": c.title,
        "purpose": c.purpose.value,
        "day": starts.date().isoformat(),
        "start": starts.strftime("%H:%M"),
        "end": ends.strftime("%H:%M"),
        "rrule": c.rrule,
        "host_facility_id": c.host_facility_id,
        "invited_site_ids": list(c.site_ids),
        "organizer": people.get(c.organizer_user_id or 0),
        "people": [people[i] for i in people if i in invited],
        "agenda": [
            {
                "patient_id": item.patient_id,
                "consultation_id": item.consultation_id,
                "presenter_user_id": item.presenter_user_id,
                "case": case_json(case) if case else None,
            }
            for item, case in zip(c.agenda, form.cases, strict=True)
        ],
    }


async def _book_page(request: web.Request, actor: Actor, state: dict[str, Any]) -> web.Response:
    service = _conferences(request)
    sites = await service.booking_sites(actor, source=client_source(request))
    settings = request.app[SETTINGS]
    context = {
        "state": state,
        "editing": state["conference_id"] is not None,
        "purposes": [(p.value, purpose_label(p.value)) for p in Purpose],
        "hosts": [s for s in sites if s.level is FacilityLevel.CENTRAL],
        "site_groups": _site_groups(sites),
        "roles": [r.value for r in Role],
        "max_hours": settings.conference_max_duration_h,
        "max_sessions": settings.conference_max_occurrences,
    }
    return await _render(request, "conference_book.html", context)


@routes.get("/conferences/new")
async def book_page(request: web.Request) -> web.Response:
    """Coordinators and administrators only; the service refuses anyone else (403 page, audited)."""
    auth = _auth(request)
    try:
        return await _book_page(request, auth.actor, _new_state(auth.actor))
    except DomainError as exc:
        return await error_page(request, exc)


@routes.get("/conferences/{conference_id}/edit")
async def edit_page(request: web.Request) -> web.Response:
    auth = _auth(request)
    conference_id = _int(request.match_info["conference_id"])
    try:
        form = await _conferences(request).booking_form(auth.actor, conference_id, source=client_source(request))
        state = _edit_state(form, request.app[SETTINGS].display_timezone)
        return await _book_page(request, auth.actor, state)
    except DomainError as exc:
        return await error_page(request, exc)
