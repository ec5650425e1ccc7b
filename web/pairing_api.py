"""Pairing and presence over HTTP (/api/v1): the same use cases as the socket.io events, for scripts and
clients that poll. Serialised with the protocol's models so both transports say the same thing."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import Field

from signaling.serialize import candidate_presence, offer_out, presence_out, status_out
from web.api import _actor_session, _body, _cid, _In
from web.keys import SERVICES
from web.security import client_source

routes = web.RouteTableDef()


class DeclineIn(_In):
    reason: str = Field(min_length=1, max_length=500)


class UrgencyIn(_In):
    urgency: Literal["emergency", "urgent", "routine"]


class HandIn(_In):
    specialist_user_id: int = Field(gt=0)


class PresenceIn(_In):
    availability: Literal["available", "busy", "away"]


def _json(model: object) -> web.Response:
    return web.json_response(model.model_dump(mode="json"))  # type: ignore[attr-defined]


@routes.get("/api/v1/consultations/{consultation_id}/pairing")
async def pairing_status(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    return _json(status_out(await request.app[SERVICES].pairing.status(auth.actor, _cid(request))))


@routes.post("/api/v1/consultations/{consultation_id}/urgency")
async def pairing_raise(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    body = await _body(request, UrgencyIn)
    status = await request.app[SERVICES].pairing.raise_urgency(
        auth.actor, _cid(request), body.urgency, source=client_source(request)
    )
    return _json(status_out(status))


@routes.post("/api/v1/consultations/{consultation_id}/hand")
async def pairing_hand(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    body = await _body(request, HandIn)
    offer = await request.app[SERVICES].pairing.hand_to(
        auth.actor, _cid(request), body.specialist_user_id, source=client_source(request)
    )
    return _json(offer_out(offer))


@routes.get("/api/v1/offers")
async def offers_ringing(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    rings = await request.app[SERVICES].pairing.offers_for(auth.actor)
    return web.json_response({"offers": [offer_out(o).model_dump(mode="json") for o, _card in rings]})


@routes.post("/api/v1/offers/{offer_id}/decline")
async def offer_decline(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    body = await _body(request, DeclineIn)
    try:
        offer_id = int(request.match_info["offer_id"])
    except ValueError:
        raise web.HTTPNotFound() from None
    offer = await request.app[SERVICES].pairing.decline(
        auth.actor, offer_id, body.reason, source=client_source(request)
    )
    return _json(offer_out(offer))


@routes.get("/api/v1/hubs/{hub_id}/queue")
async def hub_queue(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    try:
        hub_id = int(request.match_info["hub_id"])
    except ValueError:
        raise web.HTTPNotFound() from None
    cases, staff = await request.app[SERVICES].pairing.hub_queue(auth.actor, hub_id)
    return web.json_response(
        {
            "cases": [status_out(c).model_dump(mode="json") for c in cases],
            "staff": [
                {"presence": presence_out(candidate_presence(c)).model_dump(mode="json"), "state": state}
                for c, state in staff
            ],
        }
    )


@routes.put("/api/v1/presence")
async def presence_set(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    body = await _body(request, PresenceIn)
    services = request.app[SERVICES]
    view = await services.presence.set_availability(auth.actor, body.availability, source=client_source(request))
    services.pairing.kick()
    return _json(presence_out(view))
