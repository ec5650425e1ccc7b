"""Our server's client of the Janus SFU (VideoRoom plugin, Janus HTTP API). docs/sfu.md explains the design.

The server is the only Janus client. Browsers never see a Janus URL, the ``api_secret``, the VideoRoom
``admin_key``, a room ``secret`` or ``pin``, or a ``private_id``: they hand their SDP to our signaling, which
first asks the conference service whether the actor may take part, then calls the brokering primitives here
on the participant's behalf and relays Janus's SDP back.

Janus's HTTP API, as used here:

- ``POST /janus`` ``{"janus": "create"}`` makes a session; ``POST /janus/<session>`` ``{"janus": "attach"}``
  makes a plugin handle; both answer synchronously (``"success"``).
- ``POST /janus/<session>/<handle>`` ``{"janus": "message", "body": {...}}``: VideoRoom's *synchronous*
  requests (``create``, ``destroy``, ``exists``, ``allowed``, ``listparticipants``, ``kick``) answer in the
  response (``"success"`` with ``plugindata``). Its *asynchronous* requests (``join``, ``publish``,
  ``configure``, ``start``, ``leave``, ``unpublish``) answer ``"ack"`` at once; the result arrives later as an
  ``"event"`` with the same ``transaction`` on the session's long poll.
- ``GET /janus/<session>?maxev=N`` is the long poll: it returns queued events (or a ``keepalive`` after
  about 30 s without any). Events that answer nobody's transaction (a VideoRoom ``event`` carrying
  ``publishers``, ``unpublished`` or ``leaving``; ``destroyed``; core events ``webrtcup``, ``media``,
  ``slowlink``, ``hangup``, ``detached``) go to the handle's queue (``Handle.events``).
- ``{"janus": "keepalive"}`` keeps a session alive (Janus drops it after ``session_timeout`` seconds idle);
  ``{"janus": "trickle"}`` passes ICE candidates; ``{"janus": "detach"}`` / ``{"janus": "destroy"}`` end a
  handle / session.

Every request carries a timeout; the long poll and the keepalive are owned tasks, cancelled by ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

NO_SUCH_SESSION = 458  # Janus's JANUS_ERROR_SESSION_NOT_FOUND

VIDEOROOM = "janus.plugin.videoroom"


class JanusError(Exception):
    """Janus (core or VideoRoom plugin) refused a request."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"Janus error {code}: {reason}")
        self.code = code
        self.reason = reason


# Janus core and VideoRoom error codes the callers may want to tell apart.
UNAUTHORIZED = 403  # core: missing or wrong api_secret
VIDEOROOM_NO_SUCH_ROOM = 426
VIDEOROOM_NO_SUCH_FEED = 428
VIDEOROOM_UNAUTHORIZED = 433  # wrong pin / secret / admin_key, or a subscription without a valid private_id


