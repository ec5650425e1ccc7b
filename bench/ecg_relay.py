"""ECG relay: live fan-out of 12-lead waveform frames through ONE `teleconsult serve` process, against a
minimal Node socket.io relay measured in the same run (and, with --python-relay-peer, a bare python-socketio
relay: the same Python stack without teleconsult's work).

Load, for each N of the ladder (default 25, 50, 100, 200): N concurrent streams, each a 12-lead 500 Hz source
(the 12 standard leads of PTB s0010_re, decimated 1000 -> 500 Hz, digital int16 values, looped) sending 25
frames/s (20 samples per lead per frame, ~327 bytes coded) as binary ``stream.frame`` events with acks, and
each stream watched by 2 socket.io viewers (the requesting clinician and the accepting cardiologist, one
connection per user and room) that ``room.join`` its consultation. That is 25*N frames/s in, 50*N frames/s
out and 3*N connections. Sources are unsynchronised (send times spread evenly over the 40 ms period) and do
not wait for acks (a refused frame is counted, not resent).

Setup (not timed): the server is started like the e2e tests start it (free port, temp SQLite migrated and
seeded with the demo; or --database-url for PostgreSQL, in a schema of its own that is dropped afterwards),
with the product's default settings unless --server-env says otherwise; N consultations are created by
`clinician` (TYT-TV) through the JSON API and accepted by `cardiologist`. The Node relay
(bench/node_relay/relay.js, npm socket.io ^4; `npm install --prefix bench/node_relay` on first run) handles the
same events with the same room names and acks each frame at once (no auth, no validation, no storage).

Per step the load runs in worker process(es) of this script (--bench-procs, default 1; each worker has its
sources AND their viewers, so a frame's send time and its arrivals are on one clock). Before a step the bench
waits (up to --quiet-wait s) for other processes on the machine to go quiet; then warm-up (--warmup, 3 s),
the measured window (--measure, 10 s), and --grace (2 s) more sending, so that the last measured frames do
not meet an idle server. Figures over the frames SENT in the window:

  p50/p99/max   source -> viewer latency: send time (just before the socket write) to the time the viewer's
                protocol parser sees the frame, both in the bench worker; ms
  lost          2 x frames sent in the window - deliveries of those frames received by the end of grace
  ack p50/p99   send -> ack (teleconsult acks once the frame is COMMITTED to the database; Node at once)
  acked/sent    frames of the whole step acked ok / sent; errs: acks with an error (listed below the row)
  stored        frames of the step in the database (SUM(waveform_streams.next_seq)), counted after the
                outstanding acks (--ack-wait) and after the server went idle again (settle)
  drops         bench connections the server closed during the step
  srv%          CPU of the server process (all threads) over the window, % of one core (/proc/<pid>/stat)
  bench%        CPU of the bench worker(s) over the window, % of one core summed over workers
  other%        CPU of everything else on the machine over the window (2 cores = 200)
  lag99         p99 of (actual send - scheduled send): when it grows, the bench itself is late
  setup/settle  seconds to connect and join, and for the server to go idle after the step

A row marked "bench-bound" had a bench worker above 90 % of a core or a send lag p99 above 5 ms: the
bench, not the system measured, may set its figures (2-core machine: server and bench share it). A system
that collapses (p99 > 2 s with frames lost) is not climbed further unless --full-ladder. Ceiling = largest N
of the ladder with p99 <= 20 ms, 0 lost, and every frame acked ok. Issue goals: teleconsult serves 200 streams
at p99 <= 20 ms with 0 loss, and its ceiling is at least half the Node relay's.

Sources and viewers speak WebSocket / Engine.IO 4 / Socket.IO 5 through a small client on an asyncio Protocol
in this script (--client raw, default). python-socketio's AsyncClient (--client python-socketio) cost about
twice the bench CPU per message here, and with 3*N connections the bench, not the server, became the
bottleneck.

    .venv/bin/python bench/ecg_relay.py [--ladder 25,50,100,200] [--measure 10] [--warmup 3]
        [--database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test] [--server-env TELECONSULT_K=V ...]
        [--no-node | --only-node] [--python-relay-peer] [--full-ladder] [--bench-procs 1]
        [--client raw|python-socketio] [--keep] [--profile-server FILE] [--json]

Exit status 0 when the runs completed, whatever the figures; 1 when the bench could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
NODE_DIR = BENCH / "node_relay"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_RECORD = ROOT / "tests" / "data" / "physionet" / "s0010_re"
P99_GOAL_MS = 20.0
GOAL_STREAMS = 200
CLK_TCK = os.sysconf("SC_CLK_TCK")
COLLAPSE_P99_MS = 2000.0
QUIET_PCT = 30.0  # CPU (% of one core) that other processes may use before a step starts


# ------------------------------------------------------------------------------------------------------------
# the source signal: 12 leads at 500 Hz, frames built from pre-coded sample blocks
# ------------------------------------------------------------------------------------------------------------


def uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


@dataclass
class Source:
    rate: float
    per_frame: int
    signals: list[dict[str, Any]]
    blocks: list[bytes]  # sample blocks of consecutive frames (the record, looped)
    tail: bytes  # rate, n_samples, n_signals and per-signal scales: the constant middle of every header

    def frame(self, stream_id: int, seq: int) -> bytes:
        head = b"\xec\x01" + uvarint(stream_id) + uvarint(seq) + uvarint(seq * self.per_frame)
        return head + self.tail + self.blocks[seq % len(self.blocks)]


def load_source(record: str, leads: int, rate: float, fps: float, max_frames: int | None = None) -> Source:
    """The record's first ``leads`` signals, decimated to ``rate``; each frame's samples coded once with the
    product's encoder (coding 12 leads costs ~10 ms a frame in Python: too slow to do per send)."""
    import numpy as np
    import wfdb

    from teleconsult.domain.waveform import (
        WIRE_PARTITION,
        FrameHeader,
        SignalScale,
        decode_frame,
        encode_block,
        encode_frame,
        rate_to_mhz,
    )

    rec = wfdb.rdrecord(record, physical=False)
    step = rec.fs / rate
    if abs(step - round(step)) > 1e-9 or step < 1:
        raise SystemExit(f"{record}: {rec.fs} Hz cannot be decimated to {rate} Hz by an integer factor")
    data = np.asarray(rec.d_signal, dtype=np.int64)[:: int(round(step)), :leads]
    per_frame = max(1, round(rate / fps))
    n_frames = len(data) // per_frame
    if max_frames:  # frames beyond those sent need not be coded (the record loops)
        n_frames = max(1, min(n_frames, max_frames))
    signals = [
        {"name": str(n)[:32], "units": str(u or "NU")[:16], "gain": float(g), "baseline": int(b)}
        for n, u, g, b in zip(rec.sig_name, rec.units, rec.adc_gain, rec.baseline, strict=True)
    ][:leads]
    scales = tuple(SignalScale(s["gain"], s["baseline"], s["units"]) for s in signals)
    blocks = [encode_block(data[i * per_frame : (i + 1) * per_frame], WIRE_PARTITION) for i in range(n_frames)]
    rate_mhz = rate_to_mhz(rate)
    tail = encode_frame(FrameHeader(1, 0, 0, rate_mhz, per_frame, scales), data[:per_frame])
    tail = tail[: len(tail) - len(blocks[0])][2 + 3 :]  # drop magic, version, stream id, seq, first sample
    source = Source(rate, per_frame, signals, blocks, tail)
    # The shortcut must build exactly what the product's encoder builds.
    for seq in sorted({0, min(1, n_frames - 1), n_frames - 1, n_frames + 3, 200_000}):
        header = FrameHeader(777, seq, seq * per_frame, rate_mhz, per_frame, scales)
        piece = data[(seq % n_frames) * per_frame : (seq % n_frames + 1) * per_frame]
        assert source.frame(777, seq) == encode_frame(header, piece), "frame shortcut differs from encode_frame"
        assert np.array_equal(decode_frame(source.frame(777, seq)).samples, piece)
    return source


