"""Two composed servers in one test, sharing one database and the real Redis (127.0.0.1:6379) under a prefix of
their own: room membership, WebRTC signaling relay, notes and ghost replacement work across processes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio
import socketio

from teleconsult.cli import build_app
from teleconsult.seed import seed_demo
from teleconsult.settings import Settings
from tests.transport.conftest import Live, Peer, _recorder, open_consultation
from web.keys import SERVICES

REDIS_URL = "redis://127.0.0.1:6379/0"


async def _redis_up() -> None:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        async with asyncio.timeout(3):
            await client.ping()
    except Exception as exc:
        pytest.fail(f"Redis at {REDIS_URL} is not reachable ({exc!r}); start redis-server (see README)")
    finally:
        await client.aclose()


@pytest.fixture
async def cluster(sqlite_settings: Settings, aiohttp_server: Any) -> AsyncIterator[tuple[Live, Live]]:
    await _redis_up()
    settings = sqlite_settings.model_copy(
        update={"redis_url": REDIS_URL, "redis_prefix": f"test-{uuid.uuid4().hex[:10]}", "presence_lease_s": 6.0}
    )
    a = await aiohttp_server(build_app(settings))
    b = await aiohttp_server(build_app(settings))
    await seed_demo(a.app[SERVICES])
    yield Live(a, settings), Live(b, settings)
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    keys = [k async for k in client.scan_iter(match=f"{settings.redis_prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def connect(live: Live, username: str) -> Peer:
    client = socketio.AsyncClient(reconnection=False)
    peer = Peer(client)
    for name in ("room.peer_joined", "room.peer_left", "rtc.signal", "note.added", "room.replaced"):
        client.on(name, _recorder(peer, name))
    await client.connect(live.url, auth={"token": await live.token(username)}, transports=["websocket"])
    return peer


async def test_peers_on_two_processes_share_a_room_signal_and_notes(cluster: tuple[Live, Live]) -> None:
    a, b = cluster
    cid = await open_consultation(a)
    clinician = await connect(a, "clinician")
    specialist = await connect(b, "cardiologist")
    try:
        first = await clinician.call("room.join", {"consultation_id": cid})
        assert first["ok"] and first["participants"] == []
        second = await specialist.call("room.join", {"consultation_id": cid})
        assert [p["peer_id"] for p in second["participants"]] == [first["peer_id"]], "the other process's member"
        joined = await clinician.next("room.peer_joined", 10)
        assert joined["peer"]["peer_id"] == second["peer_id"]

        offer = {"type": "offer", "sdp": "v=0\r\n"}
        sent = await specialist.call(
            "rtc.signal", {"consultation_id": cid, "to": first["peer_id"], "description": offer}
        )
        assert sent["ok"], sent
        relayed = await clinician.next("rtc.signal", 10)
        assert relayed["from"] == second["peer_id"] and relayed["description"] == offer

        note = await clinician.call(
            "note.add", {"consultation_id": cid, "text": "Huyết áp 90/60", "client_id": "n-000001"}
        )
        assert note["ok"]
        arrived = await specialist.next("note.added", 10)
        assert arrived["note"]["text"] == "Huyết áp 90/60"
    finally:
        for peer in (clinician, specialist):
            await peer.client.disconnect()


async def test_rejoining_on_the_other_process_replaces_the_ghost(cluster: tuple[Live, Live]) -> None:
    a, b = cluster
    cid = await open_consultation(a)
    clinician = await connect(a, "clinician")
    old = await connect(b, "cardiologist")
    new = await connect(a, "cardiologist")
    try:
        await clinician.call("room.join", {"consultation_id": cid})
        ghost = await old.call("room.join", {"consultation_id": cid})
        await clinician.next("room.peer_joined", 10)
        fresh = await new.call("room.join", {"consultation_id": cid})
        assert fresh["ok"]
        replaced = await old.next("room.replaced", 10)
        assert replaced["consultation_id"] == cid
        left = await clinician.next("room.peer_left", 10)
        assert left["peer_id"] == ghost["peer_id"]
        assert ghost["peer_id"] not in [p["peer_id"] for p in fresh["participants"]]
        # The ghost stays out even after its process renews its members (every lease / 3 = 2 s).
        await asyncio.sleep(2.5)
        refused = await clinician.call(
            "rtc.signal", {"consultation_id": cid, "to": ghost["peer_id"], "description": {"type": "offer", "sdp": ""}}
        )
        assert refused["error"]["code"] == "not_found"
        await old.nothing("note.added")
    finally:
        for peer in (clinician, old, new):
            await peer.client.disconnect()
