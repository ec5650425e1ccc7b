"""A Python WebRTC participant (aiortc) that joins a consultation room through the signaling server.

This is how device gateways and load tests take part in a room: the same socket.io protocol as the
browser (docs/signaling.md), the same authorization, peer-to-peer media and data channels. aiortc gathers
ICE candidates before it sends a description (no trickle from this side) and accepts trickled candidates
from browsers. It never initiates renegotiation, so it needs no rollback: when it joins, it offers to the
peers already there; later arrivals offer to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

log = logging.getLogger(__name__)
DATA_CHANNEL_LABEL = "teleconsult"


class SignalingRefused(Exception):
    """The server answered an event with ``{"ok": false}``."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = str(error.get("code"))


@dataclass
class RemotePeer:
    peer_id: str
    pc: RTCPeerConnection
    tracks: list[MediaStreamTrack] = field(default_factory=list)
    channel: RTCDataChannel | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    channel_open: asyncio.Event = field(default_factory=asyncio.Event)
    messages: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)


class RoomPeer:
    def __init__(
        self,
        server_url: str,
        token: str,
        consultation_id: int,
        *,
        track_factory: Callable[[], Sequence[MediaStreamTrack]] = lambda: (),
        signal_timeout_s: float = 10.0,
    ) -> None:
        self._url = server_url
        self._token = token
        self.consultation_id = consultation_id
        self._track_factory = track_factory
        self._timeout = signal_timeout_s
        self.sio = socketio.AsyncClient(reconnection=False)
        self.peers: dict[str, RemotePeer] = {}
        self.peer_id: str | None = None
        self._ice_servers: list[RTCIceServer] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.sio.on("rtc.signal", self._on_signal)
        self.sio.on("room.peer_left", self._on_peer_left)

    async def join(self) -> dict[str, Any]:
        await self.sio.connect(
            self._url, auth={"token": self._token}, transports=["websocket"], wait_timeout=self._timeout
        )
        ack = await self._call("room.join", {"consultation_id": self.consultation_id})
        self.peer_id = ack["peer_id"]
        self._ice_servers = [RTCIceServer(**s) for s in ack.get("ice_servers", [])]
        for participant in ack.get("participants", []):
            await self._offer_to(participant["peer_id"])
        return ack

    async def wait_connected(self, peer_id: str | None = None, timeout: float = 15.0) -> RemotePeer:
        """Wait until a peer connection (the given one, else the first) reaches 'connected'."""
        async with asyncio.timeout(timeout):
            while True:
                candidates = [self.peers[peer_id]] if peer_id in self.peers else list(self.peers.values())
                for peer in candidates:
                    if peer.connected.is_set():
                        return peer
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        for peer in list(self.peers.values()):
            await peer.pc.close()
        self.peers.clear()
        for task in list(self._tasks):
            task.cancel()
        if self.sio.connected:
            await self.sio.disconnect()

    # -- signaling ----------------------------------------------------------------------------------------------

    async def _call(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        ack = await self.sio.call(event, payload, timeout=self._timeout)
        if not isinstance(ack, dict) or not ack.get("ok"):
            raise SignalingRefused(ack.get("error", {}) if isinstance(ack, dict) else {"code": "invalid"})
        return ack

    async def _send_description(self, to: str, pc: RTCPeerConnection) -> None:
        desc = pc.localDescription
        await self._call(
            "rtc.signal",
            {"consultation_id": self.consultation_id, "to": to, "description": {"type": desc.type, "sdp": desc.sdp}},
        )

    def _peer(self, peer_id: str) -> RemotePeer:
        if peer_id in self.peers:
            return self.peers[peer_id]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self._ice_servers or None))
        remote = RemotePeer(peer_id, pc)
        self.peers[peer_id] = remote

        @pc.on("connectionstatechange")
        async def _state() -> None:
            if pc.connectionState == "connected":
                remote.connected.set()

        @pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            remote.tracks.append(track)

        @pc.on("datachannel")
        def _channel(channel: RTCDataChannel) -> None:
            self._watch_channel(remote, channel)

        for track in self._track_factory():
            pc.addTrack(track)
        return remote

    def _watch_channel(self, remote: RemotePeer, channel: RTCDataChannel) -> None:
        remote.channel = channel
        if channel.readyState == "open":
            remote.channel_open.set()

        @channel.on("open")
        def _open() -> None:
            remote.channel_open.set()

        @channel.on("message")
        def _message(message: Any) -> None:
            remote.messages.put_nowait(message)

    async def _offer_to(self, peer_id: str) -> None:
        remote = self._peer(peer_id)
        self._watch_channel(remote, remote.pc.createDataChannel(DATA_CHANNEL_LABEL))
        await remote.pc.setLocalDescription(await remote.pc.createOffer())
        await self._send_description(peer_id, remote.pc)

    async def _on_signal(self, data: dict[str, Any]) -> None:
        if data.get("consultation_id") != self.consultation_id:
            return
        sender = str(data.get("from"))
        try:
            description = data.get("description")
            if description:
                await self._on_description(sender, description)
            elif data.get("candidate"):
                await self._on_candidate(sender, data["candidate"])
        except Exception:
            log.exception("could not apply a signal from a peer")

    async def _on_description(self, sender: str, description: dict[str, Any]) -> None:
        remote = self._peer(sender)
        await remote.pc.setRemoteDescription(RTCSessionDescription(sdp=description["sdp"], type=description["type"]))
        if description["type"] == "offer":
            await remote.pc.setLocalDescription(await remote.pc.createAnswer())
            await self._send_description(sender, remote.pc)

    async def _on_candidate(self, sender: str, candidate: dict[str, Any]) -> None:
        remote = self.peers.get(sender)
        line = str(candidate.get("candidate") or "")
        if remote is None or not line:
            return
        parsed = candidate_from_sdp(line.split(":", 1)[1] if line.startswith("candidate:") else line)
        parsed.sdpMid = candidate.get("sdpMid")
        parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
        await remote.pc.addIceCandidate(parsed)

    async def _on_peer_left(self, data: dict[str, Any]) -> None:
        remote = self.peers.pop(str(data.get("peer_id")), None)
        if remote is not None:
            await remote.pc.close()
