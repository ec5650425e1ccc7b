"""The browser's frame decoder (static/js/waveform.js) against the Python encoder, on real ECG records.

Frames are made by teleconsult.domain.waveform.encode_frame from MIT-BIH record 100 and PTB s0010_re,
decoded in Chromium, and compared sample for sample with the record's digital signal. Malformed frames must
throw with the same message the Python decoder gives.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import wfdb
from playwright.async_api import Browser, Page

from teleconsult.domain.waveform import (
    FrameError,
    FrameHeader,
    SignalScale,
    decode_frame,
    encode_frame,
    rate_to_mhz,
    read_header,
)
from tests.e2e.conftest import Server, start_server, stop_server

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

RECORDS = Path(__file__).resolve().parents[1] / "data" / "physionet"

# Decodes every case in the page; compares with the expected int32 samples (signal-major, little-endian)
# in the page too, so that a million samples need not travel back through the DevTools protocol.
DECODE_AND_COMPARE = """async (cases) => {
  const { decodeFrame, physical } = await import("/static/js/waveform.js");
  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const results = [];
  for (const c of cases) {
    // Decode from a view with a non-zero byteOffset: the frame may sit inside a larger buffer.
    const raw = bytes(c.frame);
    const padded = new Uint8Array(raw.length + 3);
    padded.set(raw, 3);
    const f = decodeFrame(padded.subarray(3));
    const expected = new Int32Array(bytes(c.expected).buffer);
    let mismatches = 0;
    let first = null;
    f.samples.forEach((signal, s) => {
      for (let i = 0; i < signal.length; i++) {
        const want = expected[s * f.nSamples + i];
        if (signal[i] !== want) {
          mismatches += 1;
          if (first === null) first = { signal: s, index: i, got: signal[i], want };
        }
      }
    });
    results.push({
      streamId: f.streamId, seq: f.seq, firstSample: f.firstSample, sampleRate: f.sampleRate,
      nSamples: f.nSamples, signals: f.samples.length, scales: f.scales,
      allInt32: f.samples.every((a) => a instanceof Int32Array),
      physical0: f.samples.map((a, s) => physical(a[0], f.scales[s])),
      fromArrayBuffer: decodeFrame(raw.buffer).samples[0][f.nSamples - 1] === f.samples[0][f.nSamples - 1],
      mismatches, first,
    });
  }
  return results;
}"""

DECODE_ERRORS = """async (frames) => {
  const { decodeFrame } = await import("/static/js/waveform.js");
  return frames.map((b64) => {
    try {
      decodeFrame(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
      return null;
    } catch (err) {
      return { name: err.name, message: err.message };
    }
  });
}"""


@pytest.fixture(scope="module")
def waveform_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("waveform-js"))
    yield running
    stop_server(running)


def _record(name: str) -> tuple[np.ndarray, tuple[SignalScale, ...], float]:
    record = wfdb.rdrecord(str(RECORDS / name), physical=False)
    scales = tuple(
        SignalScale(gain=float(g), baseline=int(b), units=str(u))
        for g, b, u in zip(record.adc_gain, record.baseline, record.units, strict=True)
    )
    return record.d_signal.astype(np.int64), scales, float(record.fs)


def _case(stream_id: int, seq: int, first: int, rate: float, samples: np.ndarray, scales: tuple) -> dict:
    header = FrameHeader(stream_id, seq, first, rate_to_mhz(rate), samples.shape[0], scales)
    frame = encode_frame(header, samples)
    expected = np.ascontiguousarray(samples.T, dtype="<i4").tobytes()
    return {
        "frame": base64.b64encode(frame).decode(),
        "expected": base64.b64encode(expected).decode(),
        "want": {"stream_id": stream_id, "seq": seq, "first": first, "n": samples.shape[0], "scales": scales},
    }


def _check(results: list[dict], cases: list[dict], rate: float) -> None:
    assert len(results) == len(cases)
    for got, case in zip(results, cases, strict=True):
        want = case["want"]
        assert got["mismatches"] == 0, got["first"]
        assert got["allInt32"] and got["fromArrayBuffer"]
        assert (got["streamId"], got["seq"], got["firstSample"], got["nSamples"]) == (
            want["stream_id"],
            want["seq"],
            want["first"],
            want["n"],
        )
        assert got["sampleRate"] == pytest.approx(rate, abs=1e-9)
        assert got["signals"] == len(want["scales"])
        for scale, expected in zip(got["scales"], want["scales"], strict=True):
            assert scale["gain"] == float(np.float32(expected.gain))  # the wire carries f32
            assert scale["baseline"] == expected.baseline
            assert scale["units"] == expected.units


async def _page(browser: Browser, server: Server) -> Page:
    page = await browser.new_page()
    await page.goto(f"{server.url}/login")
    return page


@pytest.mark.parametrize("name", ["100", "s0010_re"])
async def test_200ms_frames_of_a_real_record_decode_to_its_digital_samples(
    browser: Browser, waveform_server: Server, name: str
) -> None:
    d_signal, scales, fs = _record(name)
    n = round(fs * 0.2)
    seconds = 10 if name == "100" else 38
    cases = [_case(3, i, i * n, fs, d_signal[i * n : (i + 1) * n], scales) for i in range(seconds * 5)]
    page = await _page(browser, waveform_server)
    results = await page.evaluate(DECODE_AND_COMPARE, [{k: c[k] for k in ("frame", "expected")} for c in cases])
    _check(results, cases, fs)
    # physical() is WFDB's (digital - baseline) / gain
    first = results[0]["physical0"]
    for s, scale in enumerate(scales):
        assert first[s] == pytest.approx((d_signal[0, s] - scale.baseline) / float(np.float32(scale.gain)))


async def test_one_big_frame_of_each_record(browser: Browser, waveform_server: Server) -> None:
    page = await _page(browser, waveform_server)
    for name, count in (("100", 360 * 300), ("s0010_re", None)):
        d_signal, scales, fs = _record(name)
        samples = d_signal[:count] if count else d_signal
        case = _case(9, 1234567, 2**40, fs, samples, scales)  # a first sample past 32 bits
        results = await page.evaluate(DECODE_AND_COMPARE, [{k: case[k] for k in ("frame", "expected")}])
        _check(results, [case], fs)
        assert results[0]["nSamples"] == samples.shape[0]


async def test_escape_values_unit_strings_and_every_predictor_order(browser: Browser, waveform_server: Server) -> None:
    extremes = np.array([0, 2**31 - 1, -(2**31), 5, -7, 2**31 - 1, 2**31 - 1, -(2**31), 0], dtype=np.int64)
    # Small values with rare full-scale spikes: a small Rice parameter, so each spike is an escape.
    rng = np.random.default_rng(100)
    noise = rng.integers(-50, 50, size=(300, 3))
    noise[rng.integers(0, 300, size=12), rng.integers(0, 3, size=12)] = rng.choice([-(2**31), 2**31 - 1], size=12)
    cases = [
        _case(1, 0, 0, 360.0, extremes.reshape(-1, 1), (SignalScale(200.0, 0, "mV"),)),
        _case(
            2,
            7,
            360,
            0.5,
            noise,
            (SignalScale(1.5, -3, "weird unit µ"), SignalScale(1e-3, 2**30, "mmHg"), SignalScale(7.25, 0, "%")),
        ),
    ]
    # Signals each best predicted by a different order: noise, a random walk, its sum, and the sum of that.
    steps = rng.integers(-20, 21, size=400)
    orders = np.stack(
        [steps * 1000, np.cumsum(steps), np.cumsum(np.cumsum(steps)), np.cumsum(np.cumsum(np.cumsum(steps)))], 1
    )
    cases.append(_case(5, 0, 0, 250.0, orders, tuple(SignalScale(1.0, 0, "mV") for _ in range(4))))
    # The frames really exercise the escape path (a unary code of 32 zeros) and every predictor order.
    assert all(_block_info(base64.b64decode(c["frame"]))[1] > 0 for c in cases[:2])
    assert _block_info(base64.b64decode(cases[2]["frame"]))[0] == [0, 1, 2, 3]
    page = await _page(browser, waveform_server)
    results = await page.evaluate(DECODE_AND_COMPARE, [{k: c[k] for k in ("frame", "expected")} for c in cases])
    _check(results[:1], cases[:1], 360.0)
    _check(results[1:2], cases[1:2], 0.5)
    _check(results[2:], cases[2:], 250.0)


def _block_info(frame: bytes) -> tuple[list[int], int]:
    """Each signal's predictor order and the block's escape count, read by the layout in
    docs/waveform-format.md."""
    header, pos = read_header(frame)

    def uvarint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            byte = frame[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    partition = uvarint()
    orders = []
    for _ in range(header.n_signals):
        order = frame[pos]
        orders.append(order)
        pos += 1
        for _ in range(order):
            uvarint()
        pos += -(-(header.n_samples - order) // partition)
    uvarint()  # unary length
    return orders, uvarint()


def _python_error(frame: bytes) -> str:
    with pytest.raises(FrameError) as caught:
        decode_frame(frame)
    return caught.value.message


async def test_malformed_frames_throw_like_the_python_decoder(browser: Browser, waveform_server: Server) -> None:
    d_signal, scales, fs = _record("100")
    good = encode_frame(FrameHeader(4, 0, 0, rate_to_mhz(fs), 72, scales), d_signal[:72])
    bad_version = bytearray(good)
    bad_version[1] = 2
    stray_bit = bytearray(good)
    malformed = {
        "truncated": good[:-1],
        "truncated header": good[:5],
        "trailing byte": good + b"\x00",
        "bad magic": b"\xed" + good[1:],
        "bad version": bytes(bad_version),
        "empty": b"",
    }
    # A bit set in the padding after the last remainder.
    stray_bit[-1] |= 1
    try:
        decode_frame(bytes(stray_bit))
    except FrameError:
        malformed["stray bit"] = bytes(stray_bit)
    page = await _page(browser, waveform_server)
    errors = await page.evaluate(DECODE_ERRORS, [base64.b64encode(f).decode() for f in malformed.values()])
    for (label, frame), error in zip(malformed.items(), errors, strict=True):
        assert error is not None, f"{label}: decoded without error"
        assert error["name"] == "FrameError"
        assert error["message"] == _python_error(frame), label
    # Every truncation of a good frame is refused, never decoded into something shorter.
    truncations = [base64.b64encode(good[:cut]).decode() for cut in range(len(good))]
    assert all(e is not None for e in await page.evaluate(DECODE_ERRORS, truncations))


MIRROR = """async (cases) => {
  const { decodeFrame } = await import("/static/js/waveform.js");
  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return cases.map((c) => {
    let frame;
    try {
      frame = decodeFrame(bytes(c.frame));
    } catch (err) {
      return c.error === err.message ? null : `threw "${err.message}", Python: ${c.error || "decoded"}`;
    }
    if (c.error) return `decoded, Python: ${c.error}`;
    const want = new Int32Array(bytes(c.expected).buffer);
    const got = frame.samples.flatMap((a) => Array.from(a));
    return got.length === want.length && got.every((v, i) => v === want[i]) ? null : "different samples";
  });
}"""


async def test_damaged_frames_decode_or_fail_exactly_as_in_python(browser: Browser, waveform_server: Server) -> None:
    """Random bit flips, byte changes, deletions and insertions: the browser agrees with the server on
    which frames are malformed, why, and what the others decode to."""
    d_signal, scales, fs = _record("s0010_re")
    rng = np.random.default_rng(2026)
    wild = rng.integers(-50, 50, size=(64, 2))
    wild[rng.integers(0, 64, size=4), rng.integers(0, 2, size=4)] = 2**31 - 1
    bases = [
        encode_frame(FrameHeader(3, 1, 10, rate_to_mhz(fs), n, scales[:3]), d_signal[1000 : 1000 + n, :3])
        for n in (1, 3, 33, 200)
    ]
    bases.append(encode_frame(FrameHeader(3, 2, 0, 1000, 64, scales[:2]), wild))
    cases = []
    for _ in range(600):
        frame = bytearray(bases[rng.integers(len(bases))])
        op = rng.random()
        at = int(rng.integers(len(frame)))
        if op < 0.5:
            frame[at] ^= 1 << int(rng.integers(8))
        elif op < 0.7:
            frame[at] = int(rng.integers(256))
        elif op < 0.85:
            del frame[at]
        else:
            frame.insert(at, int(rng.integers(256)))
        case = {"frame": base64.b64encode(bytes(frame)).decode()}
        try:
            samples = decode_frame(bytes(frame)).samples
            case["expected"] = base64.b64encode(np.ascontiguousarray(samples.T, dtype="<i4").tobytes()).decode()
        except FrameError as exc:
            case["error"] = exc.message
        cases.append(case)
    assert 50 < sum("error" in c for c in cases) < 590  # both outcomes are well represented
    page = await _page(browser, waveform_server)
    disagreements = [d for d in await page.evaluate(MIRROR, cases) if d is not None]
    assert disagreements == []
