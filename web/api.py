"""The JSON API (/api/v1): the same use cases as the pages, for scripts and non-browser clients.

Token login gives a bearer token; browsers may call it with their session cookie plus X-CSRF-Token.
Errors are ``{"error": {"code", "message", "field"?}}`` with a matching HTTP status.
"""

from __future__ import annotations

from datetime import date
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout

from teleconsult.domain.consultation import CaseNote, Consultation
from teleconsult.domain.errors import Conflict, DomainError, NotFound, PermissionDenied, RoomFull, Unauthenticated
from teleconsult.domain.patients import Patient, PatientDraft, Sex
from teleconsult.services.auth import AuthSession
from teleconsult.services.notify import RequestCard
from web.keys import SERVICES
from web.security import AUTH, client_source

routes = web.RouteTableDef()
_M = TypeVar("_M", bound=BaseModel)
MAX_BODY = 64 * 1024
_STATUS = {NotFound: 404, PermissionDenied: 403, Unauthenticated: 401, Conflict: 409, RoomFull: 409}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=20_000)


class TokenIn(_In):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class PatientIn(_In):
    cccd: str
    full_name: str
    date_of_birth: date
    sex: Sex
    bhyt: str | None = None
    address: str = ""
    province: str = ""


class ConsultationIn(_In):
    patient_id: int = Field(gt=0)
    specialty: str = Field(max_length=40)
    urgency: str = Field(max_length=16)
    summary: str


class NoteIn(_In):
    text: str
    client_id: str = Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")


class CloseIn(_In):
    recommendation: str
    icd10_code: str = Field(max_length=16)
    outcome: str = Field(max_length=16)


def error(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return web.json_response({"error": body}, status=status)


@web.middleware
async def api_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except DomainError as exc:
        return error(_STATUS.get(type(exc), 400), exc.code, exc.message, exc.field)
    except web.HTTPForbidden as exc:
        return error(403, "forbidden", exc.text or "forbidden")
    except SQLAlchemyTimeout:
        # Every database connection is busy (a burst): nothing was done; the client may simply retry.
        response = error(503, "unavailable", "the server is busy; nothing was saved, please retry")
        response.headers["Retry-After"] = "2"
        return response


def _actor_session(request: web.Request) -> AuthSession:
    auth: AuthSession | None = request.get(AUTH)
    if auth is None:
        raise Unauthenticated("log in first: POST /api/v1/auth/token, then send Authorization: Bearer <token>")
    return auth


async def _body(request: web.Request, model: type[_M]) -> _M:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    try:
        raw = await request.content.read(MAX_BODY + 1)
    except Exception:
        raw = b""
    if len(raw) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(raw))
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err.get("loc", ())) or None
        raise _BadInput(f"{field or 'body'}: {err.get('msg', 'invalid')}", field) from None


class _BadInput(DomainError):
    code = "invalid"

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message, field=field)


def _cid(request: web.Request) -> int:
    try:
        value = int(request.match_info["consultation_id"])
    except ValueError:
        raise NotFound("no such consultation") from None
    if value <= 0:
        raise NotFound("no such consultation")
    return value


def patient_json(p: Patient) -> dict[str, Any]:
    return {
        "id": p.id,
        "cccd": p.cccd,
        "full_name": p.full_name,
        "date_of_birth": p.date_of_birth.isoformat(),
        "sex": p.sex.value,
        "bhyt": p.bhyt,
        "address": p.address,
        "province": p.province,
    }


def consultation_json(c: Consultation) -> dict[str, Any]:
    return {
        "id": c.id,
        "patient_id": c.patient_id,
        "status": c.status.value,
        "specialty": c.specialty,
        "urgency": c.urgency.value,
        "summary": c.summary,
        "specialist_user_id": c.specialist_user_id,
        "created_at": c.created_at.isoformat(),
        "accepted_at": c.accepted_at.isoformat() if c.accepted_at else None,
        "ended_at": c.ended_at.isoformat() if c.ended_at else None,
        "recommendation": c.recommendation,
        "icd10_code": c.icd10_code,
        "outcome": c.outcome.value if c.outcome else None,
    }


def card_json(card: RequestCard) -> dict[str, Any]:
    return {
        **consultation_json(card.consultation),
        "patient_name": card.patient_name,
        "patient_age": card.patient_age,
        "patient_sex": card.patient_sex,
        "facility_name": card.facility_name,
        "requested_by_name": card.requested_by_name,
        "specialist_name": card.specialist_name,
    }


def note_json(n: CaseNote) -> dict[str, Any]:
    return {
        "id": n.id,
        "consultation_id": n.consultation_id,
        "author_user_id": n.author_user_id,
        "author_name": n.author_name,
        "text": n.text,
        "created_at": n.created_at.isoformat(),
        "client_id": n.client_id,
    }


