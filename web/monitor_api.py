"""HTTP for monitor signals and vital signs: the record's trend charts, the ECG review page and its samples,
and vital signs for API clients. Authorization and audit happen in the services."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from teleconsult.domain.errors import DomainError, NotFound, ValidationFailed
from teleconsult.domain.signals import describe
from teleconsult.domain.vitals import VitalSign
from teleconsult.domain.waveform import FrameHeader, encode_frame
from teleconsult.services.waveforms import StreamInfo
from web.api import _actor_session, _body
from web.keys import SERVICES
from web.pages import _auth, _int, _render, error_page
from web.security import client_source

routes = web.RouteTableDef()


class VitalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(max_length=8)
    value: float
    value2: float | None = None
    observed_at: datetime | None = None
    client_id: str = Field(max_length=64)


def stream_json(stream: StreamInfo) -> dict[str, Any]:
    return {
        "id": stream.id,
        "consultation_id": stream.consultation_id,
        "label": stream.label,
        "sample_rate": stream.sample_rate,
        "signals": [
            {
                "name": s.name,
                "label": describe(s.name).label,
                "kind": describe(s.name).kind.value,
                "units": s.units,
                "gain": s.gain,
                "baseline": s.baseline,
            }
            for s in stream.signals
        ],
        "started_at": stream.started_at.isoformat(),
        "active": stream.ended_at is None,
        "next_sample": stream.next_sample,
    }


def vital_json(vital: VitalSign) -> dict[str, Any]:
    return {
        "id": vital.id,
        "consultation_id": vital.consultation_id,
        "kind": vital.kind.value,
        "value": vital.value,
        "value2": vital.value2,
        "unit": vital.unit,
        "observed_at": vital.observed_at.isoformat(),
        "source": vital.source.value,
        "recorded_by_name": vital.recorded_by_name,
        "client_id": vital.client_id,
    }


def _id(request: web.Request, name: str) -> int:
    try:
        value = int(request.match_info[name])
    except ValueError:
        raise NotFound("not found") from None
    if not 0 < value < 2**31:
        raise NotFound("not found")
    return value


def _query_int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"{name} must be a whole number", field=name) from None
    if value < 0:
        raise ValidationFailed(f"{name} must not be negative", field=name)
    return value


@routes.get("/api/v1/patients/{patient_id}/vitals")
async def patient_vitals(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    vitals = await request.app[SERVICES].vitals.for_patient(
        auth.actor, _id(request, "patient_id"), source=client_source(request)
    )
    return web.json_response({"vitals": [vital_json(v) for v in vitals]})


@routes.get("/api/v1/consultations/{consultation_id}/vitals")
async def consultation_vitals(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    vitals = await request.app[SERVICES].vitals.for_consultation(auth.actor, _id(request, "consultation_id"))
    return web.json_response({"vitals": [vital_json(v) for v in vitals]})


@routes.post("/api/v1/consultations/{consultation_id}/vitals")
async def consultation_vitals_add(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    body = await _body(request, VitalIn)
    vital, created = await request.app[SERVICES].vitals.add(
        auth.actor,
        _id(request, "consultation_id"),
        body.kind,
        body.value,
        body.value2,
        body.client_id,
        observed_at=body.observed_at,
        device=auth.kind == "device",
        source=client_source(request),
    )
    return web.json_response(vital_json(vital), status=201 if created else 200)


@routes.get("/api/v1/patients/{patient_id}/streams")
async def patient_streams(request: web.Request) -> web.Response:
    auth = _actor_session(request)
    streams = await request.app[SERVICES].waveforms.streams_of_patient(
        auth.actor, _id(request, "patient_id"), source=client_source(request)
    )
    return web.json_response({"streams": [stream_json(s) for s in streams]})


@routes.get("/api/v1/streams/{stream_id}/samples")
async def stream_samples(request: web.Request) -> web.Response:
    """One frame (docs/waveform-format.md) holding the stored samples from ``start``, at most ``count``."""
    auth = _actor_session(request)
    start = _query_int(request, "start", 0)
    count = _query_int(request, "count", 10_000)
    stream, first, data = await request.app[SERVICES].waveforms.samples(
        auth.actor, _id(request, "stream_id"), start, count, source=client_source(request)
    )
    if not len(data):
        return web.Response(status=204, headers={"X-Stream-Samples": str(stream.next_sample)})
    header = FrameHeader(stream.id, 0, first, stream.rate_mhz, len(data), tuple(s.scale for s in stream.signals))
    return web.Response(
        body=encode_frame(header, data),
        content_type="application/octet-stream",
        headers={"X-Stream-Samples": str(stream.next_sample)},
    )


@routes.get("/patients/{patient_id}/streams/{stream_id}")
async def ecg_review(request: web.Request) -> web.Response:
    auth = _auth(request)
    services = request.app[SERVICES]
    patient_id = _int(request.match_info["patient_id"])
    stream_id = _int(request.match_info["stream_id"])
    try:
        streams = await services.waveforms.streams_of_patient(auth.actor, patient_id, source=client_source(request))
        stream = next((s for s in streams if s.id == stream_id), None)
        if stream is None:
            raise NotFound("this recording is not in this patient's record")
        patient = await services.patients.get(auth.actor, patient_id, source=client_source(request))
    except DomainError as exc:
        return await error_page(request, exc)
    return await _render(request, "ecg_review.html", {"patient": patient, "stream": stream_json(stream)})