# ------------------------------------------------------------------------------------------------------------
# socket.io clients
# ------------------------------------------------------------------------------------------------------------


class RawClient(asyncio.Protocol):
    """Just enough WebSocket (RFC 6455) + Engine.IO 4 + Socket.IO 5 on an asyncio Protocol: connect with auth,
    emit with ack (JSON, or one binary attachment), receive events (binary "stream.frame" as bytes), answer
    pings. Written for the bench's own CPU: one socket write per emitted frame (its text header and binary
    attachment together), frames parsed straight from the receive buffer, no task or queue per message. The
    client's masking key is zero (allowed by the RFC's framing; servers unmask by XOR), so payloads are
    written as they are."""

    def __init__(self, http: Any = None) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._handshake: asyncio.Future[None] | None = None
        self._connected: asyncio.Future[None] | None = None
        self._upgraded = False
        self._ids = 0
        self._acks: dict[int, Any] = {}
        self._binary_event: str | None = None
        self._fragments: list[bytes] = []
        self._fragment_op = 0
        self.on_frame: Any = None  # callable(bytes) for binary "stream.frame" events
        self.closed_reason: str | None = None

    # -- connection -------------------------------------------------------------------------------------------

    async def connect(self, url: str, token: str, timeout: float = 20) -> None:
        import base64

        host_port = url.split("://", 1)[1].rstrip("/")
        host, _, port = host_port.partition(":")
        loop = asyncio.get_running_loop()
        self._handshake = loop.create_future()
        self._connected = loop.create_future()
        async with asyncio.timeout(timeout):
            await loop.create_connection(lambda: self, host, int(port or 80))
            key = base64.b64encode(os.urandom(16)).decode()
            assert self.transport is not None
            self.transport.write(
                (
                    "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                    f"Host: {host_port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            await self._handshake  # 101, then the engine.io open packet
            self._send_text("40" + json.dumps({"token": token}))
            await self._connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed_reason is None:
            self.closed_reason = f"connection lost ({exc})" if exc else "connection closed by the server"
        for fut in (self._handshake, self._connected):
            if fut is not None and not fut.done():
                fut.set_exception(ConnectionError(self.closed_reason))

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            if b" 101 " not in status:
                self._fail(f"websocket upgrade refused: {status.decode(errors='replace')}")
                return
            del buf[: end + 4]
            self._upgraded = True
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if n - pos < head + length:
                break
            payload = bytes(buf[pos + head : pos + head + length])
            pos += head + length
            self._frame(b0 & 0x80, b0 & 0x0F, payload)
        if pos:
            del buf[:pos]

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode == 0:  # continuation
            self._fragments.append(payload)
            if not fin:
                return
            opcode, payload = self._fragment_op, b"".join(self._fragments)
            self._fragments = []
        elif not fin and opcode in (1, 2):
            self._fragment_op, self._fragments = opcode, [payload]
            return
        if opcode == 1:
            self._text(payload.decode())
        elif opcode == 2:
            event, self._binary_event = self._binary_event, None
            if event == "stream.frame" and self.on_frame is not None:
                self.on_frame(payload)
        elif opcode == 9:
            self._write(0xA, payload)
        elif opcode == 8:
            if self.closed_reason is None:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                self.closed_reason = f"websocket closed by the server ({code})"
            if self.transport is not None:
                self.transport.close()

    def _text(self, data: str) -> None:
        if data == "2":  # engine.io ping
            self._send_text("3")
            return
        kind = data[0]
        if kind == "0":  # engine.io open
            if self._handshake is not None and not self._handshake.done():
                self._handshake.set_result(None)
            return
        if kind == "1":  # engine.io close
            self.closed_reason = "engine.io close"
            return
        if kind != "4" or len(data) < 2:
            return
        packet, body = data[1], data[2:]
        if packet == "3":  # ACK: <id>[...]
            end = body.index("[")
            callback = self._acks.pop(int(body[:end]), None)
            if callback is not None:
                args = json.loads(body[end:])
                callback(args[0] if args else None)
        elif packet == "5":  # BINARY_EVENT: 1-["stream.frame",{placeholder}]; the bytes come next
            rest = body[body.index("-") + 1 :]
            self._binary_event = json.loads(rest[rest.index("[") :])[0]
        elif packet == "0":  # socket.io connected
            if self._connected is not None and not self._connected.done():
                self._connected.set_result(None)
        elif packet == "4":  # connect error
            self._fail(f"socket.io connection refused: {body}")
        # plain events (stream.opened, stream.heart_rate, room.peer_joined, ...) are not needed here

    def _fail(self, reason: str) -> None:
        self.closed_reason = reason
        for fut in (self._handshake, self._connected):
            if fut is not None and not fut.done():
                fut.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.close()

    # -- sending ----------------------------------------------------------------------------------------------

    @staticmethod
    def _ws_frame(opcode: int, payload: bytes) -> bytes:
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
        return head + b"\x00\x00\x00\x00" + payload  # zero masking key: payload unchanged

    def _write(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError(self.closed_reason or "not connected")
        self.transport.write(self._ws_frame(opcode, payload))

    def _send_text(self, text: str) -> None:
        self._write(0x1, text.encode())

    def _next_id(self, callback: Any) -> int:
        self._ids += 1
        self._acks[self._ids] = callback
        return self._ids

    async def call(self, event: str, data: Any, timeout: float = 20) -> Any:
        future = asyncio.get_running_loop().create_future()
        ack_id = self._next_id(lambda value: future.done() or future.set_result(value))
        self._send_text(f"42{ack_id}" + json.dumps([event, data]))
        async with asyncio.timeout(timeout):
            return await future

    def send_frame(self, payload: bytes, on_ack: Any) -> None:
        """Emit binary "stream.frame" with an ack: header packet and attachment in one write."""
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError(self.closed_reason or "not connected")
        ack_id = self._next_id(on_ack)
        header = f'451-{ack_id}["stream.frame",{{"_placeholder":true,"num":0}}]'.encode()
        self.transport.write(self._ws_frame(0x1, header) + self._ws_frame(0x2, payload))

    async def emit_frame(self, payload: bytes, on_ack: Any) -> None:
        self.send_frame(payload, on_ack)

    async def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            try:
                self._write(0x8, (1000).to_bytes(2, "big"))
            except ConnectionError:
                pass
            self.transport.close()


class SioClient:
    """The same interface on python-socketio's AsyncClient."""

    def __init__(self, http: Any) -> None:
        import socketio

        self.sio = socketio.AsyncClient(reconnection=False, http_session=http)
        self.on_frame: Any = None
        self.closed_reason: str | None = None

        async def frame(data: Any) -> None:
            if self.on_frame is not None:
                self.on_frame(data)

        async def gone(*args: Any) -> None:
            self.closed_reason = "disconnected"

        self.sio.on("stream.frame", frame)
        self.sio.on("disconnect", gone)

    async def connect(self, url: str, token: str, timeout: float = 20) -> None:
        await self.sio.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=timeout)

    async def call(self, event: str, data: Any, timeout: float = 20) -> Any:
        return await self.sio.call(event, data, timeout=timeout)

    async def emit_frame(self, payload: bytes, on_ack: Any) -> None:
        await self.sio.emit("stream.frame", payload, callback=on_ack)

    async def close(self) -> None:
        await self.sio.disconnect()


# ------------------------------------------------------------------------------------------------------------
# worker: the sources and viewers of some of the streams, in one process
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Stream:
    index: int  # global, for the send phase
    consultation_id: int
    source: Any = None
    viewers: list[Any] = field(default_factory=list)
    stream_id: int = 0
    sent: list[float] = field(default_factory=list)  # send time by seq
    deliveries: bytearray = field(default_factory=bytearray)  # by seq, deliveries counted
    acked_ok: int = 0
    ack_errors: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))]


