"""Waveform frames: the compact binary form of monitor signals (ECG leads, PLETH, ABP, RESP, ...).

A frame carries one stretch of every signal of a stream: stream id, sequence number, first sample index,
sample rate, per-signal gain/baseline/units, and the digital samples exactly as the device (or the WFDB
record) gave them. Samples are coded losslessly: a fixed polynomial predictor (order 0-3, chosen per signal)
and Rice codes of the residuals with a parameter per partition, the scheme FLAC uses for its fixed
subframes. Unary prefixes and fixed-width remainders sit in two separate bit sections so that both
directions vectorise with numpy. The same block coding stores compacted chunks. The byte layout is
documented in docs/waveform-format.md; static/js/waveform.js decodes it in the browser.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from teleconsult.domain.errors import ValidationFailed

MAGIC = 0xEC
VERSION = 1
MAX_SIGNALS = 64
MAX_ORDER = 3
# A unary prefix this long means "escape": the remainder field is then k + ESCAPE_BITS wide and holds the
# whole value. The block states how many escapes it has, so its exact length is known before decoding.
ESCAPE_Q = 32
ESCAPE_BITS = 40
MAX_RICE_K = 30
MIN_RATE_MHZ = 1  # one sample every 1000 s
MAX_RATE_MHZ = 20_000_000  # 20 kHz
SAMPLE_MIN = -(2**31)
SAMPLE_MAX = 2**31 - 1
WIRE_PARTITION = 32
STORE_PARTITION = 32

# Units by one byte; anything else travels as a short UTF-8 string.
UNIT_CODES: dict[str, int] = {
    "mV": 1,
    "uV": 2,
    "mmHg": 3,
    "%": 4,
    "bpm": 5,
    "NU": 6,
    "degC": 7,
    "Ohm": 8,
    "L/min": 9,
    "mL": 10,
    "cmH2O": 11,
    "V": 12,
}
UNIT_NAMES = {code: name for name, code in UNIT_CODES.items()}
UNIT_STRING = 0xFF
_F32 = struct.Struct("<f")


class FrameError(ValidationFailed):
    """A frame that cannot be decoded or breaks a limit; the message says what is wrong."""


@dataclass(frozen=True)
class SignalScale:
    """How a signal's digital values map to physical ones: physical = (digital - baseline) / gain."""

    gain: float
    baseline: int
    units: str


@dataclass(frozen=True)
class FrameHeader:
    stream_id: int
    seq: int
    first_sample: int
    rate_mhz: int
    n_samples: int
    scales: tuple[SignalScale, ...]

    @property
    def sample_rate(self) -> float:
        return self.rate_mhz / 1000.0

    @property
    def n_signals(self) -> int:
        return len(self.scales)


@dataclass(frozen=True)
class WaveformFrame:
    header: FrameHeader
    samples: NDArray[np.int64]  # shape (n_samples, n_signals), digital values


def rate_to_mhz(rate: float) -> int:
    mhz = round(rate * 1000)
    if not (MIN_RATE_MHZ <= mhz <= MAX_RATE_MHZ) or abs(mhz - rate * 1000) > 1e-6 * max(1.0, rate * 1000):
        raise FrameError(f"sample rate {rate} Hz is outside 0.001-20000 Hz or finer than 1 mHz")
    return mhz


# --- varints -----------------------------------------------------------------------------------------------


def _put_uvarint(out: bytearray, value: int) -> None:
    if value < 0:
        raise FrameError("negative value where an unsigned one is required")
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _put_svarint(out: bytearray, value: int) -> None:
    _put_uvarint(out, (value << 1) if value >= 0 else ((-value) << 1) - 1)


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def u8(self) -> int:
        if self.pos >= len(self.buf):
            raise FrameError("frame is truncated")
        value = self.buf[self.pos]
        self.pos += 1
        return value

    def uvarint(self) -> int:
        shift = 0
        value = 0
        while True:
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise FrameError("integer field is too long")

    def svarint(self) -> int:
        u = self.uvarint()
        return (u >> 1) if not u & 1 else -((u + 1) >> 1)

    def f32(self) -> float:
        if self.pos + 4 > len(self.buf):
            raise FrameError("frame is truncated")
        (value,) = struct.unpack_from("<f", self.buf, self.pos)
        self.pos += 4
        return float(value)

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise FrameError("frame is truncated")
        chunk = self.buf[self.pos : self.pos + n]
        self.pos += n
        return chunk


# --- frames ------------------------------------------------------------------------------------------------


