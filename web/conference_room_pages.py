"""The conference room page, and the host's attendance page with its CSV export.

The room page is a shell: who may enter, and what they see, is decided when the browser sends
``conference.enter`` (static/js/conference-room.js fills the page from that ack), so nothing about the patients
on the agenda is rendered here. Attendance: authenticate -> ConferenceRoomService -> render; the service decides
who is a host (403 page for anyone else) and audits every look and every export."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from aiohttp import web

from teleconsult.domain.conference_room import Outcome
from teleconsult.domain.errors import DomainError
from teleconsult.services.conference_room import AttendanceLine, ConferenceRoomService
from web.i18n import _
from web.keys import SERVICES
from web.pages import _auth, _int, _render, error_page
from web.security import client_source

routes = web.RouteTableDef()


def _room(request: web.Request) -> ConferenceRoomService:
    service: ConferenceRoomService = request.app[SERVICES].conference_room
    return service


def outcome_label(value: str) -> str:
    labels = {
        Outcome.MANAGE_LOCALLY.value: _("Manage locally with the advice given"),
        Outcome.FURTHER_INVESTIGATION.value: _("Further investigation, then review"),
        Outcome.TRANSFER.value: _("Transfer to a higher-level hospital"),
        Outcome.REVIEW_AGAIN.value: _("Review again at a later session"),
        Outcome.OTHER.value: _("Other"),
    }
    return labels.get(value, value)


@routes.get("/conferences/{conference_id}/room")
async def room_page(request: web.Request) -> web.Response:
    _auth(request)
    conference_id = _int(request.match_info["conference_id"])
    outcomes = [(o.value, outcome_label(o.value)) for o in Outcome]
    return await _render(request, "conference_room.html", {"conference_id": conference_id, "outcomes": outcomes})


def _sessions(lines: list[AttendanceLine]) -> list[dict[str, Any]]:
    """Lines grouped per session (the service lists them session by session, earliest first)."""
    return [
        {"session_id": session_id, "starts_at": rows[0].session_starts_at, "lines": rows}
        for session_id, group in groupby(lines, key=lambda line: line.session_id)
        for rows in [list(group)]
    ]


@routes.get("/conferences/{conference_id}/attendance")
async def attendance_page(request: web.Request) -> web.Response:
    auth = _auth(request)
    conference_id = _int(request.match_info["conference_id"])
    try:
        lines = await _room(request).attendance(auth.actor, conference_id, source=client_source(request))
        conference = await request.app[SERVICES].conferences.get(auth.actor, conference_id)
    except DomainError as exc:
        return await error_page(request, exc)
    return await _render(
        request, "conference_attendance.html", {"conference": conference, "sessions": _sessions(lines)}
    )


@routes.get("/conferences/{conference_id}/attendance.csv")
async def attendance_csv(request: web.Request) -> web.Response:
    auth = _auth(request)
    conference_id = _int(request.match_info["conference_id"])
    try:
        body = await _room(request).export_csv(auth.actor, conference_id, source=client_source(request))
    except DomainError as exc:
        return await error_page(request, exc)
    # A byte-order mark so that spreadsheet programs read the Vietnamese names as UTF-8.
    return web.Response(
        body=("\ufeff" + body).encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="conference-{conference_id}-attendance.csv"',
            "Cache-Control": "private, no-store",
        },
    )
