"""The bare relay that bench/join_time.py measures teleconsult against.

A tiny aiohttp + python-socketio server: no authentication, no database, no validation. A client emits
``join`` (``{"room": "..."}``) and gets back its peer id and the ids of those already in the room; ``signal``
(``{"to": peer_id, "description" | "candidate": ...}``) is relayed to that peer with ``from`` added. It serves
bench/peer_page/ (one HTML page and one ES module: plain RTCPeerConnection, the second joiner offers,
trickle ICE) and the same socket.io-client build as the product, from node_modules.

    .venv/bin/python bench/relay_peer.py --port 8090     # then open http://127.0.0.1:8090/?room=r1 twice
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import socketio
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
PAGE_DIR = Path(__file__).resolve().parent / "peer_page"
VENDOR_DIR = ROOT / "node_modules" / "socket.io-client" / "dist"

# Same policy as the product's pages, so the page runs under the same constraints (module scripts from self,
# no inline script, no eval).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob: mediastream:; connect-src 'self' ws: wss:; base-uri 'none'"
)


def create_app() -> web.Application:
    sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)
    rooms: dict[str, list[str]] = {}
    room_of: dict[str, str] = {}

    @sio.on("join")
    async def join(sid: str, data: Any) -> dict[str, Any]:
        room = str((data or {}).get("room", ""))
        if not room:
            return {"ok": False, "error": "room missing"}
        others = [peer for peer in rooms.get(room, []) if peer != sid]
        rooms.setdefault(room, []).append(sid)
        room_of[sid] = room
        await sio.enter_room(sid, room)
        return {"ok": True, "peer_id": sid, "peers": others}

    @sio.on("signal")
    async def signal(sid: str, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("to"), str):
            return {"ok": False, "error": "to missing"}
        out = {key: data[key] for key in ("description", "candidate") if key in data}
        await sio.emit("signal", {"from": sid, **out}, to=data["to"])
        return {"ok": True}

    @sio.on("disconnect")
    async def disconnect(sid: str, reason: Any = None) -> None:
        room = room_of.pop(sid, None)
        if room is not None:
            members = rooms.get(room, [])
            if sid in members:
                members.remove(sid)
            if not members:
                rooms.pop(room, None)

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE_DIR / "index.html")

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "rooms": len(rooms)})

    @web.middleware
    async def csp(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if not response.prepared:
            response.headers.setdefault("Content-Security-Policy", CSP)
        return response

    app = web.Application(middlewares=[csp])
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_static("/peer/", PAGE_DIR)
    app.router.add_static("/vendor/socket.io/", VENDOR_DIR)
    sio.attach(app, socketio_path="socket.io")
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    if not VENDOR_DIR.is_dir():
        raise SystemExit(f"{VENDOR_DIR} is missing; run `make setup` (npm ci)")
    web.run_app(create_app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
