"""Transport fixtures: the real composed app (HTTP + socket.io) on a real port, real socket.io clients."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import socketio
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from signaling import events as ev
from teleconsult.cli import build_app
from teleconsult.seed import DEMO_PASSWORD, seed_demo
from teleconsult.settings import Settings
from web.keys import SERVICES


@dataclass
class Live:
    server: TestServer
    settings: Settings

    @property
    def url(self) -> str:
        return str(self.server.make_url("/")).rstrip("/")

    @property
    def services(self) -> Any:
        return self.server.app[SERVICES]

    async def token(self, username: str, password: str = DEMO_PASSWORD) -> str:
        async with ClientSession() as http:
            async with http.post(
                f"{self.url}/api/v1/auth/token", json={"username": username, "password": password}
            ) as resp:
                assert resp.status == 201, await resp.text()
                return str((await resp.json())["token"])

    async def api(self, method: str, path: str, token: str, json: Any = None) -> tuple[int, Any]:
        async with ClientSession() as http:
            async with http.request(
                method, f"{self.url}{path}", json=json, headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                body = await resp.json() if resp.content_type == "application/json" else await resp.text()
                return resp.status, body


@dataclass
class Peer:
    """A real python-socketio client that records every server event it receives."""

    client: socketio.AsyncClient
    events: dict[str, asyncio.Queue[Any]] = field(default_factory=lambda: defaultdict(asyncio.Queue))

    async def call(self, event: str, payload: Any, timeout: float = 5) -> Any:
        return await self.client.call(event, payload, timeout=timeout)

    async def next(self, event: str, timeout: float = 5) -> Any:
        return await asyncio.wait_for(self.events[event].get(), timeout)

    async def nothing(self, event: str, wait: float = 0.3) -> None:
        """Assert that no ``event`` arrives within ``wait`` seconds."""
        try:
            got = await asyncio.wait_for(self.events[event].get(), wait)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected {event}: {got}")

    @property
    def sid(self) -> str:
        return str(self.client.get_sid())


Connect = Callable[..., Awaitable[Peer]]


@pytest.fixture
async def live(sqlite_settings: Settings, aiohttp_server: Any) -> AsyncIterator[Live]:
    settings = sqlite_settings.model_copy(update={"max_event_bytes": 16 * 1024, "max_http_buffer_bytes": 64 * 1024})
    app = build_app(settings)
    server = await aiohttp_server(app)
    await seed_demo(server.app[SERVICES])
    yield Live(server, settings)


@pytest.fixture
async def connect(live: Live) -> AsyncIterator[Connect]:
    peers: list[Peer] = []

    async def _connect(username: str | None = None, *, token: str | None = None) -> Peer:
        if token is None and username is not None:
            token = await live.token(username)
        client = socketio.AsyncClient(reconnection=False)
        peer = Peer(client)

        for name in ev.SERVER_EVENTS:
            client.on(name, _recorder(peer, name))
        client.on("disconnect", _recorder(peer, "disconnect"))
        await client.connect(
            live.url, auth={"token": token} if token else None, transports=["websocket"], wait_timeout=5
        )
        peers.append(peer)
        return peer

    yield _connect
    for peer in peers:
        if peer.client.connected:
            await peer.client.disconnect()


def _recorder(peer: Peer, name: str) -> Callable[..., Awaitable[None]]:
    async def record(*args: Any) -> None:
        peer.events[name].put_nowait(args[0] if args else None)

    return record


async def open_consultation(
    live: Live, *, clinician: str = "clinician", specialty: str = "cardiology", accept_by: str | None = "cardiologist"
) -> int:
    """A consultation for the clinician's first patient, accepted by ``accept_by`` when given."""
    token = await live.token(clinician)
    status, found = await live.api(
        "GET", "/api/v1/patients?q=" + ("giang" if clinician == "clinician" else "phan"), token
    )
    assert status == 200, found
    patient_id = found["patients"][0]["id"]
    status, created = await live.api(
        "POST",
        "/api/v1/consultations",
        token,
        {
            "patient_id": patient_id,
            "specialty": specialty,
            "urgency": "urgent",
            "summary": "Chest pain for 2 hours, ST elevation on local ECG.",
        },
    )
    assert status == 201, created
    if accept_by:
        status, accepted = await live.api(
            "POST", f"/api/v1/consultations/{created['id']}/accept", await live.token(accept_by)
        )
        assert status == 200, accepted
    return int(created["id"])
