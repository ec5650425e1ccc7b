"""The conference room over socket.io: enter / lobby / admit, agenda, notes, decisions, and Janus brokering.

Thin like the rest of signaling: ``ConferenceRoomService`` decides who may do what; this module keeps, per
connection, the Janus handles it opened on that participant's behalf and relays SDP between the participant and
Janus. Browsers never talk to Janus and never see its secrets, room pin or private ids (docs/sfu.md).

Socket.io rooms: ``conference:<session>`` (everyone in the room) and ``conference-hosts:<session>`` (hosts:
knocks from the lobby). Each site publishes at most one stream (one audio + at most one video m-line); each
participant receives the others through one multistream subscription (or several, as publishers arrive).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from signaling import events as ev
from teleconsult.domain.errors import PermissionDenied, Unavailable, ValidationFailed
from teleconsult.domain.people import Actor
from teleconsult.services.conference_records import AgendaCase, DecisionView, NoteView, Stay
from teleconsult.services.conference_room import Entered, LobbyEntry
from teleconsult.sfu import JanusClient, JanusError, Publisher, Subscription

if TYPE_CHECKING:
    from signaling.server import SignalingServer

log = logging.getLogger(__name__)

MAX_AUDIO_LINES, MAX_VIDEO_LINES = 1, 1
PUBLISH_UP_TIMEOUT_S = 30.0


def conference_room(session_id: int) -> str:
    return f"conference:{session_id}"


def hosts_room(session_id: int) -> str:
    return f"conference-hosts:{session_id}"


@dataclass
class _Media:
    """What this process opened on Janus for one connection in one session."""

    session_id: int
    user_id: int
    publisher: Publisher | None = None  # joined as publisher (needed for the private id even when only listening)
    publishing: bool = False
    subscriptions: dict[int, Subscription] = field(default_factory=dict)


class ConferenceSignaling:
    def __init__(self, server: SignalingServer) -> None:
        self._server = server
        self._sio = server.sio
        self._room = server.services.conference_room
        self._media: dict[str, _Media] = {}
        self._sessions: dict[str, set[int]] = {}  # sid -> sessions entered on that connection

    def handlers(self) -> dict[str, Any]:
        return {
            "conference.enter": self._enter,
            "conference.leave": self._leave,
            "conference.admit": self._admit,
            "conference.case": self._case,
            "conference.note": self._note,
            "conference.decide": self._decide,
            "conference.end": self._end,
            "conference.publish": self._publish,
            "conference.unpublish": self._unpublish,
            "conference.subscribe": self._subscribe,
            "conference.start": self._start,
            "conference.layer": self._layer,
        }

    def _connection(self, sid: str) -> str:
        return f"{self._server.instance_id}:{sid}"

    # -- entering and leaving ----------------------------------------------------------------------------------

    async def _enter(self, sid: str, session: dict[str, Any], msg: ev.ConferenceEnter) -> dict[str, Any]:
        actor = await self._server.fresh_actor(sid, session)
        entered = await self._room.enter(actor, msg.conference_id, self._connection(sid), source=session["source"])
        ack = ev.ConferenceEnterAck(
            ok=True, entry=entered.entry.value, is_host=entered.is_host, opens_at=_iso(entered.opens_at)
        )
        if entered.session is None:
            return _dump(ack)
        sid_session = entered.session.id
        ack = ack.model_copy(update={"session": _session_out(entered)})
        if entered.entry.value == "lobby" and not entered.knocked:
            return _dump(ack)
        if entered.entry.value == "lobby":
            admission = [e for e in await self._room.lobby_of(sid_session) if e.user_id == actor.user_id]
            for entry in admission:
                knock = ev.ConferenceKnock(entry=_lobby_out(entry))
                await self._sio.emit("conference.knock", ev.wire(knock), room=hosts_room(sid_session))
            return _dump(ack)
        if entered.entry.value != "enter":
            return _dump(ack)
        await self._sio.enter_room(sid, conference_room(sid_session))
        if entered.is_host:
            await self._sio.enter_room(sid, hosts_room(sid_session))
        self._sessions.setdefault(sid, set()).add(sid_session)
        present = await self._room.present(sid_session)
        me = ev.ConferenceParticipantOut(
            user_id=actor.user_id,
            display_name=actor.display_name,
            facility_id=actor.facility_id,
            facility_name=next((p.facility_name for p in present if p.user_id == actor.user_id), ""),
        )
        await self._sio.emit(
            "conference.entered",
            ev.wire(ev.ConferenceEntered(session_id=sid_session, participant=me)),
            room=conference_room(sid_session),
            skip_sid=sid,
        )
        ack = ack.model_copy(
            update={
                "cases": [_case_out(c) for c in entered.cases],
                "participants": [_participant_out(p) for p in present],
                "publishers": await self._publishers(actor, sid, sid_session, present),
                "lobby": [_lobby_out(e) for e in entered.lobby],
                "ice_servers": [ev.IceServer(**s) for s in self._server.ice_servers(actor)],
            }
        )
        return _dump(ack)

    async def _publishers(
        self, actor: Actor, sid: str, session_id: int, present: list[Stay]
    ) -> list[ev.ConferencePublisherOut]:
        """Who sends a stream now, from Janus (every process's participants are there)."""
        try:
            access = await self._room.media_access(actor, session_id, self._connection(sid))
            participants = await self._sfu().participants(access)
        except Unavailable:
            return []
        except (JanusError, OSError, TimeoutError, aiohttp.ClientError):
            return []
        names = {p.user_id: p for p in present}
        found = []
        for p in participants:
            parsed = _parse_display(str(p.get("display", "")))
            if not p.get("publisher") or parsed is None:
                continue
            user_id, audio_only = parsed
            stay = names.get(user_id)
            found.append(
                ev.ConferencePublisherOut(
                    publisher_id=int(p["id"]),
                    user_id=user_id,
                    display_name=stay.display_name if stay else "",
                    facility_name=stay.facility_name if stay else "",
                    audio_only=audio_only,
                )
            )
        return found

    async def _leave(self, sid: str, session: dict[str, Any], msg: ev.ConferenceSessionRef) -> dict[str, Any]:
        await self._leave_session(sid, msg.session_id)
        return {"ok": True}

    async def disconnected(self, sid: str) -> None:
        for session_id in list(self._sessions.get(sid, ())):
            await self._leave_session(sid, session_id)
        self._sessions.pop(sid, None)

    async def _leave_session(self, sid: str, session_id: int) -> None:
        entered = self._sessions.get(sid, set())
        entered.discard(session_id)
        await self._release_media(sid, session_id)
        await self._sio.leave_room(sid, conference_room(session_id))
        await self._sio.leave_room(sid, hosts_room(session_id))
        try:
            left = await self._room.leave(self._connection(sid))
        except Exception:
            log.exception("could not record leaving a conference session")
            return
        for stay in left:
            gone = ev.ConferenceLeft(session_id=stay.session_id, user_id=stay.user_id, facility_id=stay.facility_id)
            await self._sio.emit("conference.left", ev.wire(gone), room=conference_room(stay.session_id))

    # -- the host's controls -----------------------------------------------------------------------------------

    async def _admit(self, sid: str, session: dict[str, Any], msg: ev.ConferenceAdmit) -> dict[str, Any]:
        actor = await self._server.fresh_actor(sid, session)
        entry = await self._room.admit(actor, msg.session_id, msg.user_id, msg.admit, source=session["source"])
        payload = ev.wire(ev.ConferenceAdmission(entry=_lobby_out(entry)))
        await self._sio.emit("conference.admission", payload, room=[f"user:{msg.user_id}", hosts_room(msg.session_id)])
        return _dump(ev.ConferenceAdmitAck(ok=True, admission=_lobby_out(entry)))

    async def _case(self, sid: str, session: dict[str, Any], msg: ev.ConferenceCase) -> dict[str, Any]:
        actor = await self._server.fresh_actor(sid, session)
        position = await self._room.set_case(actor, msg.session_id, msg.position, source=session["source"])
        changed = ev.ConferenceCaseChanged(session_id=msg.session_id, position=position)
        await self._sio.emit("conference.case", ev.wire(changed), room=conference_room(msg.session_id))
        return {"ok": True}

    async def _end(self, sid: str, session: dict[str, Any], msg: ev.ConferenceSessionRef) -> dict[str, Any]:
        actor = await self._server.fresh_actor(sid, session)
        await self._room.end(actor, msg.session_id, source=session["source"])  # the notifier tells the room
        return {"ok": True}

    async def ended(self, session_id: int) -> None:
        await self._sio.emit(
            "conference.ended", ev.wire(ev.ConferenceEnded(session_id=session_id)), room=conference_room(session_id)
        )
        for sid, media in list(self._media.items()):
            if media.session_id == session_id:
                await self._release_media(sid, session_id)

    # -- notes and decisions -----------------------------------------------------------------------------------

    async def _note(self, sid: str, session: dict[str, Any], msg: ev.ConferenceNote) -> dict[str, Any]:
        actor = await self._server.fresh_actor(sid, session)
        note = await self._room.add_note(
            actor, msg.session_id, msg.agenda_item_id, msg.client_id, msg.text, source=session["source"]
        )
        out = _note_out(note)
        await self._sio.emit(
            "conference.note_added", ev.wire(ev.ConferenceNoteAdded(note=out)), room=conference_room(msg.session_id)
        )
        return _dump(ev.ConferenceNoteAck(ok=True, note=out))

    async def _decide(self, sid: str, session: dict[str, Any], msg: ev.ConferenceDecide) -> dict[str, Any]:
        actor = await self._server.fresh_actor(sid, session)
        decision = await self._room.decide(
            actor,
            msg.session_id,
            msg.agenda_item_id,
            msg.recommendation,
            msg.icd10,
            msg.outcome,
            expected_version=msg.expected_version,
            source=session["source"],
        )
        out = _decision_out(decision)
        await self._sio.emit(
            "conference.decided", ev.wire(ev.ConferenceDecided(decision=out)), room=conference_room(msg.session_id)
        )
        return _dump(ev.ConferenceDecideAck(ok=True, decision=out))

    # -- media through Janus -------------------------------------------------------------------------------------

    def _sfu(self) -> JanusClient:
        sfu = self._room.sfu
        if sfu is None:
            raise Unavailable("this server has no SFU configured; video is not available in conferences")
        return sfu

    async def _publish(self, sid: str, session: dict[str, Any], msg: ev.ConferencePublish) -> dict[str, Any]:
        actor = await self._server.fresh_actor(sid, session)
        if msg.description.type != "offer":
            raise ValidationFailed("publish with an offer", field="description")
        _check_one_stream(msg.description.sdp, audio_only=msg.audio_only)
        access = await self._room.media_access(actor, msg.session_id, self._connection(sid))
        media = await self._media_of(sid, actor, msg.session_id)
        if media.publishing:
            await self._release_media(sid, msg.session_id)
            media = await self._media_of(sid, actor, msg.session_id)
        sfu = self._sfu()
        try:
            if media.publisher is None:
                display = f"{actor.user_id}:{'a' if msg.audio_only else 'v'}"
                media.publisher = await sfu.join_as_publisher(access, display)
            answer = await sfu.publish(
                media.publisher,
                msg.description.model_dump(),
                bitrate=self._server.settings.conference_publisher_bitrate,
            )
        except JanusError as exc:
            raise ValidationFailed(f"the video server refused the stream ({exc.code})", field="description") from None
        media.publishing = True
        stays = {s.user_id: s for s in await self._room.present(msg.session_id)}
        stay = stays.get(actor.user_id)
        publisher = ev.ConferencePublisherOut(
            publisher_id=media.publisher.publisher_id,
            user_id=actor.user_id,
            display_name=actor.display_name,
            facility_name=stay.facility_name if stay else "",
            audio_only=msg.audio_only,
        )
        self._server.spawn(self._announce_when_up(sid, msg.session_id, media.publisher, publisher))
        return _dump(
            ev.ConferencePublishAck(
                ok=True,
                description=ev.SessionDescription(type="answer", sdp=str(answer["sdp"])),
                publisher_id=media.publisher.publisher_id,
            )
        )

    async def _announce_when_up(
        self, sid: str, session_id: int, handle_of: Publisher, publisher: ev.ConferencePublisherOut
    ) -> None:
        """Tell the room once Janus has the site's media (before that a subscription to it is refused)."""
        try:
            await handle_of.handle.wait_for("webrtcup", timeout=PUBLISH_UP_TIMEOUT_S)
        except TimeoutError:
            log.info("a site's stream never reached the SFU")
            return
        await self._sio.emit(
            "conference.published",
            ev.wire(ev.ConferencePublished(session_id=session_id, publisher=publisher)),
            room=conference_room(session_id),
            skip_sid=sid,
        )

    async def _unpublish(self, sid: str, session: dict[str, Any], msg: ev.ConferenceSessionRef) -> dict[str, Any]:
        await self._server.fresh_actor(sid, session)
        await self._release_media(sid, msg.session_id)
        return {"ok": True}

    async def _subscribe(self, sid: str, session: dict[str, Any], msg: ev.ConferenceSubscribe) -> dict[str, Any]:
        actor = await self._server.fresh_actor(sid, session)
        access = await self._room.media_access(actor, msg.session_id, self._connection(sid))
        media = await self._media_of(sid, actor, msg.session_id)
        sfu = self._sfu()
        try:
            if media.publisher is None:  # a listener still needs a private id to subscribe with
                media.publisher = await sfu.join_as_publisher(access, f"{actor.user_id}:l")
            own = media.publisher.publisher_id
            feeds = [p for p in dict.fromkeys(msg.publisher_ids) if p != own]
            if not feeds:
                raise ValidationFailed("nothing to subscribe to", field="publisher_ids")
            subscription = await sfu.subscribe(access, feeds, media.publisher.private_id)
        except JanusError as exc:
            raise ValidationFailed(
                f"the video server refused the subscription ({exc.code})", field="publisher_ids"
            ) from None
        media.subscriptions[subscription.handle.id] = subscription
        streams = [
            ev.ConferenceStreamOut(
                mid=str(s.get("mid")),
                publisher_id=int(s["feed_id"]) if s.get("feed_id") is not None else None,
                type=str(s.get("type", "")),
            )
            for s in subscription.streams
        ]
        return _dump(
            ev.ConferenceSubscribeAck(
                ok=True,
                description=ev.SessionDescription(type="offer", sdp=str(subscription.offer["sdp"])),
                streams=streams,
                subscription_id=subscription.handle.id,
            )
        )

    async def _start(self, sid: str, session: dict[str, Any], msg: ev.ConferenceStart) -> dict[str, Any]:
        await self._server.fresh_actor(sid, session)
        if msg.description.type != "answer":
            raise ValidationFailed("start with an answer", field="description")
        subscription = self._subscription(sid, msg.session_id, msg.subscription_id)
        try:
            await self._sfu().start(subscription, msg.description.model_dump())
        except JanusError as exc:
            raise ValidationFailed(f"the video server refused the answer ({exc.code})", field="description") from None
        return {"ok": True}

    async def _layer(self, sid: str, session: dict[str, Any], msg: ev.ConferenceLayer) -> dict[str, Any]:
        await self._server.fresh_actor(sid, session)
        subscription = self._subscription(sid, msg.session_id, msg.subscription_id)
        try:
            await self._sfu().configure_subscriber(
                subscription, msg.mid, substream=msg.substream, temporal=msg.temporal
            )
        except JanusError as exc:
            raise ValidationFailed(f"the video server refused the layer ({exc.code})", field="mid") from None
        return {"ok": True}

    async def _media_of(self, sid: str, actor: Actor, session_id: int) -> _Media:
        media = self._media.get(sid)
        if media is not None and media.session_id != session_id:
            await self._release_media(sid, media.session_id)
            media = None
        if media is None:
            media = self._media[sid] = _Media(session_id, actor.user_id)
        return media

    def _subscription(self, sid: str, session_id: int, subscription_id: int) -> Subscription:
        media = self._media.get(sid)
        if media is None or media.session_id != session_id or subscription_id not in media.subscriptions:
            raise PermissionDenied("no such subscription on this connection")
        return media.subscriptions[subscription_id]

    async def _release_media(self, sid: str, session_id: int) -> None:
        media = self._media.get(sid)
        if media is None or media.session_id != session_id:
            return
        del self._media[sid]
        sfu = self._room.sfu
        if sfu is None:
            return
        for subscription in media.subscriptions.values():
            await _quietly(sfu.leave(subscription.handle))
        if media.publisher is not None:
            await _quietly(sfu.leave(media.publisher.handle))
            if media.publishing:
                gone = ev.ConferenceUnpublished(session_id=session_id, publisher_id=media.publisher.publisher_id)
                await self._sio.emit("conference.unpublished", ev.wire(gone), room=conference_room(session_id))


async def _quietly(coro: Any) -> None:
    try:
        await coro
    except (JanusError, OSError, TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
        log.info("Janus handle already gone: %s", type(exc).__name__)


def _check_one_stream(sdp: str, *, audio_only: bool) -> None:
    """Each site uploads one stream: at most one audio and one video m-line (none when audio-only)."""
    audio = sum(1 for line in sdp.splitlines() if line.startswith("m=audio"))
    video = sum(1 for line in sdp.splitlines() if line.startswith("m=video"))
    if audio > MAX_AUDIO_LINES or video > MAX_VIDEO_LINES or (audio_only and video) or audio + video == 0:
        raise ValidationFailed(
            "a site publishes one stream: one audio and at most one video (none when audio-only)", field="description"
        )


def _parse_display(display: str) -> tuple[int, bool] | None:
    user, _, kind = display.partition(":")
    if not user.isdigit() or kind not in ("a", "v"):
        return None
    return int(user), kind == "a"


def _iso(at: Any) -> str | None:
    return at.isoformat() if at is not None else None


def _dump(model: ev.Ack) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _session_out(entered: Entered) -> ev.ConferenceSessionOut:
    s = entered.session
    assert s is not None
    return ev.ConferenceSessionOut(
        id=s.id,
        conference_id=s.conference_id,
        title=s.title,
        purpose=s.purpose,
        starts_at=s.starts_at.isoformat(),
        ends_at=s.ends_at.isoformat(),
        status=s.status,
        current_position=s.current_position,
        media=s.media,
    )


def _note_out(n: NoteView) -> ev.ConferenceNoteOut:
    return ev.ConferenceNoteOut(
        id=n.id,
        session_id=n.session_id,
        agenda_item_id=n.agenda_item_id,
        author_user_id=n.author_user_id,
        author_name=n.author_name,
        text=n.text,
        created_at=n.created_at.isoformat(),
        client_id=n.client_id,
    )


def _decision_out(d: DecisionView) -> ev.ConferenceDecisionOut:
    return ev.ConferenceDecisionOut(
        session_id=d.session_id,
        agenda_item_id=d.agenda_item_id,
        recommendation=d.recommendation,
        icd10=d.icd10,
        outcome=d.outcome.value,
        version=d.version,
        decided_by_user_id=d.decided_by_user_id,
        decided_by_name=d.decided_by_name,
        decided_at=d.decided_at.isoformat(),
    )


def _case_out(c: AgendaCase) -> ev.ConferenceCaseOut:
    return ev.ConferenceCaseOut(
        item_id=c.item_id,
        position=c.position,
        presenter_user_id=c.presenter_user_id,
        presenter_name=c.presenter_name,
        patient_id=c.patient_id,
        patient_name=c.patient_name,
        patient_age=c.patient_age,
        patient_sex=c.patient_sex,
        consultation_id=c.consultation_id,
        specialty=c.specialty,
        urgency=c.urgency,
        summary=c.summary,
        vitals=[
            ev.ConferenceVitalOut(
                kind=v.kind, value=v.value, value2=v.value2, unit=v.unit, observed_at=v.observed_at.isoformat()
            )
            for v in c.vitals
        ],
        notes=[_note_out(n) for n in c.notes],
        decision=_decision_out(c.decision) if c.decision else None,
    )


def _participant_out(s: Stay) -> ev.ConferenceParticipantOut:
    return ev.ConferenceParticipantOut(
        user_id=s.user_id, display_name=s.display_name, facility_id=s.facility_id, facility_name=s.facility_name
    )


def _lobby_out(e: LobbyEntry) -> ev.LobbyOut:
    return ev.LobbyOut(
        session_id=e.session_id,
        user_id=e.user_id,
        display_name=e.display_name,
        facility_name=e.facility_name,
        role=e.role,
        status=e.status,
        asked_at=e.asked_at.isoformat(),
    )
