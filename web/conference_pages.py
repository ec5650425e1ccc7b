"""Pages for teleconferences: the user's upcoming sessions with RSVP, invitation download and the private
calendar feed; the coordinator's responses per site. Authenticate -> call ConferenceService -> render or
redirect (POST-redirect-GET). Times in the display timezone. (Booking is in the JSON API for now.)"""

from __future__ import annotations

from aiohttp import web

from teleconsult.display import to_local
from teleconsult.domain.errors import DomainError
from teleconsult.services.conferences import ConferenceService
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
        {"sessions": rows, "feed_url": feed_url, "notice": _notice(request.query.get("notice"))},
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