def encode_frame(header: FrameHeader, samples: NDArray[np.integer], partition: int = WIRE_PARTITION) -> bytes:
    data = np.asarray(samples, dtype=np.int64)
    if data.ndim != 2 or data.shape != (header.n_samples, header.n_signals):
        raise FrameError("samples do not match the header's sample and signal counts")
    out = bytearray((MAGIC, VERSION))
    for value in (header.stream_id, header.seq, header.first_sample, header.rate_mhz, header.n_samples):
        _put_uvarint(out, value)
    _check_header(header)
    out.append(header.n_signals)
    for scale in header.scales:
        out += struct.pack("<f", scale.gain)
        _put_svarint(out, scale.baseline)
        code = UNIT_CODES.get(scale.units)
        if code is None:
            raw = scale.units.encode()[:64]
            out += bytes((UNIT_STRING, len(raw))) + raw
        else:
            out.append(code)
    out += encode_block(data, partition)
    return bytes(out)


def read_header(buf: bytes, max_samples: int = 1 << 24) -> tuple[FrameHeader, int]:
    """The header and where the sample block starts. Cheap: no sample is decoded."""
    if len(buf) < 2:
        raise FrameError("frame is truncated")
    if buf[0] != MAGIC:
        raise FrameError("not a waveform frame (bad magic byte)")
    if buf[1] != VERSION:
        raise FrameError(f"unsupported frame version {buf[1]}")
    try:
        stream_id, pos = _uvarint_at(buf, 2)
        seq, pos = _uvarint_at(buf, pos)
        first_sample, pos = _uvarint_at(buf, pos)
        rate_mhz, pos = _uvarint_at(buf, pos)
        n_samples, pos = _uvarint_at(buf, pos)
        n_signals = buf[pos]
        pos += 1
        if not 1 <= n_samples <= max_samples:
            raise FrameError(f"a frame must carry 1 to {max_samples} samples per signal")
        scales = []
        for _ in range(n_signals):
            if pos + 4 > len(buf):
                raise IndexError
            (gain,) = _F32.unpack_from(buf, pos)
            zigzag, pos = _uvarint_at(buf, pos + 4)
            baseline = (zigzag >> 1) if not zigzag & 1 else -((zigzag + 1) >> 1)
            code = buf[pos]
            pos += 1
            if code == UNIT_STRING:
                length = buf[pos]
                raw = buf[pos + 1 : pos + 1 + length]
                if len(raw) != length:
                    raise IndexError
                units = raw.decode("utf-8", errors="replace")
                pos += 1 + length
            elif code in UNIT_NAMES:
                units = UNIT_NAMES[code]
            else:
                raise FrameError(f"unknown unit code {code}")
            scales.append(SignalScale(gain=float(gain), baseline=baseline, units=units))
    except IndexError:
        raise FrameError("frame is truncated") from None
    header = FrameHeader(stream_id, seq, first_sample, rate_mhz, n_samples, tuple(scales))
    _check_header(header)
    return header, pos


def decode_frame(buf: bytes, max_samples: int = 1 << 24) -> WaveformFrame:
    header, pos = read_header(buf, max_samples)
    samples = decode_block(buf[pos:], header.n_samples, header.n_signals)
    return WaveformFrame(header=header, samples=samples)


