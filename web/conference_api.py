"""Teleconferences over HTTP: the JSON API (/api/v1/conferences, calendar feed token, notifications), the
invitation download for a signed-in invitee, and the private calendar feed a calendar app subscribes to
(no session: the secret token in the URL is the credential; a wrong or revoked one is a bare 404)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from teleconsult.display import to_local
from teleconsult.domain.conference import AgendaItem, BookingDraft, Purpose, ScheduleConflict
from teleconsult.domain.errors import DomainError, NotFound, PermissionDenied, Unauthenticated
from teleconsult.services.conferences import (
    CaseChoice,
    ConferenceService,
    ConferenceView,
    ConflictNote,
    Invitee,
    PersonChoice,
)
from web.api import _STATUS, _actor_session, _body, _In
from web.conference_messages import localized
from web.keys import SERVICES
from web.security import client_source

routes = web.RouteTableDef()
ICS_TYPE = "text/calendar"


class AgendaIn(_In):
    presenter_user_id: int = Field(gt=0)
    patient_id: int | None = Field(default=None, gt=0)
    consultation_id: int | None = Field(default=None, gt=0)


class BookingIn(_In):
    title: str = Field(max_length=400)
    purpose: Purpose
    day: date  # local, in the booking's zone
    start: time
    end: time
    host_facility_id: int = Field(gt=0)
    invited_site_ids: list[int] = Field(default_factory=list, max_length=500)
    invited_user_ids: list[int] = Field(default_factory=list, max_length=1000)
    agenda: list[AgendaIn] = Field(default_factory=list, max_length=200)
    rrule: str | None = Field(default=None, max_length=200)


class CancelIn(_In):
    recurrence_id: datetime | None = None  # the session's original local start, e.g. 2026-12-08T14:00:00


class MoveIn(_In):
    recurrence_id: datetime  # the session's original local start
    day: date  # where it goes, local
    start: time
    end: time


class ReadIn(_In):
    ids: list[int] = Field(min_length=1, max_length=100)


class RsvpIn(_In):
    answer: Literal["accepted", "declined", "tentative"]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _for_the_form(handler: Handler) -> Handler:
    """Refusals of the booking endpoints also carry ``display``: the message in the user's language."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except DomainError as exc:
            body: dict[str, Any] = {"code": exc.code, "message": exc.message, "display": localized(exc)}
            if exc.field:
                body["field"] = exc.field
            return web.json_response({"error": body}, status=_STATUS.get(type(exc), 400))

    return wrapped


def _conferences(request: web.Request) -> ConferenceService:
    service: ConferenceService = request.app[SERVICES].conferences
    return service


def _conference_id(request: web.Request) -> int:
    try:
        return int(request.match_info["conference_id"])
    except ValueError:
        raise NotFound("no such conference") from None


def _draft(body: BookingIn, tz: str) -> BookingDraft:
    return BookingDraft(
        title=body.title,
        purpose=body.purpose,
        day=body.day,
        start=body.start,
        end=body.end,
        host_facility_id=body.host_facility_id,
        invited_site_ids=tuple(body.invited_site_ids),
        invited_user_ids=tuple(body.invited_user_ids),
        agenda=tuple(AgendaItem(a.presenter_user_id, a.patient_id, a.consultation_id) for a in body.agenda),
        rrule=body.rrule,
        tz=tz,
    )


def _invitee(i: Invitee) -> dict[str, Any]:
    return {
        "user_id": i.user_id,
        "display_name": i.display_name,
        "facility_id": i.facility_id,
        "rsvp": i.rsvp.value,
        "responded_at": i.responded_at.isoformat() if i.responded_at else None,
    }


def _conference(c: ConferenceView) -> dict[str, Any]:
    return {
        "id": c.id,
        "uid": c.uid,
        "title": c.title,
        "purpose": c.purpose.value,
        "host_facility_id": c.host_facility_id,
        "organizer_user_id": c.organizer_user_id,
        "starts_at": c.starts_at.isoformat(),
        "ends_at": c.ends_at.isoformat(),
        "tz": c.tz,
        "rrule": c.rrule,
        "sequence": c.sequence,
        "status": c.status,
        "site_ids": list(c.site_ids),
        "invitees": [_invitee(i) for i in c.invitees],
        "agenda": [
            {"presenter_user_id": a.presenter_user_id, "patient_id": a.patient_id, "consultation_id": a.consultation_id}
            for a in c.agenda
        ],
    }


def _warning(w: ScheduleConflict) -> dict[str, Any]:
    return {
        "kind": w.kind.value,
        "recurrence_id": w.recurrence_id.isoformat(),
        "starts_at": w.starts_at.isoformat(),
        "user_id": w.user_id,
        "site_id": w.site_id,
        "other_conference_id": w.other_booking_id,
    }