async def worker(cfg: dict[str, Any], source: Source) -> dict[str, Any]:
    import aiohttp

    url = cfg["url"]
    tokens = cfg["tokens"]
    client_class = RawClient if cfg["client"] == "raw" else SioClient
    raw = cfg["client"] == "raw"
    http = None if raw else aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    streams = [Stream(i, cid) for i, cid in cfg["streams"]]
    by_stream_id: dict[int, Stream] = {}
    window: list[float] = [0.0, 0.0]
    latencies: list[float] = []
    ack_latencies: list[float] = []
    send_lags: list[float] = []
    errors: list[str] = []
    monotonic = time.monotonic

    def on_frame(payload: bytes) -> None:
        now = monotonic()
        stream_id, pos = read_uvarint(payload, 2)
        seq, _ = read_uvarint(payload, pos)
        st = by_stream_id.get(stream_id)
        if st is None or seq >= len(st.sent):
            return
        if st.deliveries[seq] < 255:
            st.deliveries[seq] += 1
        sent = st.sent[seq]
        if window[0] <= sent < window[1]:
            latencies.append(now - sent)

    sem = asyncio.Semaphore(cfg["connect_parallel"])

    async def connect(token: str) -> Any:
        async with sem:
            client = client_class(http)
            await client.connect(url, token)
            return client

    async def setup(st: Stream) -> None:
        for who in ("viewer_clinician", "viewer_specialist"):
            viewer = await connect(tokens[who])
            viewer.on_frame = on_frame
            async with sem:
                ack = await viewer.call("room.join", {"consultation_id": st.consultation_id})
            if not ack or not ack.get("ok"):
                raise RuntimeError(f"room.join {st.consultation_id} as {who}: {ack}")
            st.viewers.append(viewer)
        st.source = await connect(tokens["source"])
        body = {
            "consultation_id": st.consultation_id,
            "source_key": f"{cfg['key_prefix']}-{st.index}",
            "label": "bench 12-lead",
            "sample_rate": source.rate,
            "signals": source.signals,
        }
        async with sem:
            ack = await st.source.call("stream.open", body)
        if not ack or not ack.get("ok"):
            raise RuntimeError(f"stream.open {st.consultation_id}: {ack}")
        st.stream_id = int(ack["stream"]["id"])
        by_stream_id[st.stream_id] = st

    t_setup = monotonic()
    await asyncio.gather(*(setup(st) for st in streams))
    print(json.dumps({"ready": True, "setup_s": monotonic() - t_setup}), flush=True)
    go = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    t0 = float(json.loads(go)["t0"])
    period = 1.0 / cfg["fps"]
    w0 = t0 + cfg["warmup"]
    w1 = w0 + cfg["measure"]
    end = w1 + cfg["grace"]
    window[0], window[1] = w0, w1
    total = cfg["total_streams"]
    phases = [st.index / total * period for st in streams]
    cpu: dict[str, float] = {}

    def mark(name: str) -> None:
        cpu[name] = time.process_time()

    loop = asyncio.get_running_loop()
    # loop.call_at uses the loop's clock, which is time.monotonic.
    loop.call_at(w0, mark, "w0")
    loop.call_at(w1, mark, "w1")

    def make_ack(st: Stream, seq: int) -> Any:
        def on_ack(data: Any) -> None:
            st.in_flight -= 1
            if isinstance(data, dict) and data.get("ok"):
                st.acked_ok += 1
                sent = st.sent[seq]
                if w0 <= sent < w1:
                    ack_latencies.append(monotonic() - sent)
            else:
                error = data.get("error", {}) if isinstance(data, dict) else {}
                code = error.get("code", "?")
                st.ack_errors[code] = st.ack_errors.get(code, 0) + 1
                if len(errors) < 5:
                    errors.append(f"ack error for frame {seq}: {code}: {error.get('message', data)}")

        return on_ack

    n = len(streams)
    j = 0
    unslept = 0
    while True:
        k, i = divmod(j, n)
        due = t0 + k * period + phases[i]
        if due >= end:
            break
        now = monotonic()
        if due > now + 0.0005:
            await asyncio.sleep(due - now)
            unslept = 0
        elif unslept >= 8:
            await asyncio.sleep(0)
            unslept = 0
        else:
            unslept += 1
        st = streams[i]
        payload = source.frame(st.stream_id, k)
        st.deliveries.append(0)
        now = monotonic()
        st.sent.append(now)
        if w0 <= due < w1:
            send_lags.append(now - due)
            if now - due > 0.02 and os.environ.get("ECG_RELAY_DEBUG"):
                print(f"lag {1000 * (now - due):.1f} ms at {due - w0:.3f} s (j={j})", file=sys.stderr)
        st.in_flight += 1
        st.max_in_flight = max(st.max_in_flight, st.in_flight)
        try:
            if raw:
                st.source.send_frame(payload, make_ack(st, k))
            else:
                await st.source.emit_frame(payload, make_ack(st, k))
        except Exception as exc:
            errors.append(f"send: {type(exc).__name__}: {exc}")
            st.in_flight -= 1
        j += 1
    # Outstanding acks (the server acks when committed; it gives up after commit_timeout_s).
    deadline = monotonic() + cfg["ack_wait"]
    while monotonic() < deadline and any(st.in_flight > 0 for st in streams):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    closed = [c.closed_reason for st in streams for c in [st.source, *st.viewers] if c.closed_reason]
    result = {
        "streams": [st.stream_id for st in streams],
        "sent_window": sum(1 for st in streams for t in st.sent if w0 <= t < w1),
        "expected": 0,
        "received": 0,
        "duplicates": 0,
        "sent_total": sum(len(st.sent) for st in streams),
        "acked_ok": sum(st.acked_ok for st in streams),
        "unacked": sum(st.in_flight for st in streams),
        "ack_errors": {},
        "max_in_flight": max((st.max_in_flight for st in streams), default=0),
        "latencies": latencies,
        "ack_latencies": ack_latencies,
        "send_lag_p99": pct(send_lags, 99),
        "cpu_s": cpu.get("w1", 0.0) - cpu.get("w0", 0.0),
        "errors": errors[:5],
        "closed": closed[:5],
        "n_closed": len(closed),
    }
    viewers = 2
    for st in streams:
        for seq, sent in enumerate(st.sent):
            if w0 <= sent < w1:
                result["expected"] += viewers
                got = st.deliveries[seq]
                result["received"] += min(got, viewers)
                result["duplicates"] += max(0, got - viewers)
        for code, count in st.ack_errors.items():
            result["ack_errors"][code] = result["ack_errors"].get(code, 0) + count
    for st in streams:
        for c in [st.source, *st.viewers]:
            try:
                await asyncio.wait_for(c.close(), 5)
            except Exception:
                pass
    if http is not None:
        await http.close()
    return result


