"""Multi-site conferences through the Janus SFU (issue 5, item 6), Janus started on loopback by the test.

Six aiortc participants each upload one small video stream to Janus's VideoRoom and receive the other five
through one multistream subscription each; all signaling goes through ``teleconsult.sfu.JanusClient``, the
server-side broker that alone holds the api_secret, the VideoRoom admin_key and the room's secret and pin.
An outsider who was not brokered by our server gets nothing from Janus: no session without the api_secret,
no room without the admin_key, no join without the pin, no subscription without a publisher's private_id.
Destroying the room hangs up every participant and the frames stop.

Each participant's upload (RTP bytes its publisher PeerConnection sent) is printed: with the SFU it is one
stream whatever the room size (bench/conference.py compares it with the mesh).

A weak site uploads audio only and receives a Chromium site's simulcast video at the lowest layer after one
``configure`` (Janus picks the layer per subscriber; the publisher is untouched).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack
from av import VideoFrame
from playwright.async_api import async_playwright

from teleconsult.sfu import (
    UNAUTHORIZED,
    VIDEOROOM_UNAUTHORIZED,
    Handle,
    JanusClient,
    JanusError,
    Publisher,
    RoomAccess,
    Subscription,
)
from tests.e2e.conftest import CHROMIUM_FLAGS, chromium_path
from tests.e2e.janus import Janus, run_janus

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

SITES = 6
WIDTH, HEIGHT, FPS = 160, 120, 15  # small, to spare the CPU of a 2-core machine
FRAMES_EXPECTED = 10  # per received stream
MEDIA_TIMEOUT_S = 30.0
MEASURE_S = 3.0


class MovingBars(MediaStreamTrack):
    """A cheap synthetic camera: 160x120 moving bars at 15 fps (something for VP8 to encode)."""

    kind = "video"

    def __init__(self, shade: int) -> None:
        super().__init__()
        self._shade = shade
        self._n = 0
        self._start: float | None = None
        self._image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
        self._image[:, ::16] = shade

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        await asyncio.sleep(max(0.0, self._start + self._n / FPS - time.monotonic()))
        frame = VideoFrame.from_ndarray(np.roll(self._image, self._n * 2, axis=1), format="rgb24")
        frame.pts = self._n * (90000 // FPS)
        frame.time_base = fractions.Fraction(1, 90000)
        self._n += 1
        return frame


@dataclass
class Participant:
    name: str
    publisher: Publisher
    upload: RTCPeerConnection
    download: RTCPeerConnection = field(default_factory=RTCPeerConnection)
    subscription: Subscription | None = None
    frames: dict[int, int] = field(default_factory=dict)  # feed (publisher id) -> frames decoded
    readers: list[asyncio.Task[None]] = field(default_factory=list)


@pytest.fixture(scope="module")
def janus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Janus]:
    with run_janus(tmp_path_factory.mktemp("janus")) as server:
        yield server


@pytest.fixture
async def broker(janus: Janus) -> AsyncIterator[JanusClient]:
    """What our server runs: the only Janus client, holding every secret."""
    async with JanusClient(janus.url, api_secret=janus.api_secret, admin_key=janus.admin_key) as client:
        yield client


def description(pc: RTCPeerConnection) -> dict[str, Any]:
    # aiortc gathers every candidate before the description is set: nothing will be trickled.
    return {"type": pc.localDescription.type, "sdp": pc.localDescription.sdp, "trickle": False}


async def join_and_publish(broker: JanusClient, access: RoomAccess, index: int) -> Participant:
    publisher = await broker.join_as_publisher(access, f"site-{index}")
    upload = RTCPeerConnection()
    upload.addTransceiver(MovingBars(40 * (index + 1)), direction="sendonly")
    await upload.setLocalDescription(await upload.createOffer())
    answer = await broker.publish(publisher, description(upload))
    await upload.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    await publisher.handle.wait_for("webrtcup")  # Janus offers a feed to subscribers once its media is up
    return Participant(f"site-{index}", publisher, upload)


async def count_frames(track: MediaStreamTrack, frames: dict[int, int], feed: int) -> None:
    frames[feed] = 0
    try:
        while True:
            await track.recv()
            frames[feed] += 1
    except MediaStreamError:
        return


async def subscribe_to_others(broker: JanusClient, access: RoomAccess, me: Participant, feeds: list[int]) -> None:
    me.subscription = await broker.subscribe(access, feeds, me.publisher.private_id)
    feed_of_mid = {str(s["mid"]): int(s["feed_id"]) for s in me.subscription.streams if "feed_id" in s}
    pc = me.download

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        mid = next(t.mid for t in pc.getTransceivers() if t.receiver.track is track)
        me.readers.append(asyncio.create_task(count_frames(track, me.frames, feed_of_mid[str(mid)])))

    offer = me.subscription.offer
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
    await pc.setLocalDescription(await pc.createAnswer())
    await broker.start(me.subscription, description(pc))


async def bytes_sent(pc: RTCPeerConnection) -> int:
    report = await pc.getStats()
    return sum(int(s.bytesSent) for s in report.values() if getattr(s, "type", "") == "outbound-rtp")


async def events_seen(handle: Handle, wanted: set[str], timeout: float = 10.0) -> None:
    """Wait until each of ``wanted`` (VideoRoom ``videoroom`` or core ``janus`` names) arrived, in any order."""
    missing = set(wanted)
    async with asyncio.timeout(timeout):
        while missing:
            event = await handle.events.get()
            missing -= {event.get("janus"), event.get("plugindata", {}).get("data", {}).get("videoroom")}


async def test_six_sites_each_receive_the_other_five_through_janus_and_an_outsider_gets_nothing(
    janus: Janus, broker: JanusClient
) -> None:
    started = time.monotonic()
    access = await broker.create_room(description="case review", publishers=SITES + 2, bitrate=128_000)
    sites: list[Participant] = []
    try:
        sites = list(await asyncio.gather(*(join_and_publish(broker, access, i) for i in range(SITES))))
        ids = [p.publisher.publisher_id for p in sites]
        await asyncio.gather(
            *(
                subscribe_to_others(broker, access, me, [f for f in ids if f != me.publisher.publisher_id])
                for me in sites
            )
        )
        joined_s = time.monotonic() - started

        # Every site decodes frames from each of the other five, and only from them.
        def flowing() -> bool:
            return all(len(me.frames) == SITES - 1 and min(me.frames.values()) >= FRAMES_EXPECTED for me in sites)

        async with asyncio.timeout(MEDIA_TIMEOUT_S):
            while not flowing():  # noqa: ASYNC110 (30 reader tasks bump plain counters; polling is simplest)
                await asyncio.sleep(0.2)
        media_s = time.monotonic() - started
        for me in sites:
            assert set(me.frames) == set(ids) - {me.publisher.publisher_id}

        # Upload per participant: one stream each, however many sites watch it.
        before = [await bytes_sent(me.upload) for me in sites]
        await asyncio.sleep(MEASURE_S)
        after = [await bytes_sent(me.upload) for me in sites]
        kbps = [(b - a) * 8 / MEASURE_S / 1000 for a, b in zip(before, after, strict=True)]
        print(
            f"\nJanus SFU, {SITES} sites at {WIDTH}x{HEIGHT}@{FPS}: joined and subscribed in {joined_s:.1f} s, "
            f"all {SITES * (SITES - 1)} streams decoding after {media_s:.1f} s; upload per site (kbit/s): "
            + ", ".join(f"{k:.0f}" for k in kbps)
        )
        assert all(k > 0 for k in kbps)

        # The outsider. Without the api_secret Janus does not even open a session.
        with pytest.raises(JanusError) as refused:
            async with JanusClient(janus.url):
                pass
        assert refused.value.code == UNAUTHORIZED
        # Even someone holding the api_secret (a leak) but not the admin_key, the pin or a private_id gets nothing.
        async with JanusClient(janus.url, api_secret=janus.api_secret, admin_key="guessed") as outsider:
            with pytest.raises(JanusError) as refused:
                await outsider.create_room(publishers=2)
            assert refused.value.code == VIDEOROOM_UNAUTHORIZED
            guessed = RoomAccess(access.room, secret="", pin="guessed")
            with pytest.raises(JanusError) as refused:
                await outsider.join_as_publisher(guessed, "intruder")
            assert refused.value.code == VIDEOROOM_UNAUTHORIZED
            with pytest.raises(JanusError) as refused:
                await outsider.subscribe(guessed, ids, private_id=1)
            assert refused.value.code == VIDEOROOM_UNAUTHORIZED
            # With the pin but no publisher's private_id (the room requires one), still no subscription.
            with pytest.raises(JanusError) as refused:
                await outsider.subscribe(access, ids, private_id=12345)
            assert refused.value.code == VIDEOROOM_UNAUTHORIZED
            with pytest.raises(JanusError) as refused:
                await outsider.destroy_room(guessed)
            assert refused.value.code == VIDEOROOM_UNAUTHORIZED
        in_room = await broker.participants(access)
        assert sorted(p["id"] for p in in_room) == sorted(ids)

        # Destroying the room hangs up every publisher (Janus: "destroyed", then "hangup"); the subscriptions stay
        # connected but carry nothing more: the frames stop.
        await broker.destroy_room(access)
        for me in sites:
            await events_seen(me.publisher.handle, {"destroyed", "hangup"})
        assert not await broker.room_exists(access.room)
        await asyncio.sleep(1.0)
        counts = [dict(me.frames) for me in sites]
        await asyncio.sleep(1.5)
        assert [me.frames for me in sites] == counts
        print(f"room destroyed, streams stopped; whole test {time.monotonic() - started:.1f} s")
    finally:
        for me in sites:
            for task in me.readers:
                task.cancel()
            await me.download.close()
            await me.upload.close()
        if await broker.room_exists(access.room):
            await broker.destroy_room(access)


# -- a weak site: audio-only upload, the low simulcast layer down ------------------------------------------------

PUBLISH_SIMULCAST_JS = """
async () => {
  const video = {width: 640, height: 480, frameRate: 15};
  const stream = await navigator.mediaDevices.getUserMedia({video, audio: false});
  stream.getVideoTracks()[0].contentHint = "detail";  // on a busy CPU drop frames, not the layers' resolution
  const pc = new RTCPeerConnection();
  window.pc = pc;
  pc.addTransceiver(stream.getVideoTracks()[0], {direction: "sendonly", sendEncodings: [
    {rid: "l", scaleResolutionDownBy: 4, maxBitrate: 100000},
    {rid: "m", scaleResolutionDownBy: 2, maxBitrate: 300000},
    {rid: "h", maxBitrate: 900000},
  ]});
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== "complete") {
    await new Promise((done) => pc.addEventListener("icegatheringstatechange",
      () => pc.iceGatheringState === "complete" && done()));
  }
  return {type: pc.localDescription.type, sdp: pc.localDescription.sdp, trickle: false};
}
"""


def with_bitrate_floor(answer: dict[str, Any], kbps: int = 1500) -> dict[str, Any]:
    """The answer with Chromium's x-google-min/start-bitrate on every VP8 payload type."""
    lines = answer["sdp"].split("\r\n")
    vp8 = {line.split(":", 1)[1].split(" ", 1)[0] for line in lines if line.startswith("a=rtpmap:") and "VP8/" in line}
    assert vp8, "Janus answered without VP8"
    extra = f"x-google-min-bitrate={kbps};x-google-start-bitrate={kbps}"
    has_fmtp = {line.split(":", 1)[1].split(" ", 1)[0] for line in lines if line.startswith("a=fmtp:")}
    out: list[str] = []
    for line in lines:
        pt = line.split(":", 1)[1].split(" ", 1)[0] if line.startswith(("a=rtpmap:", "a=fmtp:")) else None
        if pt in vp8 and line.startswith("a=fmtp:"):
            line = f"{line};{extra}"
        out.append(line)
        if pt in vp8 and line.startswith("a=rtpmap:") and pt not in has_fmtp:
            out.append(f"a=fmtp:{pt} {extra}")
    return {**answer, "sdp": "\r\n".join(out)}