@routes.post("/api/v1/auth/token")
async def token_login(request: web.Request) -> web.Response:
    body = await _body(request, TokenIn)
    issued = await request.app[SERVICES].auth.login(
        body.username, body.password, source=client_source(request), kind="api"
    )
    actor = issued.session.actor
    return web.json_response(
        {
            "token": issued.token,
            "token_type": "Bearer",
            "expires_in": issued.max_age_s,
            "user": {
                "id": actor.user_id,
                "username": actor.username,
                "role": actor.role.value,
                "display_name": actor.display_name,
                "specialty": actor.specialty,
            },
        },
        status=201,
    )


@routes.delete("/api/v1/auth/token")
async def token_logout(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    await request.app[SERVICES].auth.logout(auth.token_hash, source=client_source(request))
    return web.Response(status=204)


@routes.get("/api/v1/patients")
async def patients_search(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    found = await request.app[SERVICES].patients.search(
        auth.actor, request.query.get("q", ""), source=client_source(request)
    )
    return web.json_response({"patients": [patient_json(p) for p in found]})


@routes.post("/api/v1/patients")
async def patients_create(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    body = await _body(request, PatientIn)
    patient = await request.app[SERVICES].patients.register(
        auth.actor, PatientDraft(**body.model_dump()), source=client_source(request)
    )
    return web.json_response(patient_json(patient), status=201)


@routes.get("/api/v1/patients/{patient_id}")
async def patients_read(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    try:
        patient_id = int(request.match_info["patient_id"])
    except ValueError:
        raise NotFound("no such patient") from None
    record = await request.app[SERVICES].patients.record(auth.actor, patient_id, source=client_source(request))
    return web.json_response(
        {
            **patient_json(record.patient),
            "consultations": [
                {
                    **consultation_json(e.consultation),
                    "facility_name": e.facility_name,
                    "specialist_name": e.specialist_name,
                    "notes": [note_json(n) for n in e.notes],
                    "participants": [
                        {
                            "user_id": p.user_id,
                            "display_name": p.display_name,
                            "role": p.role,
                            "joined_at": p.joined_at.isoformat(),
                            "left_at": p.left_at.isoformat() if p.left_at else None,
                        }
                        for p in e.participations
                    ],
                }
                for e in record.consultations
            ],
        }
    )


@routes.post("/api/v1/consultations")
async def consultations_create(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    body = await _body(request, ConsultationIn)
    services = request.app[SERVICES]
    await services.patients.get(auth.actor, body.patient_id, source=client_source(request))
    consultation = await services.consultations.request(
        auth.actor, body.patient_id, body.specialty, body.urgency, body.summary, source=client_source(request)
    )
    return web.json_response(consultation_json(consultation), status=201)


@routes.get("/api/v1/consultations")
async def consultations_list(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    services = request.app[SERVICES]
    which = request.query.get("filter", "mine")
    if which == "open":
        cards = await services.consultations.open_requests(auth.actor)
    elif which == "mine":
        cards = await services.consultations.active_for(auth.actor)
    else:
        raise _BadInput("filter must be 'open' or 'mine'", "filter")
    return web.json_response({"consultations": [card_json(c) for c in cards]})


@routes.get("/api/v1/consultations/{consultation_id}")
async def consultations_read(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    card = await request.app[SERVICES].consultations.get(auth.actor, _cid(request), source=client_source(request))
    return web.json_response(card_json(card))


@routes.post("/api/v1/consultations/{consultation_id}/accept")
async def consultations_accept(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    c = await request.app[SERVICES].consultations.accept(auth.actor, _cid(request), source=client_source(request))
    return web.json_response(consultation_json(c))


@routes.post("/api/v1/consultations/{consultation_id}/cancel")
async def consultations_cancel(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    c = await request.app[SERVICES].consultations.cancel(auth.actor, _cid(request), source=client_source(request))
    return web.json_response(consultation_json(c))


@routes.get("/api/v1/consultations/{consultation_id}/notes")
async def notes_list(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    notes = await request.app[SERVICES].consultations.room_notes(auth.actor, _cid(request))
    return web.json_response({"notes": [note_json(n) for n in notes]})


@routes.post("/api/v1/consultations/{consultation_id}/notes")
async def notes_add(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    body = await _body(request, NoteIn)
    note, created = await request.app[SERVICES].consultations.add_note(
        auth.actor, _cid(request), body.text, body.client_id, source=client_source(request)
    )
    return web.json_response(note_json(note), status=201 if created else 200)


@routes.post("/api/v1/consultations/{consultation_id}/end")
async def consultations_end(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    body = await _body(request, CloseIn)
    c = await request.app[SERVICES].consultations.close(
        auth.actor, _cid(request), body.recommendation, body.icd10_code, body.outcome, source=client_source(request)
    )
    return web.json_response(consultation_json(c))