def _note(n: ConflictNote, tz: str) -> dict[str, Any]:
    """A warning the form can show as it is: names, and the session's local start (naive, in ``tz``)."""
    return {
        **_warning(n.conflict),
        "person_name": n.person_name,
        "site_name": n.site_name,
        "other_title": n.other_title,
        "local_start": to_local(n.conflict.starts_at, tz).strftime("%Y-%m-%dT%H:%M"),
    }


def person_json(p: PersonChoice) -> dict[str, Any]:
    return {
        "id": p.user_id,
        "display_name": p.display_name,
        "role": p.role.value,
        "specialty": p.specialty,
        "facility_id": p.facility_id,
        "facility_name": p.facility_name,
    }


def case_json(c: CaseChoice) -> dict[str, Any]:
    return {
        "patient_id": c.patient_id,
        "patient_name": c.patient_name,
        "age": c.age,
        "sex": c.sex,
        "consultations": [
            {"id": k.id, "specialty": k.specialty, "status": k.status, "created_at": k.created_at.isoformat()}
            for k in c.consultations
        ],
    }


async def _check(request: web.Request, conference_id: int | None) -> web.Response:
    auth = _actor_session(request)
    body = await _body(request, BookingIn)
    tz = request.app[SERVICES].settings.display_timezone
    service, source = _conferences(request), client_source(request)
    warnings = await service.check(auth.actor, _draft(body, tz), conference_id=conference_id, source=source)
    notes = await service.explain(auth.actor, warnings, source=source)
    return web.json_response({"warnings": [_note(n, tz) for n in notes]})


@routes.post("/api/v1/conferences/check")
@_for_the_form
async def conference_check(request: web.Request) -> web.StreamResponse:
    """The warnings a booking would give, before booking; nothing is saved."""
    return await _check(request, None)


@routes.post("/api/v1/conferences/{conference_id}/check")
@_for_the_form
async def conference_check_edit(request: web.Request) -> web.StreamResponse:
    """The warnings saving these details over the conference would give (its own sessions are not counted)."""
    return await _check(request, _conference_id(request))


@routes.get("/api/v1/directory/people")
@_for_the_form
async def directory_people(request: web.Request) -> web.StreamResponse:
    """Staff to invite, by name (diacritics optional), role and specialty; for those who book."""
    auth = _actor_session(request)
    query = request.query
    people = await _conferences(request).find_people(
        auth.actor,
        query.get("q", ""),
        role=query.get("role") or None,
        specialty=query.get("specialty") or None,
        source=client_source(request),
    )
    return web.json_response({"people": [person_json(p) for p in people]})


@routes.get("/api/v1/conferences/agenda/cases")
@_for_the_form
async def agenda_cases(request: web.Request) -> web.StreamResponse:
    """Patients (by name or CCCD) and their latest consultations, for the agenda; for those who book."""
    auth = _actor_session(request)
    cases = await _conferences(request).find_cases(
        auth.actor, request.query.get("q", ""), source=client_source(request)
    )
    return web.json_response({"cases": [case_json(c) for c in cases]})