@pytest.fixture
async def blank_page_url(aiohttp_server: Any) -> str:
    """A page on http://127.0.0.1 (a secure context, so getUserMedia works); it needs nothing else."""
    app = web.Application()

    async def blank(_: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>site</title>", content_type="text/html")

    app.router.add_get("/", blank)
    server = await aiohttp_server(app)
    return str(server.make_url("/"))


async def test_a_weak_site_publishes_audio_only_and_receives_the_low_simulcast_layer(
    broker: JanusClient, blank_page_url: str
) -> None:
    access = await broker.create_room(description="weak link", publishers=4, bitrate=1_500_000)
    weak_upload, weak_download = RTCPeerConnection(), RTCPeerConnection()
    readers: list[asyncio.Task[None]] = []
    async with async_playwright() as pw:
        # The field trial lets Chromium send three simulcast layers of a 640x480 camera (by default it
        # allows two at that size).
        browser = await pw.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            args=[*CHROMIUM_FLAGS, "--force-fieldtrials=WebRTC-LegacySimulcastLayerLimit/Disabled/"],
        )
        try:
            # A good site: Chromium publishes VP8 with three simulcast layers (640x480, 320x240, 160x120).
            page = await browser.new_page()
            await page.goto(blank_page_url)
            strong = await broker.join_as_publisher(access, "central hospital")
            answer = await broker.publish(strong, await page.evaluate(PUBLISH_SIMULCAST_JS))
            assert "a=simulcast" in answer["sdp"]
            # Chromium turns its upper layers on only once its bandwidth estimate allows them; on a loaded
            # machine delayed packets keep the estimate low for long. A floor in the answer (Chromium's
            # x-google-min-bitrate) takes the estimate out of what this test is about: Janus's layer switching.
            await page.evaluate("(answer) => window.pc.setRemoteDescription(answer)", with_bitrate_floor(answer))
            await strong.handle.wait_for("webrtcup", timeout=20)

            # The weak site uploads audio only.
            weak = await broker.join_as_publisher(access, "commune station")
            assert [p["id"] for p in weak.others] == [strong.publisher_id]
            weak_upload.addTransceiver(AudioStreamTrack(), direction="sendonly")
            await weak_upload.setLocalDescription(await weak_upload.createOffer())
            answer = await broker.publish(weak, description(weak_upload))
            await weak_upload.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
            announced = await strong.handle.wait_for("publishers", timeout=20)
            (entry,) = announced["plugindata"]["data"]["publishers"]
            assert entry["id"] == weak.publisher_id
            assert [s["type"] for s in entry["streams"]] == ["audio"]

            # It receives the good site's video: first the top layer Janus forwards by default, then, asked for
            # the lowest layer, frames a quarter of the width.
            subscription = await broker.subscribe(access, [strong.publisher_id], weak.private_id)
            (video,) = [s for s in subscription.streams if s.get("type") == "video"]
            widths: asyncio.Queue[int] = asyncio.Queue()

            async def read(track: MediaStreamTrack) -> None:
                with contextlib.suppress(MediaStreamError):
                    while True:
                        widths.put_nowait((await track.recv()).width)

            weak_download.on("track", lambda track: readers.append(asyncio.create_task(read(track))))
            offer = subscription.offer
            await weak_download.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
            await weak_download.setLocalDescription(await weak_download.createAnswer())
            await broker.start(subscription, description(weak_download))

            seen: dict[int, int] = {}

            async def width_reaches(check: Callable[[int], bool], timeout: float, what: str) -> int:
                try:
                    async with asyncio.timeout(timeout):
                        while not check(width := await widths.get()):
                            seen[width] = seen.get(width, 0) + 1
                except TimeoutError:
                    pytest.fail(f"no {what} frame within {timeout} s; frames seen by width: {seen}", pytrace=False)
                return width

            # Chromium adds its upper layers as its bandwidth estimate ramps up (slower on a loaded machine).
            top = await width_reaches(lambda w: w >= 320, 40, "upper-layer")
            await broker.configure_subscriber(subscription, str(video["mid"]), substream=0, temporal=0)
            low = await width_reaches(lambda w: w <= 160, 15, "low-layer")
            print(f"\nweak site: audio-only upload; received {top} px wide, then {low} px after asking for layer 0")
        finally:
            for task in readers:
                task.cancel()
            await weak_download.close()
            await weak_upload.close()
            await browser.close()
            await broker.destroy_room(access)
