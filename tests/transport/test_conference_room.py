"""A booked conference, live, through our socket.io events and a real Janus on loopback: six sites enter,
each publishes one stream and receives the other five through the SFU; someone not invited waits in the lobby
and receives nothing until the host admits them; notes and a decision reach everyone and the record; the host
ends the session and Janus's room is gone. The server runs on a fake clock set just before the session."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import socketio
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from sqlalchemy import select

from teleconsult.cli import build_app
from teleconsult.clock import FakeClock
from teleconsult.seed import seed_demo
from teleconsult.settings import Settings
from teleconsult.sfu import JanusClient
from teleconsult.storage.models import (
    ConferenceAttendanceRow,
    ConferenceSessionRow,
    FacilityRow,
    PatientRow,
    UserRow,
)
from tests.e2e.janus import Janus, run_janus
from tests.e2e.test_janus import MovingBars
from tests.transport.conftest import Connect, Live, Peer
from web.keys import SERVICES

# Tuesday 1 December 2026, 13:50 in Vietnam: ten minutes before a 14:00-15:30 case review.
BEFORE_START = datetime(2026, 12, 1, 6, 50, tzinfo=UTC)
SITES = 6
FRAMES_EXPECTED = 10
MEDIA_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def janus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Janus]:
    with run_janus(tmp_path_factory.mktemp("janus")) as server:
        yield server


@pytest.fixture
async def live(sqlite_settings: Settings, aiohttp_server: Any, janus: Janus) -> AsyncIterator[Live]:
    settings = sqlite_settings.model_copy(
        update={
            "janus_url": janus.url,
            "janus_api_secret": janus.api_secret,
            "janus_admin_key": janus.admin_key,
            "conference_publisher_bitrate": 128_000,
        }
    )
    app = build_app(settings, FakeClock(BEFORE_START))
    server = await aiohttp_server(app)
    await seed_demo(server.app[SERVICES])
    yield Live(server, settings)


@dataclass
class Site:
    username: str
    peer: Peer
    session_id: int = 0
    upload: RTCPeerConnection = field(default_factory=RTCPeerConnection)
    download: RTCPeerConnection = field(default_factory=RTCPeerConnection)
    publisher_id: int = 0
    frames: dict[int, int] = field(default_factory=dict)  # publisher id -> frames decoded
    readers: list[asyncio.Task[None]] = field(default_factory=list)


async def ids(live: Live) -> dict[str, int]:
    async with live.services.db.transaction() as tx:
        users = dict((await tx.execute(select(UserRow.username, UserRow.id))).all())
        sites = dict((await tx.execute(select(FacilityRow.code, FacilityRow.id))).all())
        patient = (await tx.execute(select(PatientRow.id).where(PatientRow.cccd == "010190001234"))).scalar_one()
    return {**users, **{f"site:{code}": fid for code, fid in sites.items()}, "patient": patient}


async def book(live: Live, known: dict[str, int]) -> int:
    status, body = await live.api(
        "POST",
        "/api/v1/conferences",
        await live.token("coordinator"),
        {
            "title": "Lào Cai cardiology case review",
            "purpose": "case_review",
            "day": "2026-12-01",
            "start": "14:00",
            "end": "15:30",
            "host_facility_id": known["site:BVTW-BM"],
            "invited_site_ids": [known["site:BVT-LC"], known["site:TYT-TV"]],
            "invited_user_ids": [known["sapa"], known["cardiologist"], known["clinician"]],
            "agenda": [{"presenter_user_id": known["clinician"], "patient_id": known["patient"]}],
        },
    )
    assert status == 201, body
    return int(body["conference"]["id"])


async def publish(site: Site, shade: int) -> None:
    site.upload.addTransceiver(MovingBars(shade), direction="sendonly")
    await site.upload.setLocalDescription(await site.upload.createOffer())
    offer = {"type": "offer", "sdp": site.upload.localDescription.sdp}
    ack = await site.peer.call("conference.publish", {"session_id": site.session_id, "description": offer}, 15)
    assert ack["ok"], ack
    site.publisher_id = ack["publisher_id"]
    await site.upload.setRemoteDescription(RTCSessionDescription(**ack["description"]))


async def count_frames(track: MediaStreamTrack, frames: dict[int, int], feed: int) -> None:
    frames[feed] = 0
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()
            frames[feed] += 1


async def subscribe(site: Site, publisher_ids: list[int]) -> None:
    ack = await site.peer.call(
        "conference.subscribe", {"session_id": site.session_id, "publisher_ids": publisher_ids}, 15
    )
    assert ack["ok"], ack
    feed_of_mid = {s["mid"]: s["publisher_id"] for s in ack["streams"] if s.get("publisher_id")}
    pc = site.download

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        mid = next(t.mid for t in pc.getTransceivers() if t.receiver.track is track)
        site.readers.append(asyncio.create_task(count_frames(track, site.frames, feed_of_mid[str(mid)])))

    await pc.setRemoteDescription(RTCSessionDescription(**ack["description"]))
    await pc.setLocalDescription(await pc.createAnswer())
    answer = {"type": "answer", "sdp": pc.localDescription.sdp}
    started = await site.peer.call(
        "conference.start",
        {"session_id": site.session_id, "subscription_id": ack["subscription_id"], "description": answer},
        15,
    )
    assert started["ok"], started


async def test_six_sites_of_a_booked_conference_see_each_other_through_janus_and_the_uninvited_get_nothing(
    live: Live, connect: Connect, janus: Janus
) -> None:
    services = live.services
    await services.directory.add_user(
        "provincial", "correct-horse-1", "clinician", "BVT-LC", display_name="BS. Hà Văn Nam"
    )
    await services.directory.add_user("sapa", "correct-horse-1", "clinician", "TTYT-SP", display_name="BS. Sùng A Páo")
    known = await ids(live)
    conference_id = await book(live, known)
    usernames = ["coordinator", "cardiologist", "neurologist", "clinician", "provincial", "sapa"]
    sites: list[Site] = []
    try:
        for username in usernames:
            password = "correct-horse-1" if username in ("provincial", "sapa") else None
            token = await live.token(username, password) if password else await live.token(username)
            sites.append(Site(username, await connect(token=token)))
        outsider = await connect("clinician2")  # a commune station that was not invited

        for site in sites:
            ack = await site.peer.call("conference.enter", {"conference_id": conference_id})
            assert ack["ok"] and ack["entry"] == "enter", (site.username, ack)
            site.session_id = ack["session"]["id"]
            assert [c["patient_name"] for c in ack["cases"]] == ["Giàng Thị Mỷ"]
        session_id = sites[0].session_id
        assert {s.session_id for s in sites} == {session_id}

        knocked = await outsider.call("conference.enter", {"conference_id": conference_id})
        assert knocked["ok"] and knocked["entry"] == "lobby" and knocked["cases"] == []
        assert (await sites[0].peer.next("conference.knock"))["entry"]["user_id"] == known["clinician2"]
        for event, payload in (
            ("conference.publish", {"session_id": session_id, "description": {"type": "offer", "sdp": "v=0"}}),
            ("conference.subscribe", {"session_id": session_id, "publisher_ids": [1]}),
            (
                "conference.note",
                {"session_id": session_id, "agenda_item_id": 1, "client_id": "x", "text": "let me in"},
            ),
        ):
            refused = await outsider.call(event, payload)
            assert not refused["ok"] and refused["error"]["code"] in ("forbidden", "invalid"), (event, refused)
        # A site publishes one stream: a second video m-line is refused before Janus sees it.
        two_videos = RTCPeerConnection()
        for shade in (10, 20):
            two_videos.addTransceiver(MovingBars(shade), direction="sendonly")
        await two_videos.setLocalDescription(await two_videos.createOffer())
        refused = await sites[1].peer.call(
            "conference.publish",
            {"session_id": session_id, "description": {"type": "offer", "sdp": two_videos.localDescription.sdp}},
        )
        await two_videos.close()
        assert refused["error"]["code"] == "invalid"

        # Every site publishes once; each is told of the five others once their media reached Janus.
        await asyncio.gather(*(publish(site, 40 * (i + 1)) for i, site in enumerate(sites)))
        all_ids = {s.publisher_id for s in sites}
        for site in sites:
            announced = {(await site.peer.next("conference.published", 30))["publisher"]["publisher_id"]}
            while len(announced) < SITES - 1:
                announced.add((await site.peer.next("conference.published", 30))["publisher"]["publisher_id"])
            assert announced == all_ids - {site.publisher_id}
        await asyncio.gather(*(subscribe(s, sorted(all_ids - {s.publisher_id})) for s in sites))

        def flowing() -> bool:
            return all(len(s.frames) == SITES - 1 and min(s.frames.values()) >= FRAMES_EXPECTED for s in sites)

        async with asyncio.timeout(MEDIA_TIMEOUT_S):
            while not flowing():  # noqa: ASYNC110 (reader tasks bump plain counters)
                await asyncio.sleep(0.2)
        for site in sites:
            assert set(site.frames) == all_ids - {site.publisher_id}

        # The outsider heard nothing of it and still cannot subscribe.
        await outsider.nothing("conference.published", 0.1)
        await outsider.nothing("conference.entered", 0.1)
        refused = await outsider.call(
            "conference.subscribe", {"session_id": session_id, "publisher_ids": sorted(all_ids)}
        )
        assert refused["error"]["code"] == "forbidden"

        # A note and a decision reach every site and the outsider still hears nothing.
        item = (await sites[0].peer.call("conference.enter", {"conference_id": conference_id}))["cases"][0]["item_id"]
        note = await sites[3].peer.call(
            "conference.note",
            {"session_id": session_id, "agenda_item_id": item, "client_id": "n-1", "text": "ECG: ST chênh lên V1-V4."},
        )
        assert note["ok"], note
        decided = await sites[1].peer.call(
            "conference.decide",
            {
                "session_id": session_id,
                "agenda_item_id": item,
                "recommendation": "Chuyển Bạch Mai can thiệp mạch vành.",
                "icd10": "I21.0",
                "outcome": "transfer",
                "expected_version": 0,
            },
        )
        assert decided["ok"] and decided["decision"]["version"] == 1, decided
        for site in sites:
            assert (await site.peer.next("conference.note_added"))["note"]["text"] == "ECG: ST chênh lên V1-V4."
            assert (await site.peer.next("conference.decided"))["decision"]["icd10"] == "I21.0"
        await outsider.nothing("conference.note_added", 0.1)

        # The host admits the outsider, who then walks in.
        admitted = await sites[0].peer.call(
            "conference.admit", {"session_id": session_id, "user_id": known["clinician2"], "admit": True}
        )
        assert admitted["ok"] and (await outsider.next("conference.admission"))["entry"]["status"] == "admitted"
        entered = await outsider.call("conference.enter", {"conference_id": conference_id})
        assert entered["entry"] == "enter" and len(entered["publishers"]) == SITES

        # The host ends the session: everyone is told, Janus's room is gone, every stay is closed.
        async with services.db.transaction() as tx:
            room_id = (await tx.get(ConferenceSessionRow, session_id)).sfu_room
        ended = await sites[0].peer.call("conference.end", {"session_id": session_id})
        assert ended["ok"], ended
        for site in sites:
            assert (await site.peer.next("conference.ended"))["session_id"] == session_id
        async with JanusClient(janus.url, api_secret=janus.api_secret, admin_key=janus.admin_key) as check:
            assert room_id is not None and not await check.room_exists(room_id)
        async with services.db.transaction() as tx:
            stays = list((await tx.execute(select(ConferenceAttendanceRow))).scalars())
        assert len(stays) == SITES + 2 and all(s.left_at is not None for s in stays)  # the host entered twice
    finally:
        for site in sites:
            for task in site.readers:
                task.cancel()
            await site.download.close()
            await site.upload.close()


async def test_without_an_sfu_the_room_still_takes_notes_and_says_video_is_unavailable(
    sqlite_settings: Settings, aiohttp_server: Any
) -> None:
    # The server's own reminder loop waits an hour between rounds: the test sends the due reminder itself.
    settings = sqlite_settings.model_copy(update={"conference_reminder_tick_s": 3600.0})
    server = await aiohttp_server(build_app(settings, FakeClock(BEFORE_START)))
    await seed_demo(server.app[SERVICES])
    live = Live(server, settings)
    await live.services.directory.add_user("sapa", "correct-horse-1", "clinician", "TTYT-SP", display_name="BS. Páo")
    conference_id = await book(live, await ids(live))
    client = socketio.AsyncClient(reconnection=False)
    pushed: asyncio.Queue[Any] = asyncio.Queue()
    client.on("notification.new", pushed.put)
    await client.connect(live.url, auth={"token": await live.token("clinician")}, transports=["websocket"])
    try:
        # Ten minutes before the start the 15-minute reminder is due (within its grace): it is pushed live to
        # the invitee who is online, once.
        assert await live.services.conferences.send_due_reminders() == 1
        reminder = (await asyncio.wait_for(pushed.get(), 5))["notification"]
        assert reminder["kind"] == "conference.reminder" and reminder["conference_id"] == conference_id
        assert reminder["text"].startswith("Lào Cai cardiology case review: starts 14:00 01/12/2026")
        assert await live.services.conferences.send_due_reminders() == 0
        ack = await client.call("conference.enter", {"conference_id": conference_id}, timeout=5)
        assert ack["entry"] == "enter" and ack["session"]["media"] is False
        session_id = ack["session"]["id"]
        offer = {"type": "offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"}
        refused = await client.call("conference.publish", {"session_id": session_id, "description": offer}, timeout=5)
        assert refused["error"]["code"] == "unavailable"
        note = {
            "session_id": session_id,
            "agenda_item_id": ack["cases"][0]["item_id"],
            "client_id": "a",
            "text": "HA 90/60.",
        }
        saved = await client.call("conference.note", note, timeout=5)
        assert saved["ok"] and saved["note"]["text"] == "HA 90/60.", saved
    finally:
        await client.disconnect()