def worker_entry() -> int:
    cfg = json.loads(sys.stdin.readline())
    try:
        source = pickle.loads(Path(cfg["source_file"]).read_bytes())
        result = asyncio.run(worker(cfg, source))
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}), flush=True)
        return 1
    print(json.dumps({"result": result}), flush=True)
    return 0


# ------------------------------------------------------------------------------------------------------------
# the systems under test
# ------------------------------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (/proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not answer /healthz:\n{log.read_text(errors='replace')[-3000:]}")


@dataclass
class System:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    db: Any = None  # callable(stream_ids) -> frames stored, or None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "teleconsult.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"teleconsult {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def start_teleconsult(
    tmp: Path, database_url: str | None, schema: str | None, extra: dict[str, str], profile: str | None = None
) -> System:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELECONSULT_")}
    env.update(
        {
            "TELECONSULT_DATABASE_URL": database_url or f"sqlite+aiosqlite:///{tmp}/relay.sqlite3",
            "TELECONSULT_PORT": str(port),
            "TELECONSULT_HOST": "127.0.0.1",
        }
    )
    if schema:
        env["TELECONSULT_DATABASE_SCHEMA"] = schema
    env.update(extra)
    cli(env, "migrate")
    cli(env, "seed", "--demo")
    log = tmp / "server.log"
    wrap = ["-m", "cProfile", "-o", profile] if profile else []
    process = subprocess.Popen(
        [sys.executable, *wrap, "-m", "teleconsult.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    system = System("teleconsult", url, process, log)
    try:
        wait_healthy(url, process, log)
    except Exception:
        system.stop()
        raise
    if database_url:
        system.db = lambda ids: pg_frames(database_url, schema, ids)
    else:
        path = tmp / "relay.sqlite3"
        system.db = lambda ids: sqlite_frames(path, ids)
    return system


def sqlite_frames(path: Path, ids: list[int]) -> int:
    with sqlite3.connect(path, timeout=30) as conn:
        marks = ",".join("?" * len(ids))
        row = conn.execute(f"SELECT COALESCE(SUM(next_seq), 0) FROM waveform_streams WHERE id IN ({marks})", ids)
        return int(row.fetchone()[0])


def pg_frames(url: str, schema: str | None, ids: list[int]) -> int:
    async def query() -> int:
        import asyncpg

        dsn = url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(dsn, server_settings={"search_path": schema} if schema else None)
        try:
            value = await conn.fetchval(
                "SELECT COALESCE(SUM(next_seq), 0) FROM waveform_streams WHERE id = ANY($1)", ids
            )
            return int(value)
        finally:
            await conn.close()

    return asyncio.run(query())


def drop_pg_schema(url: str, schema: str) -> None:
    async def drop() -> None:
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def python_relay(port: int) -> int:
    """The optional second peer: the same relay as bench/node_relay/relay.js on aiohttp + python-socketio, with
    the product's engine settings (ping 5 s / 10 s, 256 KiB buffer). Tells the cost of the Python socket.io
    stack apart from teleconsult's own work (validation, commit before ack, audit)."""
    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(
        async_mode="aiohttp", max_http_buffer_size=256 * 1024, ping_interval=5.0, ping_timeout=10.0, logger=False
    )
    rooms: dict[int, str] = {}

    @sio.on("connect")
    async def connect(sid: str, environ: Any, auth: Any = None) -> None:
        return None

    @sio.on("room.join")
    async def join(sid: str, data: Any) -> dict[str, Any]:
        await sio.enter_room(sid, f"consultation:{int(data['consultation_id'])}")
        return {"ok": True, "peer_id": sid, "participants": []}

    @sio.on("stream.open")
    async def open_stream(sid: str, data: Any) -> dict[str, Any]:
        stream_id = len(rooms) + 1
        rooms[stream_id] = f"consultation:{int(data['consultation_id'])}"
        return {"ok": True, "stream": {"id": stream_id}, "next_seq": 0}

    @sio.on("stream.frame")
    async def frame(sid: str, data: Any) -> dict[str, Any]:
        if not isinstance(data, bytes) or len(data) < 3 or data[0] != 0xEC:
            return {"ok": False, "error": {"code": "invalid", "message": "not a frame"}}
        stream_id, pos = read_uvarint(data, 2)
        seq, _ = read_uvarint(data, pos)
        room = rooms.get(stream_id)
        if room is None:
            return {"ok": False, "error": {"code": "forbidden", "message": "unknown stream"}}
        await sio.emit("stream.frame", data, room=room)
        return {"ok": True, "seq": seq, "duplicate": False}

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    sio.attach(app, socketio_path="socket.io")
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
    return 0


def start_python_relay(tmp: Path) -> System:
    port = free_port()
    log = tmp / "python-relay.log"
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--python-relay", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    system = System("python relay", url, process, log)
    try:
        wait_healthy(url, process, log)
    except Exception:
        system.stop()
        raise
    return system


def start_node(tmp: Path) -> System:
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError("node and npm are needed for the Node relay peer (or pass --no-node)")
    if not (NODE_DIR / "node_modules" / "socket.io").is_dir():
        print("installing the Node relay's socket.io (npm install --prefix bench/node_relay) ...", flush=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"npm install failed:\n{done.stderr[-2000:]}")
    port = free_port()
    log = tmp / "node.log"
    process = subprocess.Popen(
        [node, str(NODE_DIR / "relay.js"), "--port", str(port)], stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    system = System("node relay", url, process, log)
    try:
        wait_healthy(url, process, log)
    except Exception:
        system.stop()
        raise
    return system


async def prepare_consultations(url: str, count: int) -> tuple[list[int], dict[str, str]]:
    """``count`` consultations requested by `clinician` for a TYT-TV patient and accepted by `cardiologist`;
    API tokens for the viewers and the source."""
    import aiohttp

    from teleconsult.seed import DEMO_PASSWORD

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

        async def token(username: str) -> str:
            body = {"username": username, "password": DEMO_PASSWORD}
            async with http.post(f"{url}/api/v1/auth/token", json=body) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"login {username}: {resp.status} {await resp.text()}")
                return str((await resp.json())["token"])

        tokens = {
            "viewer_clinician": await token("clinician"),
            "viewer_specialist": await token("cardiologist"),
            "source": await token("clinician"),
        }

        async def api(method: str, path: str, tok: str, body: Any = None) -> Any:
            headers = {"Authorization": f"Bearer {tok}"}
            async with http.request(method, f"{url}{path}", json=body, headers=headers) as resp:
                if resp.status >= 300:
                    raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
                return await resp.json()

        found = await api("GET", "/api/v1/patients?q=giang", tokens["source"])
        patient_id = found["patients"][0]["id"]
        sem = asyncio.Semaphore(4)

        async def one(i: int) -> int:
            async with sem:
                created = await api(
                    "POST",
                    "/api/v1/consultations",
                    tokens["source"],
                    {
                        "patient_id": patient_id,
                        "specialty": "cardiology",
                        "urgency": "urgent",
                        "summary": f"Bench stream {i}: live 12-lead ECG monitoring.",
                    },
                )
                await api("POST", f"/api/v1/consultations/{created['id']}/accept", tokens["viewer_specialist"])
                return int(created["id"])

        ids = list(await asyncio.gather(*(one(i) for i in range(count))))
    return ids, tokens


# ------------------------------------------------------------------------------------------------------------
# one step of the ladder
# ------------------------------------------------------------------------------------------------------------


@dataclass
class StepResult:
    system: str
    n: int
    ok: bool = True
    error: str = ""
    sent_window: int = 0
    expected: int = 0
    received: int = 0
    duplicates: int = 0
    sent_total: int = 0
    acked_ok: int = 0
    unacked: int = 0
    stored: int | None = None
    ack_errors: dict[str, int] = field(default_factory=dict)
    p50: float | None = None
    p99: float | None = None
    pmax: float | None = None
    ack_p50: float | None = None
    ack_p99: float | None = None
    server_cpu: float | None = None
    bench_cpu: float | None = None
    bench_cpu_max: float | None = None
    machine_cpu: float | None = None  # every process on the machine, % of one core (2 cores = 200)
    measure_s: float = 10.0
    send_lag_p99: float | None = None
    max_in_flight: int = 0
    closed: int = 0
    settle_s: float = 0.0
    setup_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.expected - self.received

    @property
    def bench_bound(self) -> bool:
        return (self.bench_cpu_max or 0) > 90 or (self.send_lag_p99 or 0) > 5

    @property
    def collapsed(self) -> bool:
        """Far past its limit: a larger N can only be worse and takes long to run (and to drain)."""
        return not self.ok or (self.lost > 0 and (self.p99 or 0) > COLLAPSE_P99_MS)

    @property
    def within_goal(self) -> bool:
        return (
            self.ok
            and self.p99 is not None
            and self.p99 <= P99_GOAL_MS
            and self.lost == 0
            and self.sent_window > 0
            and self.acked_ok == self.sent_total
        )


def run_step(system: System, n: int, consultations: list[int], tokens: dict[str, str], args: Any) -> StepResult:
    out = StepResult(system.name, n, measure_s=args.measure)
    procs = max(1, min(args.bench_procs, n))
    share: list[list[tuple[int, int]]] = [[] for _ in range(procs)]
    for i, cid in enumerate(consultations[:n]):
        share[i % procs].append((i, cid))
    key_prefix = f"bench-{secrets.token_hex(4)}-n{n}"
    workers = []
    for k in range(procs):
        cfg = {
            "url": system.url,
            "tokens": tokens,
            "streams": share[k],
            "total_streams": n,
            "source_file": str(args.source_file),
            "fps": args.fps,
            "warmup": args.warmup,
            "measure": args.measure,
            "grace": args.grace,
            "ack_wait": args.ack_wait,
            "client": args.client,
            "key_prefix": key_prefix,
            "connect_parallel": 16,
        }
        p = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert p.stdin is not None
        p.stdin.write(json.dumps(cfg) + "\n")
        p.stdin.flush()
        workers.append(p)
    try:
        readies = []
        for p in workers:
            assert p.stdout is not None
            line = p.stdout.readline()
            msg = json.loads(line) if line else {"error": "worker exited during setup"}
            if "error" in msg:
                raise RuntimeError(f"worker: {msg['error']}\n{msg.get('trace', '')}")
            readies.append(msg)
        out.setup_s = max(r["setup_s"] for r in readies)
        t0 = time.monotonic() + 0.5
        for p in workers:
            assert p.stdin is not None
            p.stdin.write(json.dumps({"t0": t0}) + "\n")
            p.stdin.flush()
        w0 = t0 + args.warmup
        w1 = w0 + args.measure
        time.sleep(max(0.0, w0 - time.monotonic()))
        c0, m0, b0 = cpu_seconds(system.process.pid), time.monotonic(), machine_busy()[0]
        time.sleep(max(0.0, w1 - time.monotonic()))
        c1, m1, b1 = cpu_seconds(system.process.pid), time.monotonic(), machine_busy()[0]
        out.server_cpu = 100 * (c1 - c0) / (m1 - m0)
        out.machine_cpu = 100 * (b1 - b0) / (m1 - m0)
        results = []
        for p in workers:
            assert p.stdout is not None
            line = p.stdout.readline()
            msg = json.loads(line) if line else {"error": "worker exited without a result"}
            if "error" in msg:
                raise RuntimeError(f"worker: {msg['error']}\n{msg.get('trace', '')}")
            results.append(msg["result"])
    except Exception as exc:
        out.ok = False
        out.error = str(exc)
        for p in workers:
            if p.poll() is None:
                p.kill()
        return out
    finally:
        for p in workers:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
    lat: list[float] = []
    acks: list[float] = []
    ids: list[int] = []
    cpus = []
    for r in results:
        lat += r["latencies"]
        acks += r["ack_latencies"]
        ids += r["streams"]
        cpus.append(100 * r["cpu_s"] / args.measure)
        for key in ("sent_window", "expected", "received", "duplicates", "sent_total", "acked_ok", "unacked"):
            setattr(out, key, getattr(out, key) + r[key])
        for code, count in r["ack_errors"].items():
            out.ack_errors[code] = out.ack_errors.get(code, 0) + count
        out.max_in_flight = max(out.max_in_flight, r["max_in_flight"])
        out.closed += r["n_closed"]
        out.notes += r["errors"] + r["closed"]
        lag = r["send_lag_p99"]
        if lag is not None:
            out.send_lag_p99 = max(out.send_lag_p99 or 0.0, 1000 * lag)
    ms = [1000 * x for x in lat]
    out.p50, out.p99, out.pmax = pct(ms, 50), pct(ms, 99), (max(ms) if ms else None)
    ack_ms = [1000 * x for x in acks]
    out.ack_p50, out.ack_p99 = pct(ack_ms, 50), pct(ack_ms, 99)
    out.bench_cpu = sum(cpus)
    out.bench_cpu_max = max(cpus) if cpus else None
    # A server that fell behind keeps working (and committing) after the bench stopped: wait until it is
    # idle, so that the stored count is final and the next step starts on a quiet server.
    out.settle_s = settle(system)
    if system.db is not None:
        try:
            out.stored = system.db(ids)
        except Exception as exc:
            out.notes.append(f"database count failed: {exc}")
    return out


def wait_quiet(limit_s: float) -> tuple[float, float | None]:
    """Wait (up to ``limit_s``) until the whole machine uses less than QUIET_PCT of a core over one second:
    other jobs on a 2-core machine change every figure. Returns (seconds waited, last busy %)."""
    t0 = time.monotonic()
    busy = None
    while True:
        b0 = machine_busy()[0]
        time.sleep(1.0)
        busy = 100 * (machine_busy()[0] - b0)
        if busy < QUIET_PCT or time.monotonic() - t0 >= limit_s:
            return time.monotonic() - t0, busy


def settle(system: System, idle_pct: float = 5.0, limit_s: float = 90.0) -> float:
    """Seconds until the system's process used less than ``idle_pct`` of a core over half a second."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s and system.process.poll() is None:
        c0 = cpu_seconds(system.process.pid)
        time.sleep(0.5)
        if 100 * (cpu_seconds(system.process.pid) - c0) / 0.5 < idle_pct:
            break
    return time.monotonic() - t0


# ------------------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------------------


def f(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def print_step(r: StepResult) -> None:
    if not r.ok:
        print(f"  {r.system:<12} {r.n:>4}  FAILED: {r.error.splitlines()[0] if r.error else ''}", flush=True)
        return
    stored = "-" if r.stored is None else str(r.stored)
    other = None
    if r.machine_cpu is not None and r.server_cpu is not None and r.bench_cpu is not None:
        other = max(0.0, r.machine_cpu - r.server_cpu - r.bench_cpu)
    print(
        f"  {r.system:<12} {r.n:>4} {r.sent_window / r.measure_s:>6.0f} {f(r.p50):>7} {f(r.p99):>8} {f(r.pmax):>8} "
        f"{r.lost:>6} {f(r.ack_p50):>8} {f(r.ack_p99):>8} {r.acked_ok:>6}/{r.sent_total:<6} {stored:>6} "
        f"{sum(r.ack_errors.values()):>6} {r.closed:>5} {f(r.server_cpu, '.0f'):>5} {f(r.bench_cpu, '.0f'):>6} "
        f"{f(other, '.0f'):>6} {f(r.send_lag_p99):>6} {r.setup_s:>5.1f} {r.settle_s:>6.1f}"
        f"{'  bench-bound' if r.bench_bound else ''}",
        flush=True,
    )
    if r.ack_errors:
        print("      ack errors: " + ", ".join(f"{k} {v}" for k, v in sorted(r.ack_errors.items())))
    for note in r.notes[:3]:
        print(f"      note: {note}")


HEADER = (
    f"  {'system':<12} {'N':>4} {'in f/s':>6} {'p50 ms':>7} {'p99 ms':>8} {'max ms':>8} {'lost':>6} "
    f"{'ack p50':>8} {'ack p99':>8} {'acked/sent':>13} {'stored':>6} {'errs':>6} {'drops':>5} {'srv%':>5} "
    f"{'bench%':>6} {'other%':>6} {'lag99':>6} {'setup':>5} {'settle':>6}"
)


def ceiling(results: list[StepResult]) -> int:
    """Largest N with the goal met; 0 when none (steps are climbed in order, so a miss at some N and a pass at
    a larger one is reported as the larger one, as measured)."""
    return max((r.n for r in results if r.within_goal), default=0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Live ECG fan-out: N 12-lead 500 Hz streams x 2 viewers through one teleconsult server, "
        "vs a minimal Node socket.io relay in the same run.",
    )
    ap.add_argument("--ladder", default="25,50,100,200", help="stream counts, comma separated (default %(default)s)")
    ap.add_argument("--measure", type=float, default=10.0, help="measured window per step, s (default 10)")
    ap.add_argument("--warmup", type=float, default=3.0, help="sending before the window, s (default 3)")
    ap.add_argument("--grace", type=float, default=2.0, help="sending after the window, s (default 2)")
    ap.add_argument("--ack-wait", type=float, default=12.0, help="max wait for outstanding acks at the end, s")
    ap.add_argument("--fps", type=float, default=25.0, help="frames per second per stream (default 25)")
    ap.add_argument("--rate", type=float, default=500.0, help="sample rate of the streams, Hz (default 500)")
    ap.add_argument("--record", default=str(DEFAULT_RECORD), help="WFDB record with >= 12 signals")
    ap.add_argument("--database-url", help="PostgreSQL URL for the server (default: a temp SQLite file)")
    ap.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for `teleconsult serve`, e.g. TELECONSULT_DERIVED_HR_INTERVAL_S=0",
    )
    ap.add_argument("--bench-procs", type=int, default=1, help="bench worker processes per step (default 1)")
    ap.add_argument(
        "--client",
        choices=["raw", "python-socketio"],
        default="raw",
        help="socket.io client of sources and viewers (default raw; see the docstring)",
    )
    ap.add_argument("--no-node", action="store_true", help="skip the Node relay peer")
    ap.add_argument("--only-node", action="store_true", help="measure only the Node relay")
    ap.add_argument(
        "--python-relay-peer",
        action="store_true",
        help="also measure a bare python-socketio relay (same events, no auth, no storage)",
    )
    ap.add_argument(
        "--full-ladder",
        action="store_true",
        help=f"keep climbing after a system collapsed (p99 > {COLLAPSE_P99_MS / 1000:g} s with frames lost)",
    )
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="before each step, wait up to this many s for other processes to go quiet (default 30)",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON line with every figure at the end")
    ap.add_argument("--profile-server", metavar="FILE", help="run the server under cProfile, stats to FILE")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory (server and relay logs)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--python-relay", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_entry()
    if args.python_relay:
        return python_relay(args.python_relay)
    ladder = sorted({int(x) for x in args.ladder.split(",") if x.strip()})
    if not ladder or min(ladder) < 1:
        ap.error("--ladder needs positive integers")
    extra_env = {}
    for item in args.server_env:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("TELECONSULT_"):
            ap.error(f"--server-env takes TELECONSULT_KEY=VALUE, not {item!r}")
        extra_env[key] = value

    tmp = Path(tempfile.mkdtemp(prefix="ecg-relay-"))
    try:
        needed = int((args.warmup + args.measure + args.grace) * args.fps) + 1
        source = load_source(args.record, 12, args.rate, args.fps, max_frames=needed)
    except AssertionError as exc:
        print(f"frame shortcut check failed: {exc}", file=sys.stderr)
        return 1
    args.source_file = tmp / "source.pickle"
    args.source_file.write_bytes(pickle.dumps(source))
    frame_bytes = statistics.mean(len(source.frame(1, i)) for i in range(len(source.blocks)))
    print(
        f"ecg_relay: ladder {ladder}, {args.fps:g} frames/s x 12 leads x {args.rate:g} Hz per stream, 2 viewers each; "
        f"warm-up {args.warmup:g} s, window {args.measure:g} s, grace {args.grace:g} s; client {args.client}; "
        f"{args.bench_procs} bench process(es); {os.cpu_count()} CPUs; frames {frame_bytes:.0f} B on average "
        f"({frame_bytes / (12 * source.per_frame):.2f} B/sample)",
        flush=True,
    )
    results: list[StepResult] = []
    schema = f"bench_{secrets.token_hex(5)}" if args.database_url else None
    systems = []
    if not args.only_node:
        systems.append("teleconsult")
    if args.python_relay_peer:
        systems.append("python relay")
    if not args.no_node:
        systems.append("node relay")
    try:
        for name in systems:
            try:
                if name == "teleconsult":
                    system = start_teleconsult(tmp, args.database_url, schema, extra_env, args.profile_server)
                    db = "PostgreSQL" if args.database_url else "SQLite"
                    print(
                        f"\nteleconsult serve ({db}{', ' + ' '.join(args.server_env) if args.server_env else ''}): "
                        f"creating {max(ladder)} consultations ...",
                        flush=True,
                    )
                    t = time.monotonic()
                    consultations, tokens = asyncio.run(prepare_consultations(system.url, max(ladder)))
                    print(f"  done in {time.monotonic() - t:.1f} s", flush=True)
                elif name == "python relay":
                    system = start_python_relay(tmp)
                    print("\npython relay (python-socketio " + version_of("python-socketio") + ", no auth, no storage)")
                    consultations = list(range(1, max(ladder) + 1))
                    tokens = {"viewer_clinician": "x", "viewer_specialist": "x", "source": "x"}
                else:
                    system = start_node(tmp)
                    print("\nnode relay (socket.io " + node_version() + ")", flush=True)
                    consultations = list(range(1, max(ladder) + 1))
                    tokens = {"viewer_clinician": "x", "viewer_specialist": "x", "source": "x"}
            except Exception as exc:
                print(f"cannot start {name}: {exc}", file=sys.stderr)
                return 1
            try:
                print(HEADER, flush=True)
                for n in ladder:
                    waited, busy = wait_quiet(args.quiet_wait)
                    if busy is not None and busy > QUIET_PCT:
                        print(
                            f"      (the machine stayed busy: {busy:.0f} % of a core used by other processes "
                            f"after waiting {waited:.0f} s; figures below are disturbed)"
                        )
                    r = run_step(system, n, consultations, tokens, args)
                    results.append(r)
                    print_step(r)
                    if system.process.poll() is not None:
                        print(f"  {name} exited; log tail:\n{system.log.read_text(errors='replace')[-2000:]}")
                        break
                    if r.collapsed and not args.full_ladder and n != ladder[-1]:
                        rest = [x for x in ladder if x > n]
                        print(
                            f"  {name}: collapsed at N={n} (p99 > {COLLAPSE_P99_MS / 1000:g} s and frames lost); "
                            f"N={','.join(map(str, rest))} skipped (--full-ladder runs them)"
                        )
                        break
            finally:
                system.stop()
                if name == "teleconsult":
                    log_text = system.log.read_text(errors="replace")
                    problems = [
                        ln for ln in log_text.splitlines() if "Traceback" in ln or " ERROR " in ln or "WARNING" in ln
                    ]
                    if problems:
                        print(f"  server log: {len(problems)} error/warning lines, e.g. {problems[0][:200]}")
    except KeyboardInterrupt:
        return 130
    finally:
        if schema and args.database_url:
            try:
                drop_pg_schema(args.database_url, schema)
            except Exception as exc:
                print(f"could not drop schema {schema}: {exc}", file=sys.stderr)
        if args.keep:
            print(f"kept {tmp} (server.log, node.log)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    summarize(results, ladder)
    if args.json:
        print(json.dumps([{k: v for k, v in r.__dict__.items()} | {"lost": r.lost} for r in results]))
    return 0


def version_of(dist: str) -> str:
    from importlib.metadata import version

    try:
        return version(dist)
    except Exception:
        return "?"


def node_version() -> str:
    try:
        return json.loads((NODE_DIR / "node_modules" / "socket.io" / "package.json").read_text())["version"]
    except Exception:
        return "?"


def summarize(results: list[StepResult], ladder: list[int]) -> None:
    by = {(r.system, r.n): r for r in results}
    names = [x for x in ("teleconsult", "python relay", "node relay") if any(r.system == x for r in results)]
    print("\nSide by side (p50 / p99 ms, lost deliveries, server CPU % of one core)")
    print("  " + f"{'N':>4}   " + " ".join(f"{x:<36}" for x in names))
    for n in ladder:
        cells = []
        for name in names:
            r = by.get((name, n))
            if r is None:
                cells.append("-")
            elif not r.ok:
                cells.append("failed")
            else:
                mark = " *" if r.bench_bound else ""
                cells.append(f"{f(r.p50)} / {f(r.p99)}  lost {r.lost}  cpu {f(r.server_cpu, '.0f')}%{mark}")
        print("  " + f"{n:>4}   " + " ".join(f"{c:<36}" for c in cells))
    print("  (* bench-bound: the bench's own CPU or send lag may set these figures)")
    ceilings = {name: ceiling([r for r in results if r.system == name]) for name in names}
    print(f"\nCeiling (largest N of the ladder with p99 <= {P99_GOAL_MS:g} ms, 0 lost, every frame acked ok):")
    for name in names:
        top = " (the top of the ladder: the real ceiling may be higher)" if ceilings[name] == max(ladder) else ""
        print(f"  {name:<13} {ceilings[name] or 'none of the ladder'}{top}")
    if "teleconsult" in ceilings:
        at_goal = by.get(("teleconsult", GOAL_STREAMS))
        collapsed = [r.n for r in results if r.system == "teleconsult" and r.collapsed]
        if at_goal is None and collapsed and min(collapsed) < GOAL_STREAMS:
            print(
                f"  goal {GOAL_STREAMS} streams at p99 <= {P99_GOAL_MS:g} ms with 0 lost: MISS "
                f"(collapsed at N={min(collapsed)}; N={GOAL_STREAMS} not run)"
            )
        elif at_goal is None:
            print(f"  goal: {GOAL_STREAMS} streams not in the ladder")
        else:
            verdict = "PASS" if at_goal.within_goal else "MISS"
            print(
                f"  goal {GOAL_STREAMS} streams at p99 <= {P99_GOAL_MS:g} ms with 0 lost: {verdict} "
                f"(p99 {f(at_goal.p99)} ms, lost {at_goal.lost}, acked {at_goal.acked_ok}/{at_goal.sent_total})"
            )
        if "node relay" in ceilings:
            tc, node = ceilings["teleconsult"], ceilings["node relay"]
            verdict = "PASS" if node and tc * 2 >= node else "MISS"
            print(f"  goal ceiling >= half the Node relay's ({tc} vs {node}/2): {verdict}")


if __name__ == "__main__":
    sys.exit(main())
