"""TURN through a real coturn on loopback (issue 4: clinics behind NAT).

A participant who joins a room gets short-lived coturn credentials in the ``room.join`` ack; two aiortc peers
restricted to relayed candidates (as if no direct path existed) connect through coturn with them and exchange
data-channel messages. A credential that was not signed with the shared secret, names another user, or has
expired gets no relay allocation, so the peers cannot connect.

Relay-only ICE uses aiortc's public ``RTCConfiguration(iceTransportPolicy=RTCIceTransportPolicy.RELAY)``
(aiortc 1.16 passes it to ``aioice.Connection(transport_policy=TransportPolicy.RELAY)``, which then gathers
no host or server-reflexive candidates). aiortc has no public "selected candidate pair" API, so the nominated
pair is read from the aioice connection behind ``RTCIceTransport`` (``_connection._nominated``); the public
candidate lists are checked as well.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import socketio
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
)
from aiortc.rtcicetransport import RTCIceTransport

from teleconsult.cli import build_app
from teleconsult.domain.turn import credentials
from teleconsult.seed import seed_demo
from teleconsult.settings import Settings
from tests.transport.conftest import Live, open_consultation
from web.keys import SERVICES

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

REALM = "teleconsult.test"
TTL_S = 600  # not the default (3600): shows the server uses the setting
RELAY_PORTS = 100
WAIT_S = 10.0


@dataclass
class Coturn:
    port: int
    secret: str
    min_port: int
    max_port: int
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def turnserver_path() -> str:
    path = shutil.which("turnserver")
    if not path:
        pytest.fail(
            "coturn is not installed (no `turnserver` command); run `make setup` (it apt-get installs coturn)",
            pytrace=False,
        )
    return path


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stun_answers(port: int) -> bool:
    """True when a STUN Binding request to 127.0.0.1:port gets a Binding success response."""
    transaction = secrets.token_bytes(12)
    request = b"\x00\x01\x00\x00" + b"\x21\x12\xa4\x42" + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        try:
            s.sendto(request, ("127.0.0.1", port))
            data, _ = s.recvfrom(2048)
        except OSError:  # timeout, or ICMP port unreachable while coturn is still starting
            return False
    return data[:2] == b"\x01\x01" and data[8:20] == transaction


def coturn_config(tmp: Path, port: int, secret: str, min_port: int, max_port: int) -> str:
    return "\n".join(
        [
            "listening-ip=127.0.0.1",
            "relay-ip=127.0.0.1",
            f"listening-port={port}",
            f"min-port={min_port}",
            f"max-port={max_port}",
            f"realm={REALM}",
            "use-auth-secret",
            f"static-auth-secret={secret}",
            "fingerprint",
            "no-tls",
            "no-dtls",
            "no-tcp",
            "no-tcp-relay",
            "no-cli",
            "no-rfc5780",  # no alternate port (port + 1) that could collide with something else
            "allow-loopback-peers",  # both peers are on 127.0.0.1 here; never in production
            "no-multicast-peers",
            "log-file=stdout",
            "simple-log",
            f"pidfile={tmp / 'turnserver.pid'}",
            f"userdb={tmp / 'turndb'}",  # unused with use-auth-secret, but keeps coturn off /var/lib/turn
            "",
        ]
    )


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    binary = turnserver_path()
    tmp = tmp_path_factory.mktemp("coturn")
    port, secret = free_udp_port(), secrets.token_urlsafe(24)
    min_port = 40000 + secrets.randbelow(80) * RELAY_PORTS  # inside 40000..47999
    max_port = min_port + RELAY_PORTS - 1
    config = tmp / "turnserver.conf"
    config.write_text(coturn_config(tmp, port, secret, min_port, max_port))
    log = tmp / "turnserver.log"
    # -c: only our config, never /etc/turnserver.conf.
    process = subprocess.Popen([binary, "-c", str(config)], stdout=log.open("wb"), stderr=subprocess.STDOUT)
    server = Coturn(port, secret, min_port, max_port, log, process)
    try:
        deadline = time.monotonic() + 10
        while not stun_answers(port):
            if process.poll() is not None:
                pytest.fail(f"turnserver exited with {process.returncode}:\n{server.log_tail()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"turnserver did not answer STUN on 127.0.0.1:{port}:\n{server.log_tail()}")
            time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture
async def turn_live(sqlite_settings: Settings, aiohttp_server: Any, coturn: Coturn) -> AsyncIterator[Live]:
    """The real composed app, configured (as an operator would) to hand out credentials for our coturn."""
    settings = sqlite_settings.model_copy(
        update={
            "ice_servers": [],
            "turn_urls": [coturn.url],
            "turn_secret": coturn.secret,
            "turn_credential_ttl_s": TTL_S,
        }
    )
    server = await aiohttp_server(build_app(settings))
    await seed_demo(server.app[SERVICES])
    yield Live(server, settings)


# -- helpers ----------------------------------------------------------------------------------------------------


def hmac_password(secret: str, username: str) -> str:
    """coturn's use-auth-secret check, computed independently of teleconsult.domain.turn."""
    return base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()