@dataclass
class Handle:
    """One attached VideoRoom handle (= one PeerConnection on Janus's side)."""

    id: int
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    async def wait_for(self, wanted: str, timeout: float = 10.0) -> dict[str, Any]:
        """Skip this handle's events until one named ``wanted``: a core event (``"webrtcup"``, ``"hangup"``,
        ``"media"``), a VideoRoom one (``"destroyed"``, ``"slow_link"``), or a key of a VideoRoom ``"event"``
        (``"publishers"``, ``"unpublished"``, ``"leaving"``)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                data = event.get("plugindata", {}).get("data", {})
                if wanted in (data.get("videoroom"), event.get("janus")) or wanted in data:
                    return event


@dataclass(frozen=True)
class RoomAccess:
    """What our server keeps per SFU room; never sent to a browser."""

    room: int
    secret: str  # needed to edit/destroy the room
    pin: str  # needed to join it


@dataclass
class Publisher:
    handle: Handle
    publisher_id: int
    private_id: int  # ties this participant's subscriptions to its publisher (room has require_pvtid)
    others: list[dict[str, Any]]  # publishers already in the room: {"id", "display", "streams": [...]}


@dataclass
class Subscription:
    handle: Handle
    offer: dict[str, Any]  # Janus's JSEP offer: {"type": "offer", "sdp": ...}
    streams: list[dict[str, Any]]  # per m-line: {"mid", "feed_id", "type", ...}


class JanusClient:
    """One Janus session over HTTP; many handles (one per participant role) inside it."""

    def __init__(
        self,
        url: str,
        *,
        api_secret: str | None = None,
        admin_key: str | None = None,
        request_timeout_s: float = 10.0,
        keepalive_s: float = 25.0,
        poll_max_events: int = 10,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self._url = url.rstrip("/")
        self._api_secret = api_secret
        self._admin_key = admin_key
        self._timeout = request_timeout_s
        self._keepalive_s = keepalive_s
        self._max_events = poll_max_events
        self._http = http
        self._owns_http = http is None
        self.session_id: int | None = None
        self._handles: dict[int, Handle] = {}
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._lost = False  # Janus forgot our session (it restarted, or we were idle past its timeout)
        self._connecting = asyncio.Lock()

    # -- session ------------------------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        try:
            reply = await self._post(self._url, {"janus": "create"})
        except BaseException:
            await self.close()
            raise
        self.session_id = int(reply["data"]["id"])
        for loop in (self._poll, self._keepalive):
            task = asyncio.create_task(loop(), name=f"janus-{loop.__name__}-{self.session_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def connected(self) -> bool:
        return self.session_id is not None and not self._lost

    async def ensure_connected(self) -> None:
        """(Re)create our Janus session if there is none or Janus lost it. Handles of the old session are gone:
        their participants publish and subscribe again."""
        async with self._connecting:
            if self.connected:
                return
            if self.session_id is not None:
                await self.close()
            self._lost = False
            self._handles.clear()
            await self.connect()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.session_id is not None:
            with contextlib.suppress(JanusError, aiohttp.ClientError, TimeoutError):
                await self._post(self._session_url, {"janus": "destroy"})
            self.session_id = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("Janus session closed"))
        self._pending.clear()
        if self._owns_http and self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> JanusClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def attach(self) -> Handle:
        reply = await self._post(self._session_url, {"janus": "attach", "plugin": VIDEOROOM})
        handle = Handle(int(reply["data"]["id"]))
        self._handles[handle.id] = handle
        return handle

    async def detach(self, handle: Handle) -> None:
        with contextlib.suppress(JanusError):
            await self._post(self._handle_url(handle), {"janus": "detach"})
        self._handles.pop(handle.id, None)

    # -- rooms (synchronous VideoRoom requests) -------------------------------------------------------------------

    async def create_room(
        self,
        room: int | None = None,
        *,
        description: str = "",
        publishers: int = 12,
        bitrate: int = 256_000,
        videocodec: str = "vp8",
        audiocodec: str = "opus",
        fir_freq: int = 10,
    ) -> RoomAccess:
        """A private, non-permanent room with a random secret and pin; subscriptions need a private_id.

        VP8 is the codec Janus simulcasts (the publisher sends up to three layers, each subscriber picks one).
        """
        access = RoomAccess(room or 1 + secrets.randbelow(2**52), secrets.token_urlsafe(24), secrets.token_urlsafe(16))
        await self._create(access, description, publishers, bitrate, videocodec, audiocodec, fir_freq)
        return access

    async def recreate_room(
        self, access: RoomAccess, *, description: str = "", publishers: int = 12, bitrate: int = 256_000
    ) -> RoomAccess:
        """The same room (id, secret, pin) again, after Janus restarted and forgot it. Raises JanusError if it
        exists already (another of our processes recreated it first)."""
        await self._create(access, description, publishers, bitrate, "vp8", "opus", 10)
        return access

    async def _create(
        self,
        access: RoomAccess,
        description: str,
        publishers: int,
        bitrate: int,
        videocodec: str,
        audiocodec: str,
        fir_freq: int,
    ) -> None:
        handle = await self.attach()
        try:
            await self._sync(
                handle,
                {
                    "request": "create",
                    "room": access.room,
                    "description": description,
                    "secret": access.secret,
                    "pin": access.pin,
                    "is_private": True,
                    "permanent": False,
                    "require_pvtid": True,
                    "publishers": publishers,
                    "bitrate": bitrate,
                    "bitrate_cap": True,
                    "fir_freq": fir_freq,
                    "videocodec": videocodec,
                    "audiocodec": audiocodec,
                    "notify_joining": True,
                }
                | ({"admin_key": self._admin_key} if self._admin_key is not None else {}),
            )
        finally:
            await self.detach(handle)

    async def destroy_room(self, access: RoomAccess) -> None:
        """Janus tells every participant (``destroyed``) and hangs up their PeerConnections."""
        handle = await self.attach()
        try:
            await self._sync(handle, {"request": "destroy", "room": access.room, "secret": access.secret})
        finally:
            await self.detach(handle)

    async def room_exists(self, room: int) -> bool:
        handle = await self.attach()
        try:
            return bool((await self._sync(handle, {"request": "exists", "room": room}))["exists"])
        finally:
            await self.detach(handle)

    async def participants(self, access: RoomAccess) -> list[dict[str, Any]]:
        handle = await self.attach()
        try:
            data = await self._sync(handle, {"request": "listparticipants", "room": access.room})
            return list(data.get("participants", []))
        finally:
            await self.detach(handle)

    async def kick(self, access: RoomAccess, publisher_id: int) -> None:
        handle = await self.attach()
        try:
            await self._sync(
                handle, {"request": "kick", "room": access.room, "secret": access.secret, "id": publisher_id}
            )
        finally:
            await self.detach(handle)

    # -- brokering on a participant's behalf (asynchronous VideoRoom requests) --------------------------------------

    async def join_as_publisher(self, access: RoomAccess, display: str) -> Publisher:
        handle = await self.attach()
        try:
            data, _ = await self._async(
                handle,
                {"request": "join", "ptype": "publisher", "room": access.room, "pin": access.pin, "display": display},
            )
        except BaseException:
            await self.detach(handle)
            raise
        return Publisher(handle, int(data["id"]), int(data["private_id"]), list(data.get("publishers", [])))

    async def publish(
        self, publisher: Publisher, offer: dict[str, Any], *, bitrate: int | None = None
    ) -> dict[str, Any]:
        """The participant's SDP offer in, Janus's answer out.

        An audio-only site simply offers no video m-line (or a simulcast one, three layers, when it can afford
        the upload); ``bitrate`` caps what Janus asks this publisher to send (REMB).
        """
        body: dict[str, Any] = {"request": "publish"}
        if bitrate is not None:
            body["bitrate"] = bitrate
        _, jsep = await self._async(publisher.handle, body, self._jsep(offer))
        if jsep is None:
            raise JanusError(0, "Janus answered publish without SDP")
        return jsep

    async def configure_publisher(self, publisher: Publisher, streams: Sequence[dict[str, Any]]) -> None:
        """E.g. ``[{"mid": "1", "send": False}]`` to stop forwarding a weak site's video (audio-only)."""
        await self._async(publisher.handle, {"request": "configure", "streams": list(streams)})

    async def subscribe(self, access: RoomAccess, feed_ids: Sequence[int], private_id: int) -> Subscription:
        """One subscriber handle (one PeerConnection, multistream) for many feeds; Janus makes the offer."""
        handle = await self.attach()
        try:
            data, jsep = await self._async(
                handle,
                {
                    "request": "join",
                    "ptype": "subscriber",
                    "room": access.room,
                    "pin": access.pin,
                    "private_id": private_id,
                    "streams": [{"feed": feed} for feed in feed_ids],
                },
            )
        except BaseException:
            await self.detach(handle)
            raise
        if jsep is None:
            await self.detach(handle)
            raise JanusError(0, "Janus answered a subscription without SDP")
        return Subscription(handle, jsep, list(data.get("streams", [])))

    async def start(self, subscription: Subscription, answer: dict[str, Any]) -> None:
        await self._async(subscription.handle, {"request": "start"}, self._jsep(answer))

    async def configure_subscriber(
        self, subscription: Subscription, mid: str, *, substream: int | None = None, temporal: int | None = None
    ) -> None:
        """Pick a simulcast layer for one received stream: substream 0 / temporal 0 is the lightest."""
        stream: dict[str, Any] = {"mid": mid}
        if substream is not None:
            stream["substream"] = substream
        if temporal is not None:
            stream["temporal"] = temporal
        await self._async(subscription.handle, {"request": "configure", "streams": [stream]})

    async def trickle(self, handle: Handle, candidate: dict[str, Any] | None) -> None:
        """A browser's ICE candidate (``{"candidate", "sdpMid", "sdpMLineIndex"}``); ``None`` = gathering done."""
        body: dict[str, Any] = {"janus": "trickle"}
        body["candidate"] = candidate if candidate is not None else {"completed": True}
        await self._post(self._handle_url(handle), body)

    async def leave(self, handle: Handle) -> None:
        with contextlib.suppress(JanusError):
            await self._async(handle, {"request": "leave"})
        await self.detach(handle)

    # -- plumbing -------------------------------------------------------------------------------------------------

    @property
    def _session_url(self) -> str:
        if self.session_id is None:
            raise ConnectionError("Janus session not connected")
        return f"{self._url}/{self.session_id}"

    def _handle_url(self, handle: Handle) -> str:
        return f"{self._session_url}/{handle.id}"

    @staticmethod
    def _jsep(description: dict[str, Any]) -> dict[str, Any]:
        jsep = {"type": description["type"], "sdp": description["sdp"]}
        if "trickle" in description:
            jsep["trickle"] = bool(description["trickle"])
        return jsep

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self._http is not None, "connect() first"
        message = {**body, "transaction": secrets.token_hex(8)}
        if self._api_secret is not None:
            message["apisecret"] = self._api_secret
        async with self._http.post(url, json=message, timeout=aiohttp.ClientTimeout(total=self._timeout)) as response:
            reply: dict[str, Any] = await response.json(content_type=None)
        if reply.get("janus") == "error":
            raise self._error(reply)
        return reply

    async def _sync(self, handle: Handle, body: dict[str, Any]) -> dict[str, Any]:
        reply = await self._post(self._handle_url(handle), {"janus": "message", "body": body})
        data: dict[str, Any] = reply.get("plugindata", {}).get("data", {})
        self._raise_plugin_error(data)
        return data

    async def _async(
        self, handle: Handle, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Send an asynchronous request; wait for the event that answers its transaction."""
        assert self._http is not None, "connect() first"
        transaction = secrets.token_hex(8)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = future
        message: dict[str, Any] = {"janus": "message", "body": body, "transaction": transaction}
        if jsep is not None:
            message["jsep"] = jsep
        if self._api_secret is not None:
            message["apisecret"] = self._api_secret
        try:
            async with asyncio.timeout(self._timeout):
                async with self._http.post(self._handle_url(handle), json=message) as response:
                    reply: dict[str, Any] = await response.json(content_type=None)
                if reply.get("janus") == "error":
                    raise self._error(reply)
                if reply.get("janus") == "success":  # a request Janus handled synchronously after all
                    event = reply
                else:
                    event = await future
        finally:
            self._pending.pop(transaction, None)
        data: dict[str, Any] = event.get("plugindata", {}).get("data", {})
        self._raise_plugin_error(data)
        return data, event.get("jsep")

    def _error(self, reply: dict[str, Any]) -> JanusError:
        error = reply.get("error", {})
        code = int(error.get("code", 0))
        if code == NO_SUCH_SESSION:
            self._lost = True  # Janus restarted or dropped us: ensure_connected() makes a new session
        return JanusError(code, str(error.get("reason", "")))

    @staticmethod
    def _raise_plugin_error(data: dict[str, Any]) -> None:
        if "error_code" in data or "error" in data:
            raise JanusError(int(data.get("error_code", 0)), str(data.get("error", "")))

    async def _poll(self) -> None:
        """The session's long poll: answers to pending transactions, everything else to the handle's queue."""
        assert self._http is not None
        params = {"maxev": str(self._max_events)}
        if self._api_secret is not None:
            params["apisecret"] = self._api_secret
        while True:
            try:
                async with self._http.get(
                    self._session_url, params=params, timeout=aiohttp.ClientTimeout(total=self._timeout + 40)
                ) as response:
                    payload = await response.json(content_type=None)
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("Janus long poll failed (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            for event in payload if isinstance(payload, list) else [payload]:
                if event.get("janus") == "error" and int(event.get("error", {}).get("code", 0)) == NO_SUCH_SESSION:
                    log.warning("Janus lost our session; it is created again on next use")
                    self._lost = True
                    return
                self._dispatch(event)

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("janus")
        if kind == "keepalive":
            return
        future = self._pending.get(str(event.get("transaction")))
        if kind == "event" and future is not None and not future.done():
            future.set_result(event)
            return
        if kind == "error" and future is not None and not future.done():
            error = event.get("error", {})
            future.set_exception(JanusError(int(error.get("code", 0)), str(error.get("reason", ""))))
            return
        handle = self._handles.get(int(event.get("sender", 0) or 0))
        if handle is not None:
            handle.events.put_nowait(event)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self._keepalive_s)
            try:
                await self._post(self._session_url, {"janus": "keepalive"})
            except asyncio.CancelledError:
                raise
            except JanusError as exc:
                if exc.code == NO_SUCH_SESSION:
                    self._lost = True
                    return
                log.warning("Janus keepalive failed: %s", exc)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("Janus keepalive failed: %s", exc)