@routes.post("/api/v1/conferences")
@_for_the_form
async def conference_book(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    body = await _body(request, BookingIn)
    tz = request.app[SERVICES].settings.display_timezone
    result = await _conferences(request).book(auth.actor, _draft(body, tz), source=client_source(request))
    payload = {"conference": _conference(result.conference), "warnings": [_warning(w) for w in result.warnings]}
    return web.json_response(payload, status=201)


@routes.get("/api/v1/conferences")
async def conference_upcoming(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    try:
        days = min(max(int(request.query.get("days", "30")), 1), 366)
    except ValueError:
        days = 30
    sessions = await _conferences(request).upcoming(auth.actor, days=days)
    return web.json_response(
        {
            "sessions": [
                {
                    "conference_id": s.conference_id,
                    "title": s.title,
                    "recurrence_id": s.recurrence_id.isoformat(),
                    "starts_at": s.starts_at.isoformat(),
                    "ends_at": s.ends_at.isoformat(),
                    "rsvp": s.rsvp.value if s.rsvp else None,
                }
                for s in sessions
            ]
        }
    )


@routes.get("/api/v1/conferences/{conference_id}")
async def conference_get(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    return web.json_response(_conference(await _conferences(request).get(auth.actor, _conference_id(request))))


@routes.put("/api/v1/conferences/{conference_id}")
@_for_the_form
async def conference_edit(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    body = await _body(request, BookingIn)
    tz = request.app[SERVICES].settings.display_timezone
    result = await _conferences(request).edit(
        auth.actor, _conference_id(request), _draft(body, tz), source=client_source(request)
    )
    return web.json_response(
        {"conference": _conference(result.conference), "warnings": [_warning(w) for w in result.warnings]}
    )


@routes.post("/api/v1/conferences/{conference_id}/cancel")
async def conference_cancel(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    body = await _body(request, CancelIn)
    rid = body.recurrence_id.replace(tzinfo=None) if body.recurrence_id else None
    await _conferences(request).cancel(
        auth.actor, _conference_id(request), recurrence_id=rid, source=client_source(request)
    )
    return web.json_response({"cancelled": True, "recurrence_id": rid.isoformat() if rid else None})


@routes.post("/api/v1/conferences/{conference_id}/move")
async def conference_move(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    body = await _body(request, MoveIn)
    view = await _conferences(request).move(
        auth.actor,
        _conference_id(request),
        body.recurrence_id.replace(tzinfo=None),
        body.day,
        body.start,
        body.end,
        source=client_source(request),
    )
    return web.json_response(_conference(view))


@routes.post("/api/v1/conferences/{conference_id}/rsvp")
async def conference_rsvp(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    body = await _body(request, RsvpIn)
    answer = await _conferences(request).rsvp(
        auth.actor, _conference_id(request), body.answer, source=client_source(request)
    )
    return web.json_response(_invitee(answer))


@routes.get("/api/v1/conferences/{conference_id}/responses")
async def conference_responses(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    sites = await _conferences(request).responses(auth.actor, _conference_id(request), source=client_source(request))
    return web.json_response(
        {
            "sites": [
                {"facility_id": s.facility_id, "name": s.facility_name, "invitees": [_invitee(i) for i in s.invitees]}
                for s in sites
            ]
        }
    )


@routes.get("/conferences/{conference_id}/invite.ics")
async def conference_invitation(request: web.Request) -> web.Response:
    """For the signed-in invitee (session cookie or bearer token); not under /api/, so errors are mapped here."""
    try:
        auth = _actor_session(request)
        body = await _conferences(request).invitation(
            auth.actor, _conference_id(request), source=client_source(request)
        )
    except Unauthenticated:
        raise web.HTTPUnauthorized(text="log in first\n") from None
    except PermissionDenied:
        raise web.HTTPForbidden(text="only invitees get the invitation\n") from None
    except NotFound:
        raise web.HTTPNotFound() from None
    return _ics(body, f"conference-{_conference_id(request)}.ics")


@routes.get(r"/calendar/{token:[A-Za-z0-9_-]{1,100}}.ics")
async def calendar_feed(request: web.Request) -> web.Response:
    try:
        body = await _conferences(request).feed(request.match_info["token"], source=client_source(request))
    except NotFound:
        raise web.HTTPNotFound() from None  # no hint whether the token was wrong or revoked
    return _ics(body, None)


def _ics(body: bytes, filename: str | None) -> web.Response:
    headers = {"Cache-Control": "private, no-store"}
    if filename:
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return web.Response(body=body, content_type=ICS_TYPE, charset="utf-8", headers=headers)


@routes.post("/api/v1/calendar/token")
async def calendar_token_issue(request: web.Request) -> web.Response:
    """Issue (or rotate) the caller's private feed token; the old URL stops working."""
    auth = _actor_session(request)
    token = await _conferences(request).issue_feed_token(auth.actor, source=client_source(request))
    url = str(request.url.with_path(f"/calendar/{token}.ics").with_query(None))
    return web.json_response({"token": token, "url": url}, status=201)


@routes.delete("/api/v1/calendar/token")
async def calendar_token_revoke(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    revoked = await _conferences(request).revoke_feed_token(auth.actor, source=client_source(request))
    return web.json_response({"revoked": revoked})


@routes.get("/api/v1/notifications")
async def notifications(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    unread = request.query.get("unread") in ("1", "true")
    found = await _conferences(request).notifications(auth.actor, unread_only=unread)
    return web.json_response(
        {
            "notifications": [
                {
                    "id": n.id,
                    "kind": n.kind,
                    "text": n.text,
                    "conference_id": n.conference_id,
                    "created_at": n.created_at.isoformat(),
                    "read_at": n.read_at.isoformat() if n.read_at else None,
                }
                for n in found
            ]
        }
    )


@routes.post("/api/v1/notifications/read")
async def notifications_read(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    body = await _body(request, ReadIn)
    return web.json_response({"marked": await _conferences(request).mark_read(auth.actor, body.ids)})
