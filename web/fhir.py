"""Read-only FHIR R4 endpoints (/fhir): a patient, their encounters and observations, and ``$everything``.

Authentication is the session cookie or ``Authorization: Bearer <token>`` (the session middleware resolves
both); who may read what is the services' decision. Answers are ``application/fhir+json``; errors are
OperationOutcome resources with the matching HTTP status (401, 403, 404).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from teleconsult.domain.errors import DomainError, NotFound, PermissionDenied, Unauthenticated
from teleconsult.domain.fhir import operation_outcome
from teleconsult.domain.people import Actor
from teleconsult.services.auth import AuthSession
from web.keys import SERVICES
from web.security import AUTH, client_source

routes = web.RouteTableDef()
CONTENT_TYPE = "application/fhir+json"
# DomainError class -> (HTTP status, FHIR IssueType code)
_ISSUES: dict[type[DomainError], tuple[int, str]] = {
    Unauthenticated: (401, "login"),
    PermissionDenied: (403, "forbidden"),
    NotFound: (404, "not-found"),
}
Read = Callable[[Actor], Awaitable[dict[str, Any]]]


def fhir_response(resource: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode(),
        status=status,
        content_type=CONTENT_TYPE,
        charset="utf-8",
    )


def _outcome(exc: DomainError) -> web.Response:
    status, code = _ISSUES.get(type(exc), (400, "invalid"))
    response = fhir_response(operation_outcome(code, exc.message), status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="teleconsult"'
    return response


async def _answer(request: web.Request, read: Read) -> web.Response:
    auth: AuthSession | None = request.get(AUTH)
    try:
        if auth is None:
            raise Unauthenticated("log in first, or send Authorization: Bearer <token> from POST /api/v1/auth/token")
        return fhir_response(await read(auth.actor))
    except DomainError as exc:
        return _outcome(exc)


def _id(request: web.Request, name: str, what: str) -> int:
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18 or int(raw) <= 0:
        raise NotFound(f"no such {what}")
    return int(raw)


def base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}/fhir"


@routes.get("/fhir/Patient/{patient_id}")
async def read_patient(request: web.Request) -> web.Response:
    async def read(actor: Actor) -> dict[str, Any]:
        patient_id = _id(request, "patient_id", "Patient")
        return await request.app[SERVICES].fhir.patient_resource(actor, patient_id, source=client_source(request))

    return await _answer(request, read)


@routes.get("/fhir/Patient/{patient_id}/$everything")
async def patient_everything(request: web.Request) -> web.Response:
    async def read(actor: Actor) -> dict[str, Any]:
        patient_id = _id(request, "patient_id", "Patient")
        return await request.app[SERVICES].fhir.patient_bundle(
            actor, patient_id, source=client_source(request), base_url=base_url(request), bundle_type="searchset"
        )

    return await _answer(request, read)


@routes.get("/fhir/Encounter/{encounter_id}")
async def read_encounter(request: web.Request) -> web.Response:
    async def read(actor: Actor) -> dict[str, Any]:
        encounter_id = _id(request, "encounter_id", "Encounter")
        return await request.app[SERVICES].fhir.encounter_resource(actor, encounter_id, source=client_source(request))

    return await _answer(request, read)


@routes.get("/fhir/Observation/{observation_id}")
async def read_observation(request: web.Request) -> web.Response:
    async def read(actor: Actor) -> dict[str, Any]:
        observation_id = request.match_info["observation_id"][:64]
        return await request.app[SERVICES].fhir.observation_resource(
            actor, observation_id, source=client_source(request)
        )

    return await _answer(request, read)


@routes.get("/fhir/{tail:.*}")
async def unknown(request: web.Request) -> web.Response:
    """Anything else under /fhir: the server offers only the reads above."""

    async def read(_actor: Actor) -> dict[str, Any]:
        raise NotFound(f"this server does not serve {request.path}; it offers Patient, Encounter, Observation")

    return await _answer(request, read)
