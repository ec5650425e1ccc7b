"""The python-socketio server: authenticate on connect, validate every event, call a service, ack.

Thin by design: who may do what is decided in teleconsult.services; this module only keeps track of
which connection is in which room and relays WebRTC signaling between them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from http.cookies import SimpleCookie
from typing import Any

import redis.asyncio
import socketio
from pydantic import ValidationError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout

from signaling import events as ev
from signaling.conference import ConferenceSignaling
from signaling.rooms import LocalRooms, Member, RedisRooms, RoomDirectory, TokenBucket
from signaling.serialize import (
    candidate_presence,
    consultation_out,
    note_out,
    offer_out,
    presence_out,
    status_out,
    stream_out,
    vital_out,
)
from teleconsult.domain import turn
from teleconsult.domain.consultation import TERMINAL_STATUSES, CaseNote
from teleconsult.domain.errors import DomainError, PermissionDenied, RoomFull, Unauthenticated
from teleconsult.domain.people import Actor, Role
from teleconsult.domain.vitals import VitalSign
from teleconsult.netaddr import forwarded_client
from teleconsult.services import Services
from teleconsult.services.conferences import NotificationView
from teleconsult.services.notify import RequestCard
from teleconsult.services.pairing import OfferView, PairingStatus
from teleconsult.services.presence import PresenceView
from teleconsult.services.waveforms import StreamInfo
from teleconsult.settings import Settings
from teleconsult.storage.waveforms import StoredSignal

log = logging.getLogger(__name__)


OVERSIGHT = "oversight"


def room_of(consultation_id: int) -> str:
    return f"consultation:{consultation_id}"


def hub_room(hub_id: int) -> str:
    """The coordinators of a hub: its live queue, escalations and the presence of its specialists."""
    return f"hub:{hub_id}"


class SignalingServer:
    """Owns the AsyncServer; implements the services' Notifier by emitting typed events."""

    def __init__(self, services: Services, settings: Settings, *, instance_id: str) -> None:
        self._services = services
        self._settings = settings
        self.instance_id = instance_id
        manager = (
            socketio.AsyncRedisManager(settings.redis_url, channel=f"{settings.redis_prefix}:socketio")
            if settings.redis_url
            else None
        )
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            client_manager=manager,
            max_http_buffer_size=settings.max_http_buffer_bytes,
            ping_interval=settings.ping_interval_s,
            ping_timeout=settings.ping_timeout_s,
            logger=False,
            engineio_logger=False,
        )
        self.rooms: RoomDirectory = (
            RedisRooms(
                redis.asyncio.Redis.from_url(settings.redis_url),
                instance_id,
                settings.presence_lease_s,
                prefix=settings.redis_prefix,
            )
            if settings.redis_url
            else LocalRooms()
        )
        self._buckets: dict[str, TokenBucket] = {}
        # Per connection, for the frame hot path (no session lookup per frame).
        self._frame_buckets: dict[str, TokenBucket] = {}
        self._sources: dict[str, _Source] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handlers = {
            "room.join": self._join,
            "room.leave": self._leave,
            "rtc.signal": self._signal,
            "note.add": self._note,
            "stream.open": self._stream_open,
            "stream.close": self._stream_close,
            "stream.backfill": self._stream_backfill,
            "vitals.add": self._vitals_add,
            "pairing.offers": self._pairing_offers,
            "pairing.accept": self._pairing_accept,
            "pairing.decline": self._pairing_decline,
            "pairing.status": self._pairing_status,
            "pairing.raise": self._pairing_raise,
            "pairing.hand": self._pairing_hand,
            "pairing.queue": self._pairing_queue,
            "presence.set": self._presence_set,
        }
        self.conference = ConferenceSignaling(self)
        self._handlers.update(self.conference.handlers())
        # Users with at least one connection on this process: their presence leases are renewed here.
        self._local_users: dict[int, int] = {}
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)
        for name in ev.CLIENT_EVENTS:
            if name not in ev.BINARY_EVENTS:
                self.sio.on(name, self._dispatcher(name))
        self.sio.on("stream.frame", self._frame)
        self.sio.on("*", self._unknown)

    @property
    def services(self) -> Services:
        return self._services

    @property
    def settings(self) -> Settings:
        return self._settings

    async def fresh_actor(self, sid: str, session: dict[str, Any]) -> Actor:
        return await self._fresh_actor(sid, session)

    def ice_servers(self, actor: Actor) -> list[dict[str, Any]]:
        return self._ice_servers(actor)

    def attach(self, app: Any) -> None:
        self.sio.attach(app, socketio_path="socket.io")

    def connection_count(self) -> int:
        return len(self._buckets)

    # -- connection lifecycle ---------------------------------------------------------------------------------

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = self._token_from(environ, auth)
        try:
            session = await self._services.auth.resolve(token or "")
        except Unauthenticated as exc:
            raise socketio.exceptions.ConnectionRefusedError(
                exc.code, {"code": exc.code, "message": exc.message}
            ) from None
        actor = session.actor
        source = _source(environ, self._settings.trusted_proxies)
        await self.sio.save_session(sid, {"token": token, "actor": actor, "source": source})
        self._buckets[sid] = TokenBucket(self._settings.events_per_second, self._settings.events_burst)
        self._frame_buckets[sid] = TokenBucket(self._settings.frames_per_second, self._settings.frames_burst)
        self._sources[sid] = _Source(actor.user_id, set(), asyncio.get_running_loop().time())
        await self.sio.enter_room(sid, f"user:{actor.user_id}")
        if actor.role is Role.CLINICIAN:
            await self.sio.enter_room(sid, f"facility:{actor.facility_id}")
        if actor.role is Role.SPECIALIST and actor.specialty:
            await self.sio.enter_room(sid, f"specialty:{actor.specialty}")
        if actor.role in (Role.COORDINATOR, Role.ADMIN):
            await self.sio.enter_room(sid, OVERSIGHT)
        if actor.role is Role.COORDINATOR:
            await self.sio.enter_room(sid, hub_room(actor.facility_id))
        self._local_users[actor.user_id] = self._local_users.get(actor.user_id, 0) + 1
        if self._local_users[actor.user_id] == 1:
            self._spawn(self._presence_changed(actor.user_id, online=True))

    async def _disconnect(self, sid: str, reason: Any = None) -> None:
        source = self._sources.get(sid)
        if source is not None:
            left = self._local_users.get(source.user_id, 0) - 1
            if left <= 0:
                self._local_users.pop(source.user_id, None)
                self._spawn(self._presence_changed(source.user_id, online=False))
            else:
                self._local_users[source.user_id] = left
        self._buckets.pop(sid, None)
        self._frame_buckets.pop(sid, None)
        self._sources.pop(sid, None)
        for consultation_id in self.rooms.rooms_of(sid):
            await self._remove_member(consultation_id, sid)
        await self.conference.disconnected(sid)

    def _token_from(self, environ: dict[str, Any], auth: Any) -> str | None:
        if isinstance(auth, dict) and isinstance(auth.get("token"), str):
            return str(auth["token"])
        cookies = SimpleCookie()
        try:
            cookies.load(environ.get("HTTP_COOKIE", ""))
        except Exception:
            return None
        morsel = cookies.get(self._settings.session_cookie_name)
        return morsel.value if morsel else None

    # -- dispatch ---------------------------------------------------------------------------------------------

    def _dispatcher(self, name: str) -> Any:
        model, _ack = ev.CLIENT_EVENTS[name]
        handler = self._handlers[name]

        async def dispatch(sid: str, data: Any = None) -> dict[str, Any]:
            bucket = self._buckets.get(sid)
            if bucket is None:
                return ev.error_ack("unauthenticated", "not connected")
            if not bucket.take():
                return ev.error_ack("rate_limited", "too many messages; slow down")
            try:
                size = len(json.dumps(data, separators=(",", ":")))
            except (TypeError, ValueError):
                return ev.error_ack("invalid", "payload is not JSON")
            if size > self._settings.max_event_bytes:
                return ev.error_ack("too_large", f"message larger than {self._settings.max_event_bytes} bytes")
            if not isinstance(data, dict):
                return ev.error_ack("invalid", "payload must be a JSON object")
            try:
                payload = model.model_validate(data)
            except ValidationError as exc:
                return ev.error_ack("invalid", _first_error(exc))
            session = await self.sio.get_session(sid)
            try:
                return await handler(sid, session, payload)
            except DomainError as exc:
                return ev.error_ack(exc.code, exc.message)
            except SQLAlchemyTimeout:
                return ev.error_ack("unavailable", "the server is busy; nothing was done, please retry")
            except Exception:
                log.exception("signaling handler %s failed", name)
                return ev.error_ack("internal", "something went wrong on the server; please retry")

        return dispatch

    async def _unknown(self, event: str, sid: str, *args: Any) -> dict[str, Any]:
        return ev.error_ack("invalid", "unknown event")

    async def _fresh_actor(self, sid: str, session: dict[str, Any]) -> Actor:
        """Re-check the session so an expired or revoked login stops acting at once."""
        try:
            return (await self._services.auth.resolve(session["token"] or "")).actor
        except Unauthenticated as exc:
            await self.sio.emit("session.expired", ev.wire(ev.SessionExpired(message=exc.message)), to=sid)
            self._spawn(self._disconnect_soon(sid))
            raise

    async def _disconnect_soon(self, sid: str) -> None:
        # Let the error ack reach the client first, then drop the connection.
        await asyncio.sleep(0.5)
        await self.sio.disconnect(sid)

    def spawn(self, coro: Any) -> None:
        self._spawn(coro)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def start(self) -> None:
        self._spawn(self._heartbeat())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self._services.presence.release_instance(self.instance_id)
        except Exception:
            log.exception("could not release this process's presence leases")
        await self.rooms.close()

    async def _heartbeat(self) -> None:
        """Renew the presence leases of everyone connected here; a killed process's leases run out."""
        while True:
            try:
                await self._services.presence.renew(self.instance_id, list(self._local_users))
                await self._services.consultations.close_stale_participations()
            except Exception:
                log.exception("could not renew presence leases")
            try:
                await self.rooms.renew()
            except Exception:
                log.warning("could not renew this process's room members (Redis down?); retrying")
            await asyncio.sleep(self._settings.presence_lease_s / 3)

    async def _presence_changed(self, user_id: int, *, online: bool) -> None:
        presence = self._services.presence
        try:
            if online:
                await presence.hold(self.instance_id, user_id)
            else:
                await presence.release(self.instance_id, user_id)
            views = await presence.of([user_id])
        except Exception:
            log.exception("could not record presence")
            return
        for view in views:
            await self.presence_changed(view)
        self._services.pairing.kick()

    # -- handlers ---------------------------------------------------------------------------------------------

    async def _join(self, sid: str, session: dict[str, Any], msg: ev.RoomJoin) -> dict[str, Any]:
        actor = await self._fresh_actor(sid, session)
        cid = msg.consultation_id
        if await self.rooms.member(cid, sid) is None:
            others = [m for m in await self.rooms.members(cid) if m.user_id != actor.user_id]
            if len(others) >= self._settings.max_room_participants:
                raise RoomFull(f"this room already has {len(others)} participants")
            consultation = await self._services.consultations.join(
                actor, cid, f"{self.instance_id}:{sid}", source=session["source"]
            )
            for ghost in [m for m in await self.rooms.members(cid) if m.user_id == actor.user_id]:
                await self.sio.emit("room.replaced", ev.wire(ev.RoomReplaced(consultation_id=cid)), to=ghost.peer_id)
                await self._remove_member(cid, ghost.peer_id)
            member = Member(sid, actor.user_id, actor.display_name, actor.role.value, f"{self.instance_id}:{sid}")
            await self.rooms.add(cid, member)
            await self.sio.enter_room(sid, room_of(cid))
            joined = ev.PeerJoined(consultation_id=cid, peer=_peer(member))
            await self.sio.emit("room.peer_joined", ev.wire(joined), room=room_of(cid), skip_sid=sid)
            status = consultation.status.value
        else:
            status = None
        notes = await self._services.consultations.room_notes(actor, cid)
        streams = await self._services.waveforms.streams_of_consultation(actor, cid)
        vitals = await self._services.vitals.for_consultation(actor, cid)
        return ev.RoomJoinAck(
            ok=True,
            peer_id=sid,
            status=status,
            participants=[_peer(m) for m in await self.rooms.members(cid) if m.peer_id != sid],
            ice_servers=[ev.IceServer(**s) for s in self._ice_servers(actor)],
            notes=[note_out(n) for n in notes],
            streams=[stream_out(st) for st in streams],
            vitals=[vital_out(v) for v in vitals],
        ).model_dump(mode="json", by_alias=True, exclude_none=True)

    def _ice_servers(self, actor: Actor) -> list[dict[str, Any]]:
        """STUN/TURN for this participant: the static list plus coturn credentials that expire (TTL a setting)."""
        return turn.ice_servers(
            [s.model_dump() for s in self._settings.ice_servers],
            turn_urls=self._settings.turn_urls,
            secret=self._settings.effective_turn_secret(),
            ttl_s=self._settings.turn_credential_ttl_s,
            user_id=actor.user_id,
            now_s=int(self._services.clock.now().timestamp()),
        )

    async def _leave(self, sid: str, session: dict[str, Any], msg: ev.RoomLeave) -> dict[str, Any]:
        await self._remove_member(msg.consultation_id, sid)
        return {"ok": True}

    async def _signal(self, sid: str, session: dict[str, Any], msg: ev.RtcSignal) -> dict[str, Any]:
        cid = msg.consultation_id
        if await self.rooms.member(cid, sid) is None:
            raise PermissionDenied("join the room before signaling")
        if msg.to == sid or await self.rooms.member(cid, msg.to) is None:
            return ev.error_ack("not_found", "that peer is not in this room")
        out = ev.RtcSignalIn(consultation_id=cid, from_=sid, description=msg.description, candidate=msg.candidate)
        await self.sio.emit("rtc.signal", ev.wire(out), to=msg.to)
        return {"ok": True}

    async def _note(self, sid: str, session: dict[str, Any], msg: ev.NoteAdd) -> dict[str, Any]:
        actor = await self._fresh_actor(sid, session)
        note, created = await self._services.consultations.add_note(
            actor, msg.consultation_id, msg.text, msg.client_id, source=session["source"]
        )
        return ev.NoteAddAck(ok=True, note=note_out(note), created=created).model_dump(mode="json", exclude_none=True)

    # -- monitor signals and vital signs ----------------------------------------------------------------------

    async def _stream_open(self, sid: str, session: dict[str, Any], msg: ev.StreamOpen) -> dict[str, Any]:
        actor = await self._fresh_actor(sid, session)
        signals = [StoredSignal(name=s.name, units=s.units, gain=s.gain, baseline=s.baseline) for s in msg.signals]
        stream, next_seq = await self._services.waveforms.open_stream(
            actor, msg.consultation_id, msg.source_key, msg.label, msg.sample_rate, signals, source=session["source"]
        )
        source = self._sources.get(sid)
        if source is not None:
            source.streams.add(stream.id)
        ack = ev.StreamOpenAck(ok=True, stream=stream_out(stream), next_seq=next_seq)
        return ack.model_dump(mode="json", exclude_none=True)

    async def _stream_close(self, sid: str, session: dict[str, Any], msg: ev.StreamClose) -> dict[str, Any]:
        actor = await self._fresh_actor(sid, session)
        await self._services.waveforms.close_stream(actor, msg.stream_id, source=session["source"])
        source = self._sources.get(sid)
        if source is not None:
            source.streams.discard(msg.stream_id)
        return {"ok": True}

    async def _stream_backfill(self, sid: str, session: dict[str, Any], msg: ev.StreamBackfill) -> dict[str, Any]:
        actor = await self._fresh_actor(sid, session)
        if await self.rooms.member(msg.consultation_id, sid) is None:
            raise PermissionDenied("join the room first")
        recent = await self._services.waveforms.recent(actor, msg.consultation_id, msg.seconds)
        return {
            "ok": True,
            "streams": [stream_out(st).model_dump(mode="json") for st, _ in recent],
            "frames": [frame for _, frame in recent],
        }

    async def _vitals_add(self, sid: str, session: dict[str, Any], msg: ev.VitalsAdd) -> dict[str, Any]:
        actor = await self._fresh_actor(sid, session)
        observed_at = None
        if msg.observed_at is not None:
            try:
                observed_at = datetime.fromisoformat(msg.observed_at)
            except ValueError:
                return ev.error_ack("invalid", "observed_at: not an ISO 8601 time")
        source = self._sources.get(sid)
        vital, created = await self._services.vitals.add(
            actor,
            msg.consultation_id,
            msg.kind,
            msg.value,
            msg.value2,
            msg.client_id,
            observed_at=observed_at,
            device=bool(source and source.streams),
            source=session["source"],
        )
        return ev.VitalsAddAck(ok=True, vital=vital_out(vital), created=created).model_dump(mode="json")

    async def _frame(self, sid: str, data: Any = None) -> dict[str, Any]:
        """The hot path: check, relay to the room at once, acknowledge when committed."""
        source = self._sources.get(sid)
        bucket = self._frame_buckets.get(sid)
        if source is None or bucket is None:
            return ev.error_ack("unauthenticated", "not connected")
        if not bucket.take():
            return ev.error_ack("rate_limited", "too many frames; slow down")
        if not isinstance(data, bytes | bytearray):
            return ev.error_ack("invalid", "a frame is sent as binary, one frame per event")
        loop = asyncio.get_running_loop()
        if loop.time() - source.checked_at > self._settings.source_recheck_s:
            # A revoked or expired token stops a source within this interval, without a lookup per frame.
            source.checked_at = loop.time()
            try:
                await self._fresh_actor(sid, await self.sio.get_session(sid))
            except Unauthenticated as exc:
                return ev.error_ack(exc.code, exc.message)
        payload = bytes(data)
        try:
            accepted = await self._services.waveforms.accept_frame(source.user_id, source.streams, payload)
        except DomainError as exc:
            return ev.error_ack(exc.code, exc.message)
        cid = accepted.stream.consultation_id
        if accepted.relay and cid is not None:
            await self.sio.emit("stream.frame", payload, room=room_of(cid))
        try:
            async with asyncio.timeout(self._settings.commit_timeout_s):
                await asyncio.shield(accepted.committed)
        except TimeoutError:
            return ev.error_ack("unavailable", "not stored yet; keep the frame and send it again")
        except DomainError as exc:
            return ev.error_ack(exc.code, exc.message)
        except Exception:
            return ev.error_ack("unavailable", "the store is unavailable; keep the frame and send it again")
        return {"ok": True, "seq": accepted.seq, "duplicate": not accepted.relay}

    # -- pairing and presence ---------------------------------------------------------------------------------

    async def _pairing_offers(self, sid: str, session: dict[str, Any], msg: ev.PairingOffers) -> dict[str, Any]:
        actor = await self._fresh_actor(sid, session)
        rings = await self._services.pairing.offers_for(actor)
        out = [ev.OfferRing(offer=offer_out(o), consultation=consultation_out(card)) for o, card in rings]
        return ev.PairingOffersAck(ok=True, offers=out).model_dump(mode="json", exclude_none=True)

    async def _pairing_accept(self, sid: str, session: dict[str, Any], msg: ev.PairingAccept) -> dict[str, Any]:
        actor = await self._fresh_actor(sid, session)
        card = await self._services.consultations.accept_card(actor, msg.consultation_id, source=session["source"])
        ack = ev.PairingAcceptAck(ok=True, consultation=consultation_out(card))
        return ack.model_dump(mode="json", exclude_none=True)

    async def _pairing_decline(self, sid: str, session: dict[str, Any], msg: ev.PairingDecline) -> dict[str, Any]:
        actor = await self._fresh_actor(sid, session)
        offer = await self._services.pairing.decline(actor, msg.offer_id, msg.reason, source=session["source"])
        return ev.PairingDeclineAck(ok=True, offer=offer_out(offer)).model_dump(mode="json", exclude_none=True)

    async def _pairing_status(self, sid: str, session: dict[str, Any], msg: ev.PairingWatch) -> dict[str, Any]:
        actor = await self._fresh_actor(sid, session)
        status = await self._services.pairing.status(actor, msg.consultation_id)
        return ev.PairingStatusAck(ok=True, status=status_out(status)).model_dump(mode="json", exclude_none=True)

    async def _pairing_raise(self, sid: str, session: dict[str, Any], msg: ev.PairingRaise) -> dict[str, Any]:
        actor = await self._fresh_actor(sid, session)
        status = await self._services.pairing.raise_urgency(
            actor, msg.consultation_id, msg.urgency, source=session["source"]
        )
        return ev.PairingStatusAck(ok=True, status=status_out(status)).model_dump(mode="json", exclude_none=True)

    async def _pairing_hand(self, sid: str, session: dict[str, Any], msg: ev.PairingHand) -> dict[str, Any]:
        actor = await self._fresh_actor(sid, session)
        offer = await self._services.pairing.hand_to(
            actor, msg.consultation_id, msg.specialist_user_id, source=session["source"]
        )
        return ev.PairingHandAck(ok=True, offer=offer_out(offer)).model_dump(mode="json", exclude_none=True)

    async def _pairing_queue(self, sid: str, session: dict[str, Any], msg: ev.PairingQueue) -> dict[str, Any]:
        actor = await self._fresh_actor(sid, session)
        hub_id = msg.hub_id or actor.facility_id
        cases, staff = await self._services.pairing.hub_queue(actor, hub_id)
        if actor.role is Role.ADMIN and msg.hub_id is not None:
            await self.sio.enter_room(sid, hub_room(hub_id))
        ack = ev.PairingQueueAck(
            ok=True,
            hub_id=hub_id,
            cases=[status_out(c) for c in cases],
            staff=[ev.StaffOut(presence=presence_out(candidate_presence(c)), state=state) for c, state in staff],
        )
        return ack.model_dump(mode="json", exclude_none=True)

    async def _presence_set(self, sid: str, session: dict[str, Any], msg: ev.PresenceSet) -> dict[str, Any]:
        actor = await self._fresh_actor(sid, session)
        # This connection is proof of presence: the lease written at connect runs in the background and may not
        # be in yet, and the answer must not say "offline" to someone who is online (idempotent).
        await self._services.presence.hold(self.instance_id, actor.user_id)
        view = await self._services.presence.set_availability(actor, msg.availability, source=session["source"])
        await self.presence_changed(view)
        self._services.pairing.kick()
        return ev.PresenceSetAck(ok=True, presence=presence_out(view)).model_dump(mode="json", exclude_none=True)

    async def _remove_member(self, consultation_id: int, sid: str) -> None:
        member = await self.rooms.remove(consultation_id, sid)
        if member is None:
            return
        await self.sio.leave_room(sid, room_of(consultation_id))
        left = ev.PeerLeft(consultation_id=consultation_id, peer_id=sid)
        await self.sio.emit("room.peer_left", ev.wire(left), room=room_of(consultation_id))
        try:
            await self._services.consultations.leave(member.user_id, consultation_id, member.connection_id)
        except Exception:
            log.exception("could not record leaving consultation %s", consultation_id)

    # -- Notifier ---------------------------------------------------------------------------------------------

    async def consultation_changed(self, card: RequestCard) -> None:
        c = card.consultation
        payload = ev.wire(ev.ConsultationUpdated(consultation=consultation_out(card)))
        for room in (f"specialty:{c.specialty}", f"facility:{c.requesting_facility_id}", room_of(c.id)):
            await self.sio.emit("consultation.updated", payload, room=room)
        # Oversight sees the queue, not who the patient is.
        redacted = consultation_out(card).model_copy(update={"patient_name": "", "patient_age": 0, "summary": ""})
        await self.sio.emit(
            "consultation.updated", ev.wire(ev.ConsultationUpdated(consultation=redacted)), room=OVERSIGHT
        )
        if c.status in TERMINAL_STATUSES:
            closed = ev.RoomClosed(consultation_id=c.id, status=c.status.value)
            await self.sio.emit("room.closed", ev.wire(closed), room=room_of(c.id))

    async def note_added(self, note: CaseNote) -> None:
        await self.sio.emit(
            "note.added", ev.wire(ev.NoteAdded(note=note_out(note))), room=room_of(note.consultation_id)
        )

    async def vital_added(self, vital: VitalSign) -> None:
        if vital.consultation_id is not None:
            payload = ev.wire(ev.VitalsAdded(vital=vital_out(vital)))
            await self.sio.emit("vitals.added", payload, room=room_of(vital.consultation_id))

    async def stream_opened(self, stream: StreamInfo) -> None:
        if stream.consultation_id is not None:
            payload = ev.wire(ev.StreamOpened(stream=stream_out(stream)))
            await self.sio.emit("stream.opened", payload, room=room_of(stream.consultation_id))

    async def stream_closed(self, stream: StreamInfo) -> None:
        if stream.consultation_id is not None:
            payload = ev.wire(ev.StreamClosed(stream_id=stream.id))
            await self.sio.emit("stream.closed", payload, room=room_of(stream.consultation_id))

    async def heart_rate_derived(self, stream: StreamInfo, bpm: float | None, lead: str, window_s: float) -> None:
        if stream.consultation_id is not None:
            derived = ev.HeartRateDerived(
                stream_id=stream.id, bpm=bpm, lead=lead, window_s=round(window_s, 2), at_sample=stream.next_sample
            )
            await self.sio.emit("stream.heart_rate", ev.wire(derived), room=room_of(stream.consultation_id))

    async def offer_made(self, offer: OfferView, card: RequestCard) -> None:
        ring = ev.OfferRing(offer=offer_out(offer), consultation=consultation_out(card))
        await self.sio.emit("pairing.offer", ev.wire(ring), room=f"user:{offer.specialist_user_id}")

    async def offer_closed(self, offer: OfferView) -> None:
        closed = ev.OfferClosed(offer=offer_out(offer))
        await self.sio.emit("pairing.offer_closed", ev.wire(closed), room=f"user:{offer.specialist_user_id}")

    async def pairing_changed(self, status: PairingStatus) -> None:
        payload = ev.wire(ev.PairingStatusChanged(status=status_out(status)))
        rooms = [f"facility:{status.requesting_facility_id}", room_of(status.consultation_id)]
        rooms += [hub_room(h) for h in status.hub_ids]
        await self.sio.emit("pairing.status", payload, room=rooms)

    async def pairing_escalated(self, status: PairingStatus) -> None:
        payload = ev.wire(ev.PairingStatusChanged(status=status_out(status)))
        await self.sio.emit("pairing.escalated", payload, room=[hub_room(h) for h in status.hub_ids])

    async def presence_changed(self, presence: PresenceView) -> None:
        payload = ev.wire(ev.PresenceUpdated(presence=presence_out(presence)))
        await self.sio.emit("presence.updated", payload, room=[hub_room(presence.hub_id), f"user:{presence.user_id}"])

    async def conference_ended(self, session_id: int) -> None:
        await self.conference.ended(session_id)

    async def notified(self, user_id: int, notification: NotificationView) -> None:
        out = ev.NotificationOut(
            id=notification.id,
            kind=notification.kind,
            text=notification.text,
            conference_id=notification.conference_id,
            created_at=notification.created_at.isoformat(),
        )
        await self.sio.emit("notification.new", ev.wire(ev.NotificationNew(notification=out)), room=f"user:{user_id}")


@dataclass
class _Source:
    user_id: int
    streams: set[int]
    checked_at: float


def _peer(member: Member) -> ev.Peer:
    return ev.Peer(peer_id=member.peer_id, user_id=member.user_id, display_name=member.display_name, role=member.role)


def _source(environ: dict[str, Any], trusted_proxies: list[str]) -> str:
    request = environ.get("aiohttp.request")
    remote = str((getattr(request, "remote", None) if request is not None else None) or environ.get("REMOTE_ADDR", ""))
    return forwarded_client(remote, str(environ.get("HTTP_X_FORWARDED_FOR", "")), trusted_proxies)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "payload"
    return f"{where}: {err.get('msg', 'invalid')}"