def check_frame(buf: bytes, max_samples: int) -> FrameHeader:
    """Everything about a frame's shape that can be checked without decoding its samples: the header,
    each signal's predictor and Rice parameters, one unary code per residual, and exactly the remainder
    bytes those codes need. The server runs this on every frame (full decoding happens off the hot path),
    so it reads bytes with plain indexing rather than the reader object."""
    header, pos = read_header(buf, max_samples)
    try:
        partition, pos = _uvarint_at(buf, pos)
        if not 1 <= partition <= 1 << 20:
            raise FrameError("bad partition size")
        residuals = 0
        k_bits = 0
        n = header.n_samples
        for _ in range(header.n_signals):
            order = buf[pos]
            pos += 1
            if order > MAX_ORDER or order > n:
                raise FrameError("bad predictor order")
            for _ in range(order):
                _, pos = _uvarint_at(buf, pos)
            m = n - order
            parts = -(-m // partition)
            ks = buf[pos : pos + parts]
            if len(ks) != parts:
                raise FrameError("frame is truncated")
            pos += parts
            if ks and max(ks) > MAX_RICE_K:
                raise FrameError("bad Rice parameter")
            last = m % partition
            k_bits += sum(ks) * partition - (ks[-1] * (partition - last) if last else 0)
            residuals += m
        unary_length, pos = _uvarint_at(buf, pos)
        escapes, pos = _uvarint_at(buf, pos)
    except IndexError:
        raise FrameError("frame is truncated") from None
    unary = buf[pos : pos + unary_length]
    if len(unary) != unary_length:
        raise FrameError("frame is truncated")
    pos += unary_length
    if int.from_bytes(unary, "big").bit_count() != residuals or (unary and unary[-1] == 0) or escapes > residuals:
        raise FrameError("frame length does not match its sample count")
    if len(buf) - pos != -(-(k_bits + escapes * ESCAPE_BITS) // 8):
        raise FrameError("frame length does not match its sample count")
    return header


def _uvarint_at(buf: bytes, pos: int) -> tuple[int, int]:
    byte = buf[pos]
    if byte < 0x80:
        return byte, pos + 1
    value = byte & 0x7F
    shift = 7
    while True:
        pos += 1
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos + 1
        shift += 7
        if shift > 63:
            raise FrameError("integer field is too long")


def _check_header(header: FrameHeader) -> None:
    if header.stream_id < 1:
        raise FrameError("stream id must be positive")
    if not 1 <= header.n_signals <= MAX_SIGNALS:
        raise FrameError(f"a frame must carry 1 to {MAX_SIGNALS} signals")
    if not MIN_RATE_MHZ <= header.rate_mhz <= MAX_RATE_MHZ:
        raise FrameError("sample rate must be between 0.001 Hz and 20 kHz")
    for scale in header.scales:
        if not (math.isfinite(scale.gain) and scale.gain > 0):
            raise FrameError("gain must be a positive number")


# --- sample blocks -----------------------------------------------------------------------------------------


def encode_block(samples: NDArray[np.integer], partition: int = STORE_PARTITION) -> bytes:
    """Losslessly code an (n, signals) array of integers."""
    data = np.asarray(samples, dtype=np.int64)
    if data.size and (data.min() < SAMPLE_MIN or data.max() > SAMPLE_MAX):
        raise FrameError("samples must fit in 32-bit integers")
    n, n_signals = data.shape
    out = bytearray()
    _put_uvarint(out, partition)
    residuals: list[NDArray[np.int64]] = []
    widths: list[NDArray[np.int64]] = []
    for s in range(n_signals):
        order, u, ks = _best_predictor(data[:, s], partition)
        out.append(order)
        for value in data[:order, s]:
            _put_svarint(out, int(value))
        out += bytes(ks.astype(np.uint8))
        residuals.append(u)
        widths.append(np.repeat(ks, partition)[: len(u)])
    u_all = np.concatenate(residuals) if residuals else np.zeros(0, np.int64)
    k_all = np.concatenate(widths) if widths else np.zeros(0, np.int64)
    q = u_all >> k_all
    escape = q >= ESCAPE_Q
    q = np.where(escape, ESCAPE_Q, q)
    w = np.where(escape, k_all + ESCAPE_BITS, k_all)
    rem = np.where(escape, u_all, u_all & ((np.int64(1) << k_all) - 1))
    unary = _pack_unary(q)
    _put_uvarint(out, len(unary))
    _put_uvarint(out, int(escape.sum()))
    out += unary
    out += _pack_fixed(rem, w)
    return bytes(out)


def decode_block(buf: bytes, n: int, n_signals: int) -> NDArray[np.int64]:
    r = _Reader(buf)
    partition = r.uvarint()
    if not 1 <= partition <= 1 << 20:
        raise FrameError("bad partition size")
    orders, warmups, ks_per_signal = [], [], []
    for _ in range(n_signals):
        order = r.u8()
        if order > MAX_ORDER or order > n:
            raise FrameError("bad predictor order")
        warmups.append([r.svarint() for _ in range(order)])
        m = n - order
        ks = np.frombuffer(r.take(-(-m // partition)), dtype=np.uint8).astype(np.int64)
        if ks.size and ks.max() > MAX_RICE_K:
            raise FrameError("bad Rice parameter")
        orders.append(order)
        ks_per_signal.append(np.repeat(ks, partition)[:m])
    k_all = np.concatenate(ks_per_signal)
    total = k_all.size
    unary_length = r.uvarint()
    escapes = r.uvarint()
    unary = r.take(unary_length)
    q = _unpack_unary(unary, total)
    escape = q == ESCAPE_Q
    if int(escape.sum()) != escapes:
        raise FrameError("frame's escape count does not match its codes")
    w = np.where(escape, k_all + ESCAPE_BITS, k_all)
    rem_bytes = buf[r.pos :]
    if len(rem_bytes) != -(-int(w.sum()) // 8):
        raise FrameError("frame length does not match its sample count")
    rem = _unpack_fixed(rem_bytes, w)
    u = np.where(escape, rem, (q << k_all) | rem)
    values = (u >> 1) ^ -(u & 1)  # zigzag back to signed
    out = np.empty((n, n_signals), dtype=np.int64)
    start = 0
    for s in range(n_signals):
        m = n - orders[s]
        out[:, s] = _integrate(np.asarray(warmups[s], dtype=np.int64), values[start : start + m])
        start += m
    if out.size and (out.min() < SAMPLE_MIN or out.max() > SAMPLE_MAX):
        raise FrameError("decoded samples do not fit in 32-bit integers")
    return out


def _best_predictor(x: NDArray[np.int64], partition: int) -> tuple[int, NDArray[np.int64], NDArray[np.int64]]:
    best: tuple[int, int, NDArray[np.int64], NDArray[np.int64]] | None = None
    for order in range(min(MAX_ORDER, len(x)) + 1):
        residual = np.diff(x, n=order) if order else x
        u = np.where(residual >= 0, residual << 1, ((-residual) << 1) - 1)
        ks, bits = _rice_parameters(u, partition)
        bits += 24 * order
        if best is None or bits < best[0]:
            best = (bits, order, u, ks)
    assert best is not None
    return best[1], best[2], best[3]


def _rice_parameters(u: NDArray[np.int64], partition: int) -> tuple[NDArray[np.int64], int]:
    """Per partition, the k minimising sum(u >> k) + count * (1 + k); and the total bits."""
    m = len(u)
    parts = -(-m // partition)
    if parts == 0:
        return np.zeros(0, np.int64), 0
    padded = np.zeros(parts * partition, dtype=np.int64)
    padded[:m] = u
    grid = padded.reshape(parts, partition)
    counts = np.full(parts, partition, dtype=np.int64)
    counts[-1] = m - (parts - 1) * partition
    # No k above the bit length of the largest value can help.
    k_max = min(MAX_RICE_K, int(u.max()).bit_length()) if m else 0
    costs = np.stack([np.minimum(grid >> k, ESCAPE_Q).sum(axis=1) + counts * (1 + k) for k in range(k_max + 1)])
    ks = costs.argmin(axis=0).astype(np.int64)
    return ks, int(costs.min(axis=0).sum()) + 8 * parts


def _integrate(warmup: NDArray[np.int64], residual: NDArray[np.int64]) -> NDArray[np.int64]:
    """Undo ``np.diff(x, n=len(warmup))`` given the first ``len(warmup)`` values of x."""
    order = len(warmup)
    if order == 0:
        return residual
    # The first element of each difference level, from the warm-up samples.
    levels = [warmup]
    for _ in range(order - 1):
        levels.append(np.diff(levels[-1]))
    current = residual
    for level in range(order - 1, -1, -1):
        head = levels[level][0]
        current = np.concatenate(([head], head + np.cumsum(current)))
    return current


def _pack_unary(q: NDArray[np.int64]) -> bytes:
    """q zeros then a one, for every value; zero-padded to a byte."""
    if q.size == 0:
        return b""
    ends = np.cumsum(q + 1) - 1
    bits = np.zeros(int(ends[-1]) + 1, dtype=np.uint8)
    bits[ends] = 1
    return np.packbits(bits).tobytes()


def _unpack_unary(buf: bytes, count: int) -> NDArray[np.int64]:
    if count == 0:
        if buf:
            raise FrameError("frame length does not match its sample count")
        return np.zeros(0, np.int64)
    bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8))
    ones = np.flatnonzero(bits)
    if len(ones) != count or len(buf) != -(-(int(ones[-1]) + 1) // 8):
        raise FrameError("frame length does not match its sample count")
    q = np.diff(ones, prepend=-1) - 1
    if q.max() > ESCAPE_Q:
        raise FrameError("bad unary code")
    return q.astype(np.int64)


def _bit_positions(w: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """For values of widths w laid end to end: which value each bit belongs to, and its shift."""
    total = int(w.sum())
    owner = np.repeat(np.arange(len(w)), w)
    starts = np.cumsum(w) - w
    index_in_value = np.arange(total) - starts[owner]
    shift = w[owner] - 1 - index_in_value
    return owner, shift, starts


def _pack_fixed(values: NDArray[np.int64], w: NDArray[np.int64]) -> bytes:
    if int(w.sum()) == 0:
        return b""
    owner, shift, _ = _bit_positions(w)
    bits = ((values[owner] >> shift) & 1).astype(np.uint8)
    return np.packbits(bits).tobytes()


def _unpack_fixed(buf: bytes, w: NDArray[np.int64]) -> NDArray[np.int64]:
    out = np.zeros(len(w), dtype=np.int64)
    total = int(w.sum())
    if total == 0:
        return out
    bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8))
    if bits[total:].any():
        raise FrameError("frame has stray bits after its samples")
    _, shift, starts = _bit_positions(w)
    contributions = bits[:total].astype(np.int64) << shift
    wide = w > 0
    out[wide] = np.add.reduceat(contributions, starts[wide])
    return out
