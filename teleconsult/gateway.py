"""`teleconsult device play`: the bedside gateway. Reads any record the wfdb package can read, cuts it
into frames at the record's own pace (or faster), and streams them to the server over socket.io.

Nothing is lost and nothing is stored twice: every frame is written to a local outbox (an SQLite file)
before it is sent and deleted only when the server acknowledges that it is committed. On a dropped link,
a server restart or a restart of the gateway itself, the stream is reopened with the same source key; the
server says which frame it expects next, and the gateway resends from there."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import socketio

from teleconsult.domain.heart_rate import derive_heart_rate
from teleconsult.domain.signals import SignalKind, describe
from teleconsult.domain.waveform import FrameHeader, SignalScale, encode_frame, rate_to_mhz

log = logging.getLogger("teleconsult.device")

# Numeric channels some records carry (MIMIC-style numerics), and the vital sign each one is.
NUMERIC_VITALS = {"HR": "hr", "PULSE": "hr", "SPO2": "spo2", "RESP": "rr", "RR": "rr", "TEMP": "temp"}


class GatewayError(Exception):
    pass


@dataclass(frozen=True)
class Recording:
    name: str
    sample_rate: float
    signals: list[dict[str, Any]]  # name, units, gain, baseline
    samples: np.ndarray  # (n, signals) digital


def load_record(path: str, leads: list[str] | None = None) -> Recording:
    import wfdb

    record_path = str(Path(path).with_suffix("")) if path.endswith(".hea") else path
    try:
        names = list(wfdb.rdheader(record_path).sig_name or [])
        missing = [lead for lead in leads or [] if lead not in names]
        if missing:
            raise GatewayError(f"the record has no lead(s) {', '.join(missing)}; it has {', '.join(names)}")
        record = wfdb.rdrecord(record_path, physical=False, channel_names=leads or None)
    except GatewayError:
        raise
    except FileNotFoundError:
        raise GatewayError(f"no WFDB record at {path}") from None
    except Exception as exc:
        raise GatewayError(f"cannot read {path}: {exc}") from None
    if record.d_signal is None or record.d_signal.size == 0:
        raise GatewayError("the record has no samples (or none of the requested leads)")
    signals = [
        {"name": str(name)[:32], "units": str(units or "NU")[:16], "gain": float(gain), "baseline": int(baseline)}
        for name, units, gain, baseline in zip(
            record.sig_name, record.units, record.adc_gain, record.baseline, strict=True
        )
    ]
    if any(s["gain"] <= 0 for s in signals):
        raise GatewayError("the record has a signal without an ADC gain")
    return Recording(record.record_name, float(record.fs), signals, np.asarray(record.d_signal, dtype=np.int64))


class Outbox:
    """Frames and readings not yet acknowledged, in an SQLite file that survives a killed process."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS frames (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS vitals (client_id TEXT PRIMARY KEY, body TEXT NOT NULL)")

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def put_frame(self, seq: int, payload: bytes, next_frame: int) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO frames (seq, payload) VALUES (?, ?)", (seq, payload))
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('produced', ?)", (str(next_frame),))

    def frames_from(self, seq: int, limit: int) -> list[tuple[int, bytes]]:
        rows = self._db.execute(
            "SELECT seq, payload FROM frames WHERE seq >= ? ORDER BY seq LIMIT ?", (seq, limit)
        ).fetchall()
        return [(int(s), bytes(p)) for s, p in rows]

    def drop_frames_below(self, seq: int) -> None:
        self._db.execute("DELETE FROM frames WHERE seq < ?", (seq,))

    def pending_frames(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM frames").fetchone()[0])

    def put_vital(self, client_id: str, body: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO vitals (client_id, body) VALUES (?, ?)", (client_id, body))

    def vitals(self) -> list[tuple[str, str]]:
        return [(str(c), str(b)) for c, b in self._db.execute("SELECT client_id, body FROM vitals").fetchall()]

    def drop_vital(self, client_id: str) -> None:
        self._db.execute("DELETE FROM vitals WHERE client_id = ?", (client_id,))

    def close(self) -> None:
        self._db.close()


@dataclass
class PlayOptions:
    record: str
    server: str
    consultation_id: int
    token: str
    speed: float = 1.0
    leads: list[str] | None = None
    frame_ms: int = 200
    outbox: Path | None = None
    vitals_every_s: float = 5.0
    simulate_vitals: bool = False
    window: int = 64
    ack_timeout_s: float = 15.0


class Gateway:
    def __init__(self, options: PlayOptions, recording: Recording) -> None:
        self.o = options
        self.rec = recording
        self.n_per_frame = max(1, round(recording.sample_rate * options.frame_ms / 1000))
        self.total_frames = -(-len(recording.samples) // self.n_per_frame)
        key = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', recording.name)[:24]}-c{options.consultation_id}"
        self.outbox = Outbox(options.outbox or Path("var") / "outbox" / f"{key}.sqlite3")
        if self.outbox.get("source_key") is None:
            self.outbox.set("source_key", f"{key}-{secrets.token_hex(6)}")
        self.source_key = str(self.outbox.get("source_key"))
        self.produced = int(self.outbox.get("produced") or 0)
        self.stream_id: int | None = None
        self.acked_seq = 0  # every frame below this is stored
        self.sio = socketio.AsyncClient(reconnection=True, reconnection_delay=0.5, reconnection_delay_max=5)
        self.ready = asyncio.Event()
        self.wake = asyncio.Event()
        self.fatal: str | None = None
        self._opening = False
        self.closing = False
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)

    # -- the run ----------------------------------------------------------------------------------------------

    async def run(self) -> int:
        try:
            await self.sio.connect(
                self.o.server, auth={"token": self.o.token}, transports=["websocket"], wait_timeout=10
            )
        except socketio.exceptions.ConnectionError as exc:
            await self.sio.shutdown()
            http = getattr(self.sio.eio, "http", None)
            if http is not None and not http.closed:
                await http.close()
            self.outbox.close()
            raise GatewayError(f"cannot connect to {self.o.server}: {exc}") from None
        try:
            tasks = [asyncio.create_task(self._produce()), asyncio.create_task(self._send())]
            tasks.append(asyncio.create_task(self._vitals()))
            done, _ = await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
            if self.fatal:
                raise GatewayError(self.fatal)
            await self._close_stream()
        finally:
            self.closing = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.sio.disconnect()
            self.outbox.close()
        log.info("stream complete: %d frames stored", self.total_frames)
        return 0

    async def _on_connect(self) -> None:
        self._reopen()

    def _reopen(self) -> None:
        """(Re)open the stream unless that is already under way: every sender that hit trouble asks."""
        self.ready.clear()
        if not self._opening:
            self._opening = True
            asyncio.ensure_future(self._open())

    async def _on_disconnect(self, *args: Any) -> None:
        self.ready.clear()
        if self.closing:
            return
        log.warning("link to the server lost; frames are kept in the outbox until it returns")

    async def _open(self) -> None:
        try:
            while not self.fatal:
                if await self._try_open():
                    return
                await asyncio.sleep(1)
        finally:
            self._opening = False

    async def _try_open(self) -> bool:
        if not self.sio.connected:
            return False
        signals = self.rec.signals
        body = {
            "consultation_id": self.o.consultation_id,
            "source_key": self.source_key,
            "label": self.rec.name[:120],
            "sample_rate": self.rec.sample_rate,
            "signals": signals,
        }
        try:
            ack = await self.sio.call("stream.open", body, timeout=self.o.ack_timeout_s)
        except Exception as exc:
            log.warning("could not open the stream yet (%s); retrying", type(exc).__name__)
            return False
        if not ack.get("ok"):
            error = ack.get("error", {})
            if error.get("code") in ("rate_limited", "unavailable", "internal"):
                log.warning("could not open the stream yet (%s); retrying", error.get("message"))
                return False
            self.fatal = f"the server refused the stream: {error.get('message')}"
            self.wake.set()
            self.ready.set()
            return True
        self.stream_id = int(ack["stream"]["id"])
        self.acked_seq = int(ack["next_seq"])
        self.outbox.drop_frames_below(self.acked_seq)
        self.produced = max(self.produced, self.acked_seq)
        log.info("stream %s open; server expects frame %d", self.stream_id, self.acked_seq)
        self.ready.set()
        self.wake.set()
        return True

    async def _produce(self) -> None:
        """Cut the record into frames at its own pace (times ``speed``) and put each in the outbox."""
        await self.ready.wait()
        started = time.monotonic()
        first = self.produced
        for seq in range(self.produced, self.total_frames):
            if self.fatal:
                return
            if self.o.speed > 0:
                due = started + (seq - first) * self.o.frame_ms / 1000 / self.o.speed
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            while self.stream_id is None:
                await self.ready.wait()
            start = seq * self.n_per_frame
            piece = self.rec.samples[start : start + self.n_per_frame]
            scales = tuple(SignalScale(s["gain"], s["baseline"], s["units"]) for s in self.rec.signals)
            header = FrameHeader(self.stream_id, seq, start, rate_to_mhz(self.rec.sample_rate), len(piece), scales)
            self.outbox.put_frame(seq, encode_frame(header, piece), seq + 1)
            self.produced = seq + 1
            self.wake.set()

    async def _send(self) -> None:
        """Keep up to ``window`` frames in flight; resend from the last acknowledged one after any trouble."""
        while self.acked_seq < self.total_frames:
            if self.fatal:
                return
            await self.ready.wait()
            frames = self.outbox.frames_from(self.acked_seq, self.o.window)
            if not frames:
                self.wake.clear()
                await self.wake.wait()
                continue
            results = await asyncio.gather(*(self._send_one(seq, payload) for seq, payload in frames))
            for (seq, _), ok in zip(frames, results, strict=True):
                if not ok:
                    break
                self.acked_seq = seq + 1
            self.outbox.drop_frames_below(self.acked_seq)
            if not all(results):
                await asyncio.sleep(0.5)

    async def _send_one(self, seq: int, payload: bytes) -> bool:
        if not self.sio.connected or not self.ready.is_set():
            return False
        try:
            ack = await self.sio.call("stream.frame", payload, timeout=self.o.ack_timeout_s)
        except Exception:
            return False
        if ack.get("ok"):
            return True
        error = ack.get("error", {})
        code, message = error.get("code"), str(error.get("message", ""))
        log.warning("frame %d not stored: %s", seq, message)
        if code == "invalid" and "sequence gap" not in message:
            self.fatal = f"the server refused frame {seq}: {message}"
        elif code in ("conflict", "forbidden") or "sequence gap" in message:
            # The server's view moved (restart, another process): reopen and resend from what it expects.
            self._reopen()
        return False

    async def _close_stream(self) -> None:
        if self.stream_id is not None:
            try:
                await self.sio.call("stream.close", {"stream_id": self.stream_id}, timeout=self.o.ack_timeout_s)
            except Exception:
                log.warning("could not mark the stream closed; the record is complete anyway")

    # -- numeric vitals ---------------------------------------------------------------------------------------

    async def _vitals(self) -> None:
        """Every few seconds: readings the record carries as numeric channels, or (with --simulate-vitals)
        a simulated monitor: HR from the ECG just played, plausible SpO2, BP, RR and temperature."""
        import json

        if self.o.vitals_every_s <= 0:
            return
        rng = np.random.default_rng()
        while True:
            await asyncio.sleep(self.o.vitals_every_s / max(self.o.speed, 1.0) if self.o.speed > 0 else 1.0)
            for reading in self._readings(rng):
                client_id = f"dev-{secrets.token_hex(8)}"
                body = {"consultation_id": self.o.consultation_id, "client_id": client_id, **reading}
                self.outbox.put_vital(client_id, json.dumps(body))
            for client_id, body in self.outbox.vitals():
                if not self.ready.is_set():
                    break
                try:
                    ack = await self.sio.call("vitals.add", json.loads(body), timeout=self.o.ack_timeout_s)
                except Exception:
                    break
                if ack.get("ok") or ack.get("error", {}).get("code") == "invalid":
                    self.outbox.drop_vital(client_id)

    def _readings(self, rng: np.random.Generator) -> list[dict[str, Any]]:
        end = min(self.produced * self.n_per_frame, len(self.rec.samples))
        if end <= 0:
            return []
        readings: list[dict[str, Any]] = []
        for index, signal in enumerate(self.rec.signals):
            kind = NUMERIC_VITALS.get(signal["name"].upper())
            if kind is not None:
                value = (self.rec.samples[end - 1, index] - signal["baseline"]) / signal["gain"]
                readings.append({"kind": kind, "value": round(float(value), 1)})
        if not readings and self.o.simulate_vitals:
            ecg = next((i for i, s in enumerate(self.rec.signals) if describe(s["name"]).kind is SignalKind.ECG), None)
            if ecg is not None:
                window = self.rec.samples[max(0, end - int(10 * self.rec.sample_rate)) : end, ecg]
                signal = self.rec.signals[ecg]
                bpm = derive_heart_rate((window - signal["baseline"]) / signal["gain"], self.rec.sample_rate)
                if bpm is not None:
                    readings.append({"kind": "hr", "value": round(bpm)})
            readings.append({"kind": "spo2", "value": float(rng.integers(95, 100))})
            readings.append(
                {"kind": "bp", "value": float(rng.integers(112, 132)), "value2": float(rng.integers(70, 86))}
            )
            readings.append({"kind": "rr", "value": float(rng.integers(14, 19))})
            readings.append({"kind": "temp", "value": round(float(rng.normal(36.8, 0.1)), 1)})
        return readings


def play(options: PlayOptions) -> int:
    recording = load_record(options.record, options.leads)
    log.info(
        "playing %s: %d signals at %g Hz, %.1f s, speed %s",
        recording.name,
        len(recording.signals),
        recording.sample_rate,
        len(recording.samples) / recording.sample_rate,
        options.speed or "unpaced",
    )
    return asyncio.run(Gateway(options, recording).run())
