"""Two Python aiortc peers connect through the signaling server: media and a data channel, peer to peer."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from teleconsult.rtc_peer import RoomPeer, SignalingRefused
from tests.transport.conftest import Live, open_consultation

pytestmark = pytest.mark.asyncio


async def test_two_aiortc_peers_connect_and_exchange_media_and_data(live: Live) -> None:
    cid = await open_consultation(live)

    def tracks() -> list[object]:
        return [AudioStreamTrack(), VideoStreamTrack()]

    first = RoomPeer(live.url, await live.token("cardiologist"), cid, track_factory=tracks)
    second = RoomPeer(live.url, await live.token("clinician"), cid, track_factory=tracks)
    try:
        await first.join()
        ack = await second.join()  # the newcomer offers
        assert [p["peer_id"] for p in ack["participants"]] == [first.peer_id]
        at_second = await second.wait_connected()
        at_first = await first.wait_connected()
        await asyncio.wait_for(at_second.channel_open.wait(), 10)
        await asyncio.wait_for(at_first.channel_open.wait(), 10)
        at_second.channel.send("hello from the clinic")  # type: ignore[union-attr]
        assert await asyncio.wait_for(at_first.messages.get(), 10) == "hello from the clinic"
        assert sorted(t.kind for t in at_first.tracks) == ["audio", "video"]
        frame = await asyncio.wait_for(at_first.tracks[[t.kind for t in at_first.tracks].index("video")].recv(), 10)
        assert frame.width == 640 and frame.height == 480
    finally:
        await second.close()
        await first.close()


async def test_an_aiortc_peer_without_access_is_refused(live: Live) -> None:
    cid = await open_consultation(live)
    outsider = RoomPeer(live.url, await live.token("clinician2"), cid)
    try:
        with pytest.raises(SignalingRefused) as refused:
            await outsider.join()
        assert refused.value.code == "forbidden"
    finally:
        await outsider.close()