def relay_only(urls: list[str], username: str, credential: str) -> RTCPeerConnection:
    return RTCPeerConnection(
        RTCConfiguration(
            iceServers=[RTCIceServer(urls=urls, username=username, credential=credential)],
            iceTransportPolicy=RTCIceTransportPolicy.RELAY,
        )
    )


def ice_transport(pc: RTCPeerConnection) -> RTCIceTransport:
    assert pc.sctp is not None, "no data channel negotiated"
    return pc.sctp.transport.transport


def sdp_candidates(pc: RTCPeerConnection) -> list[str]:
    return [line for line in pc.localDescription.sdp.splitlines() if line.startswith("a=candidate:")]


async def negotiate(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    """Offer/answer in process: aiortc gathers (allocates on coturn) before it produces a description."""
    async with asyncio.timeout(WAIT_S):
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        await offerer.setRemoteDescription(answerer.localDescription)


async def wait_state(pc: RTCPeerConnection, wanted: set[str], timeout: float = WAIT_S) -> str:
    reached = asyncio.Event()

    def check() -> None:
        if pc.connectionState in wanted:
            reached.set()

    pc.on("connectionstatechange", check)
    try:
        check()
        await asyncio.wait_for(reached.wait(), timeout)
    finally:
        pc.remove_listener("connectionstatechange", check)
    return pc.connectionState


async def join_room(live: Live, username: str, cid: int, clients: list[socketio.AsyncClient]) -> dict[str, Any]:
    client = socketio.AsyncClient(reconnection=False)
    clients.append(client)
    await client.connect(live.url, auth={"token": await live.token(username)}, transports=["websocket"], wait_timeout=5)
    ack = await client.call("room.join", {"consultation_id": cid}, timeout=5)
    assert ack["ok"] is True, ack
    return dict(ack)


async def user_id_of(live: Live, username: str) -> int:
    return int((await live.services.auth.resolve(await live.token(username))).actor.user_id)


# -- tests ------------------------------------------------------------------------------------------------------


async def test_participants_connect_through_coturn_with_credentials_from_room_join(
    turn_live: Live, coturn: Coturn
) -> None:
    live = turn_live
    cid = await open_consultation(live)
    clients: list[socketio.AsyncClient] = []
    pcs: list[RTCPeerConnection] = []
    try:
        entries: dict[str, dict[str, Any]] = {}
        for username in ("clinician", "cardiologist"):
            before = int(time.time())
            ack = await join_room(live, username, cid, clients)
            after = int(time.time())
            turn_entries = [s for s in ack["ice_servers"] if coturn.url in s["urls"]]
            assert len(turn_entries) == 1, ack["ice_servers"]
            entry = turn_entries[0]
            expiry, user = entry["username"].split(":")
            assert int(user) == await user_id_of(live, username)
            assert before + TTL_S <= int(expiry) <= after + TTL_S
            assert entry["credential"] == hmac_password(coturn.secret, entry["username"])
            entries[username] = entry
        assert entries["clinician"]["username"] != entries["cardiologist"]["username"]

        clinic, hub = (relay_only(e["urls"], e["username"], e["credential"]) for e in entries.values())
        pcs += [clinic, hub]
        at_hub: asyncio.Queue[RTCDataChannel] = asyncio.Queue()
        hub.on("datachannel", at_hub.put_nowait)
        channel = clinic.createDataChannel("teleconsult")
        to_clinic: asyncio.Queue[str] = asyncio.Queue()
        channel.on("message", to_clinic.put_nowait)
        channel_open = asyncio.Event()
        channel.on("open", channel_open.set)

        await negotiate(clinic, hub)
        for pc in (clinic, hub):
            lines = sdp_candidates(pc)
            assert lines and all(" typ relay" in line for line in lines), lines
        assert await wait_state(clinic, {"connected", "failed"}) == "connected", coturn.log_tail()
        assert await wait_state(hub, {"connected", "failed"}) == "connected", coturn.log_tail()

        hub_channel = await asyncio.wait_for(at_hub.get(), WAIT_S)
        to_hub: asyncio.Queue[str] = asyncio.Queue()
        hub_channel.on("message", to_hub.put_nowait)
        if channel.readyState != "open":
            await asyncio.wait_for(channel_open.wait(), WAIT_S)
        question, answer = "SpO2 91%, please review the ECG", "Start aspirin 300 mg and transfer to the province"
        channel.send(question)
        assert await asyncio.wait_for(to_hub.get(), WAIT_S) == question
        hub_channel.send(answer)
        assert await asyncio.wait_for(to_clinic.get(), WAIT_S) == answer

        for pc in (clinic, hub):
            ice = ice_transport(pc)
            assert {c.type for c in ice.iceGatherer.getLocalCandidates()} == {"relay"}
            assert {c.type for c in ice.getRemoteCandidates()} == {"relay"}
            pair = ice._connection._nominated[1]  # private: see the module docstring
            assert (pair.local_candidate.type, pair.remote_candidate.type) == ("relay", "relay")
            assert pair.local_candidate.host == "127.0.0.1"
            assert coturn.min_port <= pair.local_candidate.port <= coturn.max_port
    finally:
        for pc in pcs:
            await pc.close()
        for client in clients:
            if client.connected:
                await client.disconnect()


def forged(kind: str, secret: str, user_id: int, now_s: int) -> tuple[str, str]:
    if kind == "signed with another secret":
        return credentials("not-" + secret, user_id, now_s, TTL_S)
    if kind == "renamed to another user":
        username, password = credentials(secret, user_id, now_s, TTL_S)
        return f"{username.split(':')[0]}:{user_id + 1}", password
    assert kind == "expired"
    return credentials(secret, user_id, now_s - 2 * TTL_S, TTL_S)


@pytest.mark.parametrize("kind", ["signed with another secret", "renamed to another user", "expired"])
async def test_a_forged_or_expired_credential_gets_no_relay_and_cannot_connect(coturn: Coturn, kind: str) -> None:
    now = int(time.time())
    good = relay_only([coturn.url], *credentials(coturn.secret, 1, now, TTL_S))
    bad = relay_only([coturn.url], *forged(kind, coturn.secret, 2, now))
    try:
        good.createDataChannel("teleconsult")
        await negotiate(good, bad)
        # Control: the same coturn allocates for a correctly signed credential, so the refusal below is the
        # credential's doing, not an unreachable server.
        assert any(" typ relay" in line for line in sdp_candidates(good)), coturn.log_tail()
        assert sdp_candidates(bad) == [], f"relay-only with a {kind} credential must gather no candidate at all"
        # With no relayed candidate on one side and no other candidates allowed, ICE fails.
        assert await wait_state(good, {"connected", "failed"}) == "failed"
        assert bad.connectionState != "connected"
    finally:
        await good.close()
        await bad.close()
