"""The waveform frame codec, on real PhysioNet records and on the edges of its format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from teleconsult.domain.heart_rate import derive_heart_rate
from teleconsult.domain.signals import SignalKind, describe
from teleconsult.domain.waveform import (
    FrameError,
    FrameHeader,
    SignalScale,
    check_frame,
    decode_block,
    decode_frame,
    encode_block,
    encode_frame,
    rate_to_mhz,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "physionet"
RECORDS = ["100", "s0010_re"]


def _record(name: str) -> wfdb.Record:
    return wfdb.rdrecord(str(DATA / name), physical=False)


def _scales(record: wfdb.Record) -> tuple[SignalScale, ...]:
    return tuple(
        SignalScale(float(g), int(b), str(u))
        for g, b, u in zip(record.adc_gain, record.baseline, record.units, strict=True)
    )


@pytest.mark.parametrize("name", RECORDS)
@pytest.mark.parametrize("frame_ms", [40, 200, 1000])
def test_every_frame_of_a_real_record_decodes_to_the_exact_samples(name: str, frame_ms: int) -> None:
    record = _record(name)
    digital = record.d_signal
    step = round(record.fs * frame_ms / 1000)
    rebuilt = []
    for seq, start in enumerate(range(0, min(len(digital), 20 * int(record.fs)), step)):
        piece = digital[start : start + step]
        header = FrameHeader(7, seq, start, rate_to_mhz(record.fs), len(piece), _scales(record))
        payload = encode_frame(header, piece)
        assert check_frame(payload, 1 << 20) == header
        frame = decode_frame(payload)
        assert frame.header == header
        rebuilt.append(frame.samples)
    whole = np.concatenate(rebuilt)
    assert np.array_equal(whole, digital[: len(whole)])


@pytest.mark.parametrize("name", RECORDS)
def test_a_whole_record_as_one_block_is_lossless_and_smaller_than_format_212(name: str) -> None:
    digital = _record(name).d_signal
    block = encode_block(digital)
    assert np.array_equal(decode_block(block, *digital.shape), digital)
    assert len(block) / digital.size < 1.0


def test_wire_frames_of_record_100_stay_under_0_8_bytes_per_sample() -> None:
    record = _record("100")
    digital = record.d_signal[: 360 * 60]
    total = sum(
        len(encode_frame(FrameHeader(1, i, s, 360_000, 72, _scales(record)), digital[s : s + 72]))
        for i, s in enumerate(range(0, len(digital), 72))
    )
    assert total / digital.size <= 0.8


def test_extreme_values_escape_and_come_back() -> None:
    samples = np.array([[0, 5], [2**31 - 1, -(2**31)], [-(2**31), 2**31 - 1], [0, 0], [1, -1]])
    header = FrameHeader(3, 0, 0, 250_000, 5, (SignalScale(200.0, 0, "mV"), SignalScale(1.5, -7, "mmHg")))
    payload = encode_frame(header, samples)
    check_frame(payload, 100)
    assert np.array_equal(decode_frame(payload).samples, samples)


def test_unknown_units_travel_as_text() -> None:
    header = FrameHeader(3, 0, 0, 1000, 2, (SignalScale(10.0, 0, "mS/cm"),))
    assert decode_frame(encode_frame(header, np.array([[1], [2]]))).header.scales[0].units == "mS/cm"


def _good() -> bytes:
    header = FrameHeader(9, 4, 288, 360_000, 72, (SignalScale(200.0, 1024, "mV"), SignalScale(200.0, 1024, "mV")))
    return encode_frame(header, _record("100").d_signal[288:360])


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b[:-1], "length"),
        (lambda b: b + b"\x00", "length"),
        (lambda b: b[:10], "truncated"),
        (lambda b: b"\x00" + b[1:], "magic"),
        (lambda b: b[:1] + b"\x09" + b[2:], "version"),
        (lambda b: b"", "truncated"),
    ],
)
def test_malformed_frames_are_refused_with_a_reason(mangle, message: str) -> None:  # type: ignore[no-untyped-def]
    bad = mangle(_good())
    with pytest.raises(FrameError, match=message):
        check_frame(bad, 1 << 20)
    with pytest.raises(FrameError):
        decode_frame(bad)


def test_absurd_sample_rates_and_sizes_are_refused() -> None:
    with pytest.raises(FrameError):
        rate_to_mhz(0)
    with pytest.raises(FrameError):
        rate_to_mhz(1e9)
    header = FrameHeader(1, 0, 0, 360_000, 72, (SignalScale(200.0, 0, "mV"),))
    payload = encode_frame(header, np.zeros((72, 1), dtype=int))
    with pytest.raises(FrameError, match="samples per signal"):
        check_frame(payload, 50)


def test_signal_names_from_different_databases_map_to_leads() -> None:
    assert describe("ii").mdc_code == 131330 and describe("ii").label == "II"
    assert describe("avf").label == "aVF"
    assert describe("MLII").kind is SignalKind.ECG and describe("MLII").mdc_code is None
    assert describe("PLETH").kind is SignalKind.PLETH
    assert describe("ABP").kind is SignalKind.ABP
    assert describe("RESP").kind is SignalKind.RESP
    assert describe("Temperature").kind is SignalKind.OTHER


def test_heart_rate_of_record_100_matches_its_beat_annotations() -> None:
    record = wfdb.rdrecord(str(DATA / "100"), sampto=3600)
    beats = wfdb.rdann(str(DATA / "100"), "atr", sampto=3600)
    normal = [s for s, sym in zip(beats.sample, beats.symbol, strict=True) if sym in "NLRV"]
    expected = 60 / np.median(np.diff(normal) / record.fs)
    bpm = derive_heart_rate(record.p_signal[:, 0], record.fs)
    assert bpm is not None and abs(bpm - expected) < 3


def test_heart_rate_of_a_1000_hz_ptb_recording() -> None:
    record = wfdb.rdrecord(str(DATA / "s0010_re"), sampto=10_000)
    bpm = derive_heart_rate(record.p_signal[:, 0], record.fs)
    assert bpm is not None and 76 <= bpm <= 88  # GQRS on the raw 1000 Hz signal also gives about 82


def test_no_heart_rate_from_a_flat_line() -> None:
    assert derive_heart_rate(np.zeros(3600), 360.0) is None
