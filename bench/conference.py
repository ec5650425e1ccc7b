"""Mesh versus SFU for multi-site teleconferences: join time and upload per participant, 2..N participants.

Issue 5: "bench/conference.py prints, for 2..N participants on this machine, join time and upload bandwidth per
participant, mesh versus SFU, side by side. Goal: upload per participant stays flat with the SFU (one stream)
while the mesh grows linearly; >= 8 participants on one machine."

Every participant is an in-process aiortc site with ONE synthetic camera (``MovingPattern``: a textured picture
scrolling diagonally with a bouncing square, generated directly in yuv420p, --width x --height at --fps), fanned
out to its sender(s) by aiortc's ``MediaRelay`` (unbuffered: a slow encoder skips to the latest frame, as a
browser does). No ICE servers (no STUN: host candidates only, all traffic stays on this machine).

- **mesh**: every pair of sites is one sendrecv ``RTCPeerConnection`` (offer/answer handed over in-process, all
  pairs at once), so each site encodes and uploads its camera once per peer (N-1 uploads, as a browser mesh
  does) and receives N-1 streams.
- **sfu**: a Janus (Debian ``janus``) started by the bench with our loopback config (``teleconsult/janus_local.py``:
  loopback HTTP API, api secret, VideoRoom only), brokered by our ``teleconsult.sfu.JanusClient`` (one session,
  as our server holds). Each site joins as a publisher and publishes ONE stream (waits for Janus's
  ``webrtcup``); once every site publishes, each holds ONE multistream subscription (one PeerConnection) to the
  N-1 others. The room is created before the clock starts (the server creates it when the session is booked).

Same bitrate per encoded stream in both modes: aiortc's VP8 encoder is constant-bitrate (libvpx minrate = maxrate
= target) and follows the receivers' REMB between 250 kbit/s and 1.5 Mbit/s; the bench pins its module limits
(``aiortc.codecs.vpx`` DEFAULT/MIN/MAX_BITRATE) to --bitrate-kbps, so every encoder runs at exactly that target
whatever REMB says, in both modes. The Janus room's ``bitrate`` (REMB cap) is set to the same value.

Measured per N and mode:

- **join**: from the moment the sites start joining (the mesh: creating their PeerConnections; the SFU: their
  ``join`` as publishers) until the site has decoded a first frame from every one of the N-1 others; median and
  max over sites. A site still missing a stream after --join-timeout s counts as not joined.
- after --warmup s, a window of --seconds s: **up** = bytes the site's PeerConnections' transports sent (what its
  uplink carries: SRTP + RTCP over UDP, every PeerConnection of the site) as kbit/s, mean and max over sites;
  **down** the same for bytes received; **rtp** = outbound-rtp payload bytes (the encoded video only);
  **fps** = frames decoded per received stream in the window (min / mean over the N(N-1) streams: a starving
  stream shows); **CPU** = this process (time.process_time delta / wall, every site, encoders and decoders
  included; 200 % = both cores) and Janus's process (/proc) for the SFU. Each site's rates are taken between two
  reads of its own counters, each stamped when read (reading 90 PeerConnections' stats on a starved loop takes
  seconds). **loop lag**: the worst lateness of a 100 ms timer on the event loop in the window.

All N sites share this machine (2 cores, shared with other work) and ONE Python event loop reads every
site's sockets: the mesh encodes N(N-1) streams here, the SFU N; both decode N(N-1). When the CPU runs out the
figures say so (fps per stream collapses, join times grow); that is a finding, not hidden. Also printed per
window: **UDP drops** (the kernel's ``RcvbufErrors``, machine-wide: datagrams lost because a socket's receive
buffer was full) and **other CPU %** (the rest of the machine: other users' jobs). A lost packet costs aiortc
dearly: its jitter buffer holds the stream until 128 packets later (seconds), then asks for a keyframe (PLI), so
a few drops show as a stream stalled for seconds. Every ICE socket therefore gets a receive buffer of
--udp-rcvbuf-kb (1 MiB; aioice's own default is 256 KiB), in both modes: a real site has its own machine and
reads its own sockets, here one process reads them all. asyncio reads ONE datagram per socket per loop
iteration, so a multistream subscription (N-1 streams on one socket) is the first to overflow when the loop is
busy; --sfu-subscription per-feed (one PeerConnection, one socket, per feed) takes that harness limit away to
check it. Before each run the bench waits (up to --quiet-wait s) for the machine to go under 30 % of a core.

    .venv/bin/python bench/conference.py [--participants 2,4,6,8] [--modes mesh,sfu] [--seconds 10]
        [--warmup 3] [--width 320 --height 240 --fps 15] [--bitrate-kbps 300] [--join-timeout 45]
        [--udp-rcvbuf-kb 1024] [--sfu-subscription multistream|per-feed] [--quiet-wait 30]

Exit status 0 when the runs completed, whatever the figures; 1 when the bench could not run; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import os
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioice.turn
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs import vpx
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from teleconsult.janus_local import LocalJanus as Janus  # noqa: E402
from teleconsult.janus_local import start as start_janus  # noqa: E402  (the Debian janus, our config)
from teleconsult.sfu import JanusClient, Publisher, RoomAccess, Subscription  # noqa: E402

MODES = ("mesh", "sfu")
VIDEO_CLOCK = 90_000
CLK_TCK = os.sysconf("SC_CLK_TCK")
QUIET_PCT = 30.0  # before each run, wait (--quiet-wait) until the whole machine uses less than this % of a core
OK_FPS_SHARE = 0.8  # a stream delivering under 80 % of the camera's frame rate is "starving"
FLAT_TOLERANCE = 0.25  # SFU upload "flat": max/min over N within +25 %; mesh "linear": up(N)/up(2) within 25 % of N-1


@dataclass(frozen=True)
class Options:
    width: int
    height: int
    fps: int
    bitrate_kbps: int
    seconds: float
    warmup: float
    join_timeout: float
    quiet_wait: float
    per_feed: bool  # SFU: one subscription (PeerConnection) per feed instead of one multistream subscription


# -- the synthetic camera --------------------------------------------------------------------------------------


class MovingPattern(MediaStreamTrack):
    """A textured picture scrolling diagonally plus a bouncing square, in yuv420p (no conversion per encoder).

    Like a camera it keeps its own clock: when the event loop is late it skips to the current frame rather than
    delivering the frames it missed in a burst."""

    kind = "video"

    def __init__(self, seed: int, width: int, height: int, fps: int) -> None:
        super().__init__()
        self._w, self._h, self._fps = width, height, fps
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:height, 0:width]
        texture = rng.integers(0, 48, size=(height, width))  # fine detail: VP8 has to spend bits on it
        stripes = 80 * (((xx + yy) // 12) % 2)
        y = (40 + stripes + texture + (xx * 60) // width).clip(0, 255).astype(np.uint8)
        u = np.full((height // 2, width // 2), 60 + 20 * (seed % 7), dtype=np.uint8)
        v = ((np.mgrid[0 : height // 2, 0 : width // 2][1] * 120) // width + 70).astype(np.uint8)
        # Tiled 2x2: a scrolled picture is a window into these (a slice, no np.roll per frame).
        self._y, self._u, self._v = (np.tile(plane, (2, 2)) for plane in (y, u, v))
        self._n = 0
        self._start: float | None = None

    def _picture(self) -> np.ndarray:
        w, h, n = self._w, self._h, self._n
        buf = np.empty((h * 3 // 2, w), dtype=np.uint8)
        oy, ox = n % h, (3 * n) % w
        buf[:h] = self._y[oy : oy + h, ox : ox + w]
        side = max(8, h // 5)
        px = abs((n * 5) % (2 * (w - side)) - (w - side))
        py = abs((n * 3) % (2 * (h - side)) - (h - side))
        buf[py : py + side, px : px + side] = 235
        chroma = buf[h:].reshape(2, h // 2, w // 2)  # U then V, each (h/2, w/2), packed
        cy, cx = (n // 2) % (h // 2), (n // 2) % (w // 2)
        chroma[0] = self._u[0 : h // 2, cx : cx + w // 2]
        chroma[1] = self._v[cy : cy + h // 2, 0 : w // 2]
        return buf

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.perf_counter()
        self._n = max(self._n, int((time.perf_counter() - self._start) * self._fps))  # late: skip, as a camera does
        await asyncio.sleep(max(0.0, self._start + self._n / self._fps - time.perf_counter()))
        frame = VideoFrame.from_ndarray(self._picture(), format="yuv420p")
        frame.pts = self._n * (VIDEO_CLOCK // self._fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._n += 1
        return frame


def pin_vp8_bitrate(bps: int) -> None:
    """Every aiortc VP8 encoder (created later) runs at exactly ``bps``, whatever REMB the receiver sends."""
    vpx.DEFAULT_BITRATE = vpx.MIN_BITRATE = vpx.MAX_BITRATE = bps


def set_udp_receive_buffer(size: int) -> None:
    """SO_RCVBUF of every ICE host socket aioice opens from now on (aioice's own default: 256 KiB)."""
    aioice.turn.UDP_SOCKET_BUFFER_SIZE = size


# -- a participant ----------------------------------------------------------------------------------------------


@dataclass
class Site:
    name: str
    camera: MovingPattern
    relay: MediaRelay = field(default_factory=MediaRelay)
    pcs: list[RTCPeerConnection] = field(default_factory=list)
    frames: dict[str, int] = field(default_factory=dict)  # source site -> frames decoded
    first_frame_at: dict[str, float] = field(default_factory=dict)  # source site -> perf_counter
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    progress: asyncio.Event = field(default_factory=asyncio.Event)  # set at each first frame (shared by a run)

    def new_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: host candidates only
        self.pcs.append(pc)
        return pc

    def camera_view(self) -> MediaStreamTrack:
        return self.relay.subscribe(self.camera, buffered=False)

    def receive(self, track: MediaStreamTrack, source: str) -> None:
        self.frames.setdefault(source, 0)
        self.readers.append(asyncio.create_task(self._read(track, source), name=f"{self.name}<-{source}"))

    async def _read(self, track: MediaStreamTrack, source: str) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                if source not in self.first_frame_at:
                    self.first_frame_at[source] = time.perf_counter()
                    self.progress.set()
                self.frames[source] += 1

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        await asyncio.gather(*(pc.close() for pc in self.pcs), return_exceptions=True)
        self.camera.stop()


def make_sites(n: int, opts: Options) -> list[Site]:
    progress = asyncio.Event()
    return [Site(f"site-{i}", MovingPattern(i, opts.width, opts.height, opts.fps), progress=progress) for i in range(n)]


def jsep(pc: RTCPeerConnection) -> dict[str, Any]:
    # aiortc gathers every candidate before the description is set: nothing is trickled.
    return {"type": pc.localDescription.type, "sdp": pc.localDescription.sdp, "trickle": False}


# -- measuring --------------------------------------------------------------------------------------------------


@dataclass
class Result:
    mode: str
    n: int
    join_s: list[float | None] = field(default_factory=list)  # per site; None = not every stream decoded
    up_kbps: list[float] = field(default_factory=list)
    down_kbps: list[float] = field(default_factory=list)
    rtp_up_kbps: list[float] = field(default_factory=list)
    stream_fps: list[float] = field(default_factory=list)  # per received stream
    cpu_pct: float = 0.0
    janus_cpu_pct: float | None = None
    other_cpu_pct: float = 0.0  # the rest of the machine (other users' jobs) during the window
    udp_drops: int = 0  # the kernel's UDP RcvbufErrors during the window (machine-wide)
    loop_lag_ms: float = 0.0  # worst lateness of a 100 ms timer on the event loop during the window
    quiet_waited_s: float = 0.0
    error: str | None = None

    @property
    def joined(self) -> list[float]:
        return [j for j in self.join_s if j is not None]

    @property
    def complete(self) -> bool:
        return self.error is None and len(self.joined) == self.n

    def healthy(self, fps: int) -> bool:
        return self.complete and bool(self.stream_fps) and min(self.stream_fps) >= OK_FPS_SHARE * fps


@dataclass
class Traffic:
    sent: int = 0
    received: int = 0
    rtp_sent: int = 0


async def traffic(site: Site) -> Traffic:
    total = Traffic()
    for pc in site.pcs:
        for stats in (await pc.getStats()).values():
            kind = getattr(stats, "type", "")
            if kind == "transport":
                total.sent += int(stats.bytesSent)
                total.received += int(stats.bytesReceived)
            elif kind == "outbound-rtp":
                total.rtp_sent += int(stats.bytesSent)
    return total


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def process_cpu_s(pid: int) -> float:
    """utime + stime of a process (every thread), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine so far, all cores (/proc/stat)."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK


def udp_receive_buffer_errors() -> int:
    """Datagrams the kernel dropped because a UDP socket's receive buffer was full (machine-wide)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


async def wait_quiet(limit_s: float) -> float:
    """Wait (up to ``limit_s``) until the machine uses under QUIET_PCT of a core over a second; seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        busy0 = machine_busy_s()
        await asyncio.sleep(1.0)
        if 100 * (machine_busy_s() - busy0) < QUIET_PCT:
            break
    return time.perf_counter() - started


async def wait_for_everyone(sites: Sequence[Site], started: float, timeout: float) -> list[float | None]:
    """Per site: seconds from ``started`` until it decoded a first frame from every other site (None: never)."""
    others = len(sites) - 1
    progress = sites[0].progress
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, started + timeout - time.perf_counter())):
            while not all(len(s.first_frame_at) == others for s in sites):
                progress.clear()
                await progress.wait()
    return [max(s.first_frame_at.values()) - started if len(s.first_frame_at) == others else None for s in sites]


@dataclass
class Snapshot:
    at: float  # perf_counter when this site's counters were read
    traffic: Traffic
    frames: dict[str, int]


async def snapshot(site: Site) -> Snapshot:
    counters = await traffic(site)
    return Snapshot(time.perf_counter(), counters, dict(site.frames))


async def watch_loop_lag(lags: list[float], period: float = 0.1) -> None:
    while True:
        t = time.perf_counter()
        await asyncio.sleep(period)
        lags.append(time.perf_counter() - t - period)


async def measure_window(sites: Sequence[Site], result: Result, opts: Options, janus_pid: int | None) -> None:
    """Rates per site between two reads of its own counters, each stamped when read: on a starved event loop
    reading every site's stats takes seconds, so one common clock would credit early sites with extra bytes."""
    await asyncio.sleep(opts.warmup)
    janus0 = process_cpu_s(janus_pid) if janus_pid is not None else 0.0
    drops0, machine0, cpu0 = udp_receive_buffer_errors(), machine_busy_s(), time.process_time()
    wall0 = time.perf_counter()
    lags: list[float] = []
    watcher = asyncio.create_task(watch_loop_lag(lags))
    try:
        before = [await snapshot(s) for s in sites]
        await asyncio.sleep(opts.seconds)
        after = [await snapshot(s) for s in sites]
    finally:
        watcher.cancel()
    wall = time.perf_counter() - wall0
    result.loop_lag_ms = 1000 * max(lags, default=0.0)
    result.cpu_pct = 100 * (time.process_time() - cpu0) / wall
    if janus_pid is not None:
        result.janus_cpu_pct = 100 * (process_cpu_s(janus_pid) - janus0) / wall
    machine_pct = 100 * (machine_busy_s() - machine0) / wall
    result.other_cpu_pct = max(0.0, machine_pct - result.cpu_pct - (result.janus_cpu_pct or 0.0))
    result.udp_drops = udp_receive_buffer_errors() - drops0
    for site, b, a in zip(sites, before, after, strict=True):
        span = a.at - b.at
        result.up_kbps.append((a.traffic.sent - b.traffic.sent) * 8 / span / 1000)
        result.down_kbps.append((a.traffic.received - b.traffic.received) * 8 / span / 1000)
        result.rtp_up_kbps.append((a.traffic.rtp_sent - b.traffic.rtp_sent) * 8 / span / 1000)
        sources = [s.name for s in sites if s is not site]
        result.stream_fps += [(a.frames.get(src, 0) - b.frames.get(src, 0)) / span for src in sources]


# -- mesh ---------------------------------------------------------------------------------------------------------


async def connect_pair(a: Site, b: Site) -> None:
    """One sendrecv PeerConnection between two sites; ``a`` offers, ``b`` answers, handed over in-process."""
    pa, pb = a.new_pc(), b.new_pc()
    pa.on("track", lambda track: a.receive(track, b.name))
    pb.on("track", lambda track: b.receive(track, a.name))
    pa.addTransceiver(a.camera_view(), direction="sendrecv")
    await pa.setLocalDescription(await pa.createOffer())
    await pb.setRemoteDescription(pa.localDescription)
    pb.addTrack(b.camera_view())  # takes the transceiver the offer created: sendrecv
    await pb.setLocalDescription(await pb.createAnswer())
    await pa.setRemoteDescription(pb.localDescription)


async def run_mesh(n: int, opts: Options) -> Result:
    result = Result("mesh", n)
    sites = make_sites(n, opts)
    try:
        started = time.perf_counter()
        pairs = [(sites[i], sites[j]) for i in range(n) for j in range(i + 1, n)]
        await asyncio.gather(*(connect_pair(a, b) for a, b in pairs))
        result.join_s = await wait_for_everyone(sites, started, opts.join_timeout)
        await measure_window(sites, result, opts, None)
    finally:
        await asyncio.gather(*(s.close() for s in sites), return_exceptions=True)
    return result


# -- SFU (Janus VideoRoom) ------------------------------------------------------------------------------------------


@dataclass
class SfuSite:
    site: Site
    publisher: Publisher | None = None
    subscriptions: list[Subscription] = field(default_factory=list)


async def publish(broker: JanusClient, access: RoomAccess, me: SfuSite, timeout: float) -> None:
    me.publisher = await broker.join_as_publisher(access, me.site.name)
    upload = me.site.new_pc()
    upload.addTransceiver(me.site.camera_view(), direction="sendonly")
    await upload.setLocalDescription(await upload.createOffer())
    answer = await broker.publish(me.publisher, jsep(upload))
    await upload.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    await me.publisher.handle.wait_for("webrtcup", timeout=timeout)  # Janus offers a feed once its media is up


async def subscribe(
    broker: JanusClient, access: RoomAccess, me: SfuSite, names: dict[int, str], feeds: list[int]
) -> None:
    """One subscription (one PeerConnection; multistream when given several feeds) to ``feeds``."""
    assert me.publisher is not None
    subscription = await broker.subscribe(access, feeds, me.publisher.private_id)
    me.subscriptions.append(subscription)
    source_of_mid = {str(s["mid"]): names[int(s["feed_id"])] for s in subscription.streams if "feed_id" in s}
    pc = me.site.new_pc()

    def on_track(track: MediaStreamTrack) -> None:
        mid = next(t.mid for t in pc.getTransceivers() if t.receiver.track is track)
        me.site.receive(track, source_of_mid[str(mid)])

    pc.on("track", on_track)
    offer = subscription.offer
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
    await pc.setLocalDescription(await pc.createAnswer())
    await broker.start(subscription, jsep(pc))


async def subscribe_to_others(
    broker: JanusClient, access: RoomAccess, me: SfuSite, names: dict[int, str], per_feed: bool
) -> None:
    assert me.publisher is not None
    feeds = [feed for feed in names if feed != me.publisher.publisher_id]
    groups = [[feed] for feed in feeds] if per_feed else [feeds]
    await asyncio.gather(*(subscribe(broker, access, me, names, group) for group in groups))


async def run_sfu(n: int, opts: Options, janus: Janus) -> Result:
    result = Result("sfu", n)
    sites = [SfuSite(s) for s in make_sites(n, opts)]
    async with JanusClient(janus.url, api_secret=janus.api_secret, admin_key=janus.admin_key) as broker:
        access = await broker.create_room(
            description=f"bench {n} sites", publishers=n + 2, bitrate=opts.bitrate_kbps * 1000
        )
        try:
            started = time.perf_counter()
            await asyncio.gather(*(publish(broker, access, me, opts.join_timeout) for me in sites))
            names = {me.publisher.publisher_id: me.site.name for me in sites if me.publisher is not None}
            await asyncio.gather(*(subscribe_to_others(broker, access, me, names, opts.per_feed) for me in sites))
            result.join_s = await wait_for_everyone([me.site for me in sites], started, opts.join_timeout)
            await measure_window([me.site for me in sites], result, opts, janus.process.pid)
        finally:
            await asyncio.gather(*(me.site.close() for me in sites), return_exceptions=True)
            with contextlib.suppress(Exception):
                await broker.destroy_room(access)
            handles = [s.handle for me in sites for s in me.subscriptions]
            handles += [me.publisher.handle for me in sites if me.publisher is not None]
            for handle in handles:
                with contextlib.suppress(Exception):
                    await broker.detach(handle)
    return result


# -- printing -------------------------------------------------------------------------------------------------------


def mean(values: Sequence[float]) -> float:
    return statistics.mean(values) if values else 0.0


def fmt_join(r: Result | None) -> str:
    if r is None:
        return "-"
    if r.error is not None:
        return "FAILED"
    if not r.joined:
        return "none joined"
    text = f"{statistics.median(r.joined):.2f}/{max(r.joined):.2f}"
    return text if r.complete else f"{text} ({len(r.joined)}/{r.n} joined)"


def fmt_pair(values: Sequence[float]) -> str:
    return f"{mean(values):.0f}/{max(values):.0f}" if values else "-"


def fmt_cpu(r: Result | None) -> str:
    if r is None or r.error is not None:
        return "-"
    return f"{r.cpu_pct:.0f}" + (f"+{r.janus_cpu_pct:.0f}" if r.janus_cpu_pct is not None else "")


def fmt_fps(r: Result | None, fps: int) -> str:
    if r is None or not r.stream_fps:
        return "-"
    low = sum(1 for f in r.stream_fps if f < OK_FPS_SHARE * fps)
    return f"{min(r.stream_fps):.1f}/{mean(r.stream_fps):.1f}" + (f" ({low} low)" if low else "")


def print_markdown(head: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def print_tables(results: dict[tuple[str, int], Result], ns: Sequence[int], fps: int) -> None:
    main_rows, health_rows = [], []
    for n in ns:
        m, s = results.get(("mesh", n)), results.get(("sfu", n))
        ratio = "-"
        if m and s and m.up_kbps and s.up_kbps and mean(s.up_kbps) > 0:
            ratio = f"{mean(m.up_kbps) / mean(s.up_kbps):.1f}x"
        main_rows.append(
            [
                str(n),
                fmt_join(m),
                fmt_pair(m.up_kbps) if m else "-",
                fmt_join(s),
                fmt_pair(s.up_kbps) if s else "-",
                ratio,
                f"{mean(m.down_kbps):.0f}" if m and m.down_kbps else "-",
                f"{mean(s.down_kbps):.0f}" if s and s.down_kbps else "-",
                fmt_cpu(m),
                fmt_cpu(s),
            ]
        )
        health_rows.append(
            [
                str(n),
                fmt_fps(m, fps),
                fmt_fps(s, fps),
                str(m.udp_drops) if m and m.stream_fps else "-",
                str(s.udp_drops) if s and s.stream_fps else "-",
                f"{m.other_cpu_pct:.0f}" if m and m.stream_fps else "-",
                f"{s.other_cpu_pct:.0f}" if s and s.stream_fps else "-",
                f"{m.loop_lag_ms:.0f}" if m and m.stream_fps else "-",
                f"{s.loop_lag_ms:.0f}" if s and s.stream_fps else "-",
            ]
        )
    print_markdown(
        [
            "N",
            "mesh join p50/max s",
            "mesh up kbit/s mean/max",
            "SFU join p50/max s",
            "SFU up kbit/s mean/max",
            "up mesh/SFU",
            "mesh down",
            "SFU down",
            "mesh CPU %",
            "SFU CPU % +Janus",
        ],
        main_rows,
    )
    print()
    print_markdown(
        [
            "N",
            "mesh fps/stream min/mean",
            "SFU fps/stream min/mean",
            "mesh UDP drops",
            "SFU UDP drops",
            "mesh other CPU %",
            "SFU other CPU %",
            "mesh loop lag ms",
            "SFU loop lag ms",
        ],
        health_rows,
    )


def print_verdict(results: dict[tuple[str, int], Result], ns: Sequence[int], fps: int) -> None:
    def ups(mode: str) -> list[tuple[int, float]]:
        return [
            (n, mean(results[(mode, n)].up_kbps)) for n in ns if results.get((mode, n)) and results[(mode, n)].up_kbps
        ]

    sfu = ups("sfu")
    if sfu:
        spread = max(v for _, v in sfu) / max(min(v for _, v in sfu), 1e-9)
        print(
            f"SFU upload per participant: {', '.join(f'N={n} {v:.0f}' for n, v in sfu)} kbit/s; max/min {spread:.2f}"
            f" -> {'FLAT' if spread <= 1 + FLAT_TOLERANCE else 'NOT FLAT'} (goal: within +{FLAT_TOLERANCE:.0%})"
        )
    mesh = ups("mesh")
    if len(mesh) >= 2:
        (n0, v0), parts, linear = mesh[0], [], True
        for n, v in mesh[1:]:
            ideal = (n - 1) / (n0 - 1)
            parts.append(f"N={n} {v / v0:.2f}x (N-1 streams: {ideal:.0f}x)")
            linear &= abs(v / v0 / ideal - 1) <= FLAT_TOLERANCE
        verdict = "grows ~linearly" if linear else f"NOT within {FLAT_TOLERANCE:.0%} of linear"
        print(f"mesh upload per participant vs N={n0}: {', '.join(parts)} -> {verdict}")
    for mode, label in (("sfu", "SFU"), ("mesh", "mesh")):
        ran = [n for n in ns if (mode, n) in results]
        if not ran:
            continue
        ok = [n for n in ran if results[(mode, n)].healthy(fps)]
        goal = f"; >= 8 participants: {'YES' if max(ok, default=0) >= 8 else 'NO'}" if mode == "sfu" else ""
        print(
            f"{label}: every site joined and every stream >= {OK_FPS_SHARE:.0%} of {fps} fps at N = "
            f"{', '.join(map(str, ok)) or 'none'} (of {', '.join(map(str, ran))}){goal}"
        )


def print_run(r: Result, fps: int) -> None:
    if r.error is not None:
        print(f"  {r.mode:4} N={r.n:<2} FAILED: {r.error}", flush=True)
        return
    low = sum(1 for f in r.stream_fps if f < OK_FPS_SHARE * fps)
    print(
        f"  {r.mode:4} N={r.n:<2} join {fmt_join(r)} s | up {fmt_pair(r.up_kbps)} kbit/s "
        f"(rtp {fmt_pair(r.rtp_up_kbps)}) | down {fmt_pair(r.down_kbps)} | fps/stream min "
        f"{min(r.stream_fps, default=0):.1f} mean {mean(r.stream_fps):.1f}, {low}/{len(r.stream_fps)} under "
        f"{OK_FPS_SHARE * fps:.0f} | CPU {fmt_cpu(r)} %, rest of machine {r.other_cpu_pct:.0f} % | "
        f"UDP drops {r.udp_drops} | loop lag max {r.loop_lag_ms:.0f} ms | waited {r.quiet_waited_s:.0f} s for quiet",
        flush=True,
    )


# -- main ----------------------------------------------------------------------------------------------------------


async def bench(ns: Sequence[int], modes: Sequence[str], opts: Options, janus: Janus | None) -> int:
    results: dict[tuple[str, int], Result] = {}
    for n in ns:
        for mode in modes:
            waited = await wait_quiet(opts.quiet_wait)
            try:
                if mode == "mesh":
                    result = await run_mesh(n, opts)
                else:
                    assert janus is not None
                    result = await run_sfu(n, opts, janus)
            except Exception as exc:  # a Janus refusal, an aiortc failure: report it, go on with the next run
                traceback.print_exc()
                result = Result(mode, n, error=f"{type(exc).__name__}: {exc}")
            result.quiet_waited_s = waited
            results[(mode, n)] = result
            print_run(result, opts.fps)
            await asyncio.sleep(1.0)  # let closed transports and Janus settle before the next run
    print(
        f"\nMesh vs SFU, {opts.width}x{opts.height} @ {opts.fps} fps VP8 pinned at {opts.bitrate_kbps} kbit/s per "
        f"encoded stream; window {opts.seconds:g} s after {opts.warmup:g} s warm-up; join in s (p50/max over "
        f"sites); kbit/s per participant (mean/max over sites; wire bytes of its transports); fps per received "
        f"stream (min/mean; k low = k streams under 80 %); CPU % of one core (SFU: this process + Janus); UDP drops:"
        f" the kernel's RcvbufErrors in the window; other CPU %: the rest of the machine in the window; loop lag: worst"
        f" lateness of a 100 ms timer on this process's event loop (every site's packets go through it)\n"
    )
    print_tables(results, ns, opts.fps)
    print()
    print_verdict(results, ns, opts.fps)
    print(f"load average: {loadavg()}")
    return 1 if any(r.error is not None for r in results.values()) else 0


def int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not values or min(values) < 2:
        raise argparse.ArgumentTypeError("participant counts must be >= 2")
    return values


def mode_list(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    if not modes or set(modes) - set(MODES):
        raise argparse.ArgumentTypeError(f"modes are a comma-separated subset of {','.join(MODES)}")
    return modes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int_list, default=[2, 4, 6, 8], help="N list (default 2,4,6,8)")
    parser.add_argument("--modes", type=mode_list, default=list(MODES), help="mesh,sfu (default both)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured steady window (default 10 s)")
    parser.add_argument("--warmup", type=float, default=3.0, help="after everyone joined, before the window (3 s)")
    parser.add_argument("--width", type=int, default=320, help="synthetic camera width (default 320)")
    parser.add_argument("--height", type=int, default=240, help="synthetic camera height (default 240)")
    parser.add_argument("--fps", type=int, default=15, help="synthetic camera frame rate (default 15)")
    parser.add_argument("--bitrate-kbps", type=int, default=300, help="VP8 bitrate of every encoded stream (300)")
    parser.add_argument("--join-timeout", type=float, default=45.0, help="give up waiting for first frames (45 s)")
    parser.add_argument(
        "--udp-rcvbuf-kb",
        type=int,
        default=1024,
        help="SO_RCVBUF of every ICE socket, both modes (default 1024; aioice's own: 256)",
    )
    parser.add_argument(
        "--sfu-subscription",
        choices=("multistream", "per-feed"),
        default="multistream",
        help="SFU: one multistream subscription per site (default, as the product) or one per feed",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help=f"before each run, wait up to this many s for the machine to use < {QUIET_PCT:.0f} %% of a core (30)",
    )
    args = parser.parse_args()
    if args.width % 2 or args.height % 2 or args.width < 32 or args.height < 32:
        parser.error("--width and --height must be even and >= 32 (yuv420p)")
    if args.fps < 1 or args.seconds <= 0 or args.bitrate_kbps < 10:
        parser.error("--fps >= 1, --seconds > 0 and --bitrate-kbps >= 10 please")
    opts = Options(
        args.width,
        args.height,
        args.fps,
        args.bitrate_kbps,
        args.seconds,
        max(0.0, args.warmup),
        args.join_timeout,
        max(0.0, args.quiet_wait),
        args.sfu_subscription == "per-feed",
    )
    pin_vp8_bitrate(opts.bitrate_kbps * 1000)
    set_udp_receive_buffer(args.udp_rcvbuf_kb * 1024)
    print(
        f"conference bench: N={','.join(map(str, args.participants))}, modes {','.join(args.modes)}, "
        f"SFU subscription {args.sfu_subscription}, UDP receive buffer {args.udp_rcvbuf_kb} KiB, "
        f"{os.cpu_count()} CPUs, load average {loadavg()}",
        flush=True,
    )

    async def bounded(janus: Janus | None) -> int:
        # SIGTERM cancels the bench like Ctrl-C does: every `finally` runs (peer connections closed, room destroyed).
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await bench(args.participants, args.modes, opts, janus)

    with tempfile.TemporaryDirectory(prefix="teleconsult-bench-conference-") as tmp, contextlib.ExitStack() as stack:
        try:
            janus = start_janus(Path(tmp)) if "sfu" in args.modes else None
            if janus is not None:
                stack.callback(janus.stop)
            return asyncio.run(bounded(janus))
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("conference: interrupted", file=sys.stderr)
            return 130
        except BaseException as exc:  # e.g. JanusNotAvailable: no janus installed, or it did not start
            if isinstance(exc, SystemExit):
                raise
            print(f"conference: error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
