"""The signaling protocol over a real socket.io connection to the real composed server."""

from __future__ import annotations

import asyncio

import pytest
import socketio

from tests.transport.conftest import Connect, Live, open_consultation

pytestmark = pytest.mark.asyncio


async def test_refuses_connection_without_a_valid_session(live: Live, connect: Connect) -> None:
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect(token="not-a-token")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect()


async def test_clinician_and_specialist_join_signal_and_share_notes(live: Live, connect: Connect) -> None:
    cid = await open_consultation(live)
    clinician = await connect("clinician")
    specialist = await connect("cardiologist")

    ack = await clinician.call("room.join", {"consultation_id": cid})
    assert ack["ok"] is True and ack["participants"] == [] and ack["peer_id"] == clinician.sid

    ack = await specialist.call("room.join", {"consultation_id": cid})
    assert ack["ok"] is True
    assert [p["display_name"] for p in ack["participants"]] == ["BS. Nguyễn Thị Lan"]
    assert ack["status"] == "in_progress"  # the specialist's arrival starts the consultation
    joined = await clinician.next("room.peer_joined")
    assert joined["peer"]["peer_id"] == specialist.sid and joined["peer"]["role"] == "specialist"

    offer = {"type": "offer", "sdp": "v=0\r\n"}
    ack = await specialist.call("rtc.signal", {"consultation_id": cid, "to": clinician.sid, "description": offer})
    assert ack == {"ok": True}
    relayed = await clinician.next("rtc.signal")
    assert relayed["from"] == specialist.sid and relayed["description"]["type"] == "offer"
    candidate = {
        "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    }
    assert (await clinician.call("rtc.signal", {"consultation_id": cid, "to": specialist.sid, "candidate": candidate}))[
        "ok"
    ]
    assert (await specialist.next("rtc.signal"))["candidate"]["candidate"].startswith("candidate:1")

    ack = await clinician.call(
        "note.add", {"consultation_id": cid, "text": "BP 150/95, HR 110.", "client_id": "note-0001-abcd"}
    )
    assert ack["ok"] and ack["created"] is True and ack["note"]["author_name"] == "BS. Nguyễn Thị Lan"
    seen = await specialist.next("note.added")
    assert seen["note"]["text"] == "BP 150/95, HR 110."

    # A resend after a dropped link is recognised, not stored twice.
    again = await clinician.call(
        "note.add", {"consultation_id": cid, "text": "BP 150/95, HR 110.", "client_id": "note-0001-abcd"}
    )
    assert again["ok"] and again["created"] is False and again["note"]["id"] == ack["note"]["id"]
    token = await live.token("clinician")
    status, notes = await live.api("GET", f"/api/v1/consultations/{cid}/notes", token)
    assert status == 200 and [n["text"] for n in notes["notes"]] == ["BP 150/95, HR 110."]

    # A late joiner gets every saved note in its join ack.
    rejoin = await connect("clinician")
    ack = await rejoin.call("room.join", {"consultation_id": cid})
    assert [n["text"] for n in ack["notes"]] == ["BP 150/95, HR 110."]


async def test_joining_another_facilitys_consultation_is_refused(live: Live, connect: Connect) -> None:
    cid = await open_consultation(live)
    insider = await connect("clinician")
    assert (await insider.call("room.join", {"consultation_id": cid}))["ok"]
    outsider = await connect("clinician2")  # works at another commune station
    ack = await outsider.call("room.join", {"consultation_id": cid})
    assert ack == {"ok": False, "error": {"code": "forbidden", "message": ack["error"]["message"]}}
    # Not in the room: cannot signal to it, cannot write, receives nothing from it.
    ack = await outsider.call(
        "rtc.signal", {"consultation_id": cid, "to": insider.sid, "description": {"type": "offer", "sdp": "x"}}
    )
    assert ack["ok"] is False and ack["error"]["code"] == "forbidden"
    ack = await outsider.call("note.add", {"consultation_id": cid, "text": "x", "client_id": "outsider-01"})
    assert ack["ok"] is False and ack["error"]["code"] == "forbidden"
    await insider.call("note.add", {"consultation_id": cid, "text": "private", "client_id": "insider-0001"})
    await outsider.nothing("note.added")
    await insider.nothing("rtc.signal")
    # An unrelated specialist (another specialty) cannot enter either.
    neuro = await connect("neurologist")
    assert (await neuro.call("room.join", {"consultation_id": cid}))["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("event", "payload", "code"),
    [
        ("room.join", {}, "invalid"),
        ("room.join", {"consultation_id": "one"}, "invalid"),
        ("room.join", {"consultation_id": -4}, "invalid"),
        ("room.join", {"consultation_id": 1, "admin": True}, "invalid"),
        ("room.join", ["not", "an", "object"], "invalid"),
        ("room.join", {"consultation_id": 999999}, "not_found"),
        ("note.add", {"consultation_id": 1, "text": "x", "client_id": "short"}, "invalid"),
        ("note.add", {"consultation_id": 1, "text": "", "client_id": "abcdefgh1"}, "invalid"),
        ("rtc.signal", {"consultation_id": 1, "to": "x", "description": {"type": "hello", "sdp": ""}}, "invalid"),
        (
            "rtc.signal",
            {
                "consultation_id": 1,
                "to": "x",
                "description": {"type": "offer", "sdp": ""},
                "candidate": {"candidate": ""},
            },
            "invalid",
        ),
        ("note.add", {"consultation_id": 1, "text": "x" * 20_000, "client_id": "abcdefgh1"}, "too_large"),
        ("no.such.event", {}, "invalid"),
    ],
)
async def test_malformed_events_get_an_error_ack_and_change_nothing(
    live: Live, connect: Connect, event: str, payload: object, code: str
) -> None:
    cid = await open_consultation(live)
    clinician = await connect("clinician")
    assert (await clinician.call("room.join", {"consultation_id": cid}))["ok"]
    if isinstance(payload, dict) and payload.get("consultation_id") == 1:
        payload = {**payload, "consultation_id": cid}
    ack = await clinician.call(event, payload)
    assert ack["ok"] is False and ack["error"]["code"] == code, ack
    token = await live.token("clinician")
    status, notes = await live.api("GET", f"/api/v1/consultations/{cid}/notes", token)
    assert status == 200 and notes["notes"] == []
    # The connection is still usable afterwards.
    assert (
        await clinician.call("note.add", {"consultation_id": cid, "text": "still here", "client_id": "after-error-1"})
    )["ok"]


async def test_an_oversized_frame_disconnects_only_that_client(live: Live, connect: Connect) -> None:
    cid_a = await open_consultation(live)
    cid_b = await open_consultation(live, clinician="clinician2", accept_by="cardiologist2")
    abuser = await connect("clinician")
    assert (await abuser.call("room.join", {"consultation_id": cid_a}))["ok"]
    writer = await connect("clinician2")
    reader = await connect("cardiologist2")
    assert (await writer.call("room.join", {"consultation_id": cid_b}))["ok"]
    assert (await reader.call("room.join", {"consultation_id": cid_b}))["ok"]

    await abuser.client.emit("note.add", {"consultation_id": cid_a, "text": "x" * 200_000, "client_id": "oversized-1"})
    await abuser.next("disconnect", timeout=5)
    # Other rooms keep working.
    ack = await writer.call("note.add", {"consultation_id": cid_b, "text": "unaffected", "client_id": "other-room-1"})
    assert ack["ok"]
    assert (await reader.next("note.added"))["note"]["text"] == "unaffected"
    token = await live.token("clinician")
    status, notes = await live.api("GET", f"/api/v1/consultations/{cid_a}/notes", token)
    assert notes["notes"] == []


async def test_rejoining_from_a_new_connection_leaves_no_ghost(live: Live, connect: Connect) -> None:
    cid = await open_consultation(live)
    specialist = await connect("cardiologist")
    assert (await specialist.call("room.join", {"consultation_id": cid}))["ok"]
    first = await connect("clinician")
    assert (await first.call("room.join", {"consultation_id": cid}))["ok"]
    assert (await specialist.next("room.peer_joined"))["peer"]["peer_id"] == first.sid

    second = await connect("clinician")  # the same clinician, after a dropped link, on a new socket
    ack = await second.call("room.join", {"consultation_id": cid})
    assert [p["peer_id"] for p in ack["participants"]] == [specialist.sid]
    assert (await first.next("room.replaced"))["consultation_id"] == cid
    assert (await specialist.next("room.peer_left"))["peer_id"] == first.sid
    assert (await specialist.next("room.peer_joined"))["peer"]["peer_id"] == second.sid
    # Signals to the ghost are refused; the room shows each person once.
    ack = await specialist.call(
        "rtc.signal", {"consultation_id": cid, "to": first.sid, "description": {"type": "offer", "sdp": "x"}}
    )
    assert ack["error"]["code"] == "not_found"
    token = await live.token("cardiologist")
    status, record = await live.api("GET", "/api/v1/patients/1", token)
    stays = record["consultations"][0]["participants"]
    open_stays = [s["display_name"] for s in stays if s["left_at"] is None]
    assert sorted(open_stays) == ["BS. Nguyễn Thị Lan", "PGS. Phạm Minh Tuấn"]


async def test_a_dropped_socket_is_recorded_as_leaving(live: Live, connect: Connect) -> None:
    cid = await open_consultation(live)
    specialist = await connect("cardiologist")
    clinician = await connect("clinician")
    assert (await specialist.call("room.join", {"consultation_id": cid}))["ok"]
    assert (await clinician.call("room.join", {"consultation_id": cid}))["ok"]
    await clinician.client.disconnect()
    assert (await specialist.next("room.peer_left"))["peer_id"]
    token = await live.token("cardiologist")
    for _ in range(50):
        _status, record = await live.api("GET", "/api/v1/patients/1", token)
        stays = {s["display_name"]: s for s in record["consultations"][0]["participants"]}
        if stays["BS. Nguyễn Thị Lan"]["left_at"]:
            break
        await asyncio.sleep(0.05)
    assert stays["BS. Nguyễn Thị Lan"]["left_at"] is not None
    assert stays["PGS. Phạm Minh Tuấn"]["left_at"] is None


async def test_room_holds_at_most_the_configured_participants(live: Live, connect: Connect) -> None:
    cid = await open_consultation(live)
    peers = [await connect("clinician"), await connect("cardiologist")]
    for p in peers:
        assert (await p.call("room.join", {"consultation_id": cid}))["ok"]
    # Fill the room with more clinicians of the requesting facility.
    directory = live.services.directory
    for i in range(3):
        await directory.add_user(f"nurse{i}", "another-pass-1", "clinician", "TYT-TV", display_name=f"Nurse {i}")
    extra = [await connect(token=await live.token(f"nurse{i}", "another-pass-1")) for i in range(3)]
    assert (await extra[0].call("room.join", {"consultation_id": cid}))["ok"]
    assert (await extra[1].call("room.join", {"consultation_id": cid}))["ok"]
    ack = await extra[2].call("room.join", {"consultation_id": cid})
    assert ack["ok"] is False and ack["error"]["code"] == "room_full"


async def test_specialists_see_requests_live_and_others_see_them_taken(live: Live, connect: Connect) -> None:
    first = await connect("cardiologist")
    second = await connect("cardiologist2")
    neuro = await connect("neurologist")
    cid = await open_consultation(live, accept_by=None)
    for viewer in (first, second):
        update = await viewer.next("consultation.updated")
        assert update["consultation"]["id"] == cid and update["consultation"]["status"] == "requested"
        assert update["consultation"]["patient_name"] == "Giàng Thị Mỷ"
    await neuro.nothing("consultation.updated")

    results = await asyncio.gather(
        live.api("POST", f"/api/v1/consultations/{cid}/accept", await live.token("cardiologist")),
        live.api("POST", f"/api/v1/consultations/{cid}/accept", await live.token("cardiologist2")),
    )
    assert sorted(status for status, _ in results) == [200, 409]
    taken = await second.next("consultation.updated")
    assert taken["consultation"]["status"] == "accepted"
    assert taken["consultation"]["specialist_name"] in ("PGS. Phạm Minh Tuấn", "TS. Lê Thu Hà")


async def test_closing_tells_the_room_and_stops_notes(live: Live, connect: Connect) -> None:
    cid = await open_consultation(live)
    clinician = await connect("clinician")
    assert (await clinician.call("room.join", {"consultation_id": cid}))["ok"]
    status, body = await live.api(
        "POST",
        f"/api/v1/consultations/{cid}/end",
        await live.token("cardiologist"),
        {"recommendation": "Transfer for PCI.", "icd10_code": "I21.0", "outcome": "transfer"},
    )
    assert status == 200 and body["status"] == "completed"
    assert (await clinician.next("room.closed"))["status"] == "completed"
    ack = await clinician.call("note.add", {"consultation_id": cid, "text": "late", "client_id": "late-note-1"})
    assert ack["ok"] is False and ack["error"]["code"] == "forbidden"


async def test_an_expired_session_stops_acting_at_once(live: Live, connect: Connect) -> None:
    cid = await open_consultation(live)
    token = await live.token("clinician")
    clinician = await connect(token=token)
    assert (await clinician.call("room.join", {"consultation_id": cid}))["ok"]
    status, _ = await live.api("DELETE", "/api/v1/auth/token", token)  # log out elsewhere
    assert status == 204
    ack = await clinician.call(
        "note.add", {"consultation_id": cid, "text": "after logout", "client_id": "after-logout"}
    )
    assert ack["ok"] is False and ack["error"]["code"] == "unauthenticated"
    assert (await clinician.next("session.expired"))["message"]


async def test_flooding_is_rate_limited(live: Live, connect: Connect) -> None:
    cid = await open_consultation(live)
    clinician = await connect("clinician")
    acks = await asyncio.gather(
        *[
            clinician.call("room.leave", {"consultation_id": cid}, timeout=10)
            for _ in range(live.settings.events_burst + 20)
        ]
    )
    assert any(a.get("error", {}).get("code") == "rate_limited" for a in acks)
