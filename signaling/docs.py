"""Generate docs/signaling.md from signaling/events.py: ``python -m signaling.docs > docs/signaling.md``."""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel

from signaling import events as ev

INTRO = """# Signaling protocol

Generated from `signaling/events.py` by `python -m signaling.docs`; a test fails when this file and the
models disagree. Do not edit by hand.

Transport: Socket.IO (protocol v5) at `/socket.io/`, websocket transport preferred. Authenticate on connect
with the browser's session cookie, or with `auth: {"token": "<API token>"}` from `POST /api/v1/auth/token`.
A connection without a valid session is refused with `{"code": "unauthenticated"}`.

Every client event must be sent with an acknowledgement callback. The ack is always
`{"ok": true, ...}` or `{"ok": false, "error": {"code": "...", "message": "..."}}`. Payloads are validated
before dispatch; unknown fields are refused. Error codes: `invalid`, `unauthenticated`, `forbidden`,
`not_found`, `conflict`, `room_full`, `rate_limited`, `too_large`, `internal`.

Limits (settings, see README): event size `TELECONSULT_MAX_EVENT_BYTES` (error ack `too_large`); a frame
larger than `TELECONSULT_MAX_HTTP_BUFFER_BYTES` closes the connection; `TELECONSULT_EVENTS_PER_SECOND` with
burst `TELECONSULT_EVENTS_BURST` per connection (error ack `rate_limited`); `TELECONSULT_MAX_ROOM_PARTICIPANTS`
per consultation room (error ack `room_full`). When a session expires or is revoked, the next event is answered
with `unauthenticated`, `session.expired` is pushed, and the connection is closed.

WebRTC: one RTCPeerConnection per pair of participants (mesh, up to 4). The newcomer offers to those already
in the room; both sides use perfect negotiation (the peer with the greater `peer_id` is polite), trickle ICE
(`candidate: null` ends candidates) and ICE restart on failure. Joining again from a new connection replaces
the old one: the old connection gets `room.replaced`, the others `room.peer_left` then `room.peer_joined`.
"""


def _schema(model: type[BaseModel]) -> str:
    schema = model.model_json_schema(by_alias=True, mode="serialization")
    props = schema.get("properties", {})
    props.pop("event", None)
    if "required" in schema:
        schema["required"] = [r for r in schema["required"] if r != "event"]
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True)


def _section(name: str, model: type[BaseModel], ack: type[BaseModel] | None) -> list[str]:
    doc = (model.__doc__ or "").strip()
    lines = [f"### `{name}`", ""]
    if doc:
        lines += [doc, ""]
    lines += ["Payload:", "", "```json", _schema(model), "```", ""]
    if ack is not None:
        lines += ["Ack:", "", "```json", _schema(ack), "```", ""]
    return lines


def render() -> str:
    lines: list[str] = [INTRO, "## Client to server", ""]
    for name, (model, ack) in ev.CLIENT_EVENTS.items():
        lines += _section(name, model, ack)
    lines += ["## Server to client", ""]
    for name, model in ev.SERVER_EVENTS.items():
        lines += _section(name, model, None)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__: list[Any] = ["render"]
