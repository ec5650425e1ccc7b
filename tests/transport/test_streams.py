"""Monitor signals and vital signs over real socket.io connections to the real composed app: a source
streams binary frames, the people in the room get them at once, the source gets an ack once stored."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wfdb

from teleconsult.domain.waveform import FrameHeader, decode_frame, encode_frame
from teleconsult.storage import waveforms as store
from teleconsult.storage.models import VitalSignRow, WaveformStreamRow
from tests.transport.conftest import Connect, Live, Peer, open_consultation

DATA = Path(__file__).resolve().parents[1] / "data" / "physionet"
RECORD = wfdb.rdrecord(str(DATA / "100"), physical=False, sampto=360 * 20)
SIGNALS = [
    {"name": n, "units": u, "gain": float(g), "baseline": int(b)}
    for n, u, g, b in zip(RECORD.sig_name, RECORD.units, RECORD.adc_gain, RECORD.baseline, strict=True)
]
STEP = 72


def frame(stream_id: int, seq: int) -> bytes:
    from teleconsult.domain.waveform import SignalScale

    scales = tuple(SignalScale(s["gain"], s["baseline"], s["units"]) for s in SIGNALS)
    piece = RECORD.d_signal[seq * STEP : (seq + 1) * STEP]
    return encode_frame(FrameHeader(stream_id, seq, seq * STEP, 360_000, len(piece), scales), piece)


async def open_stream(source: Peer, cid: int, key: str = "bedside-monitor-1") -> int:
    ack = await source.call(
        "stream.open",
        {"consultation_id": cid, "source_key": key, "label": "MIT-BIH 100", "sample_rate": 360, "signals": SIGNALS},
    )
    assert ack["ok"], ack
    return int(ack["stream"]["id"])


async def in_room(connect: Connect, username: str, cid: int) -> Peer:
    peer = await connect(username)
    ack = await peer.call("room.join", {"consultation_id": cid})
    assert ack["ok"], ack
    return peer


async def stored(live: Live, stream_id: int) -> np.ndarray:
    async with live.services.db.transaction() as tx:
        row = await tx.get(WaveformStreamRow, stream_id)
        return await store.read_samples(tx, row, 0, row.next_sample)


async def test_frames_reach_the_room_at_once_and_are_acked_once_stored(live: Live, connect: Connect) -> None:
    cid = await open_consultation(live)
    specialist = await in_room(connect, "cardiologist", cid)
    source = await connect("clinician")
    stream_id = await open_stream(source, cid)
    opened = await specialist.next("stream.opened")
    assert opened["stream"]["id"] == stream_id and [s["label"] for s in opened["stream"]["signals"]] == ["MLII", "V5"]
    acks = await asyncio.gather(*(source.call("stream.frame", frame(stream_id, i)) for i in range(20)))
    assert [a["seq"] for a in acks] == list(range(20)) and not any(a["duplicate"] for a in acks)
    received = [decode_frame(await specialist.next("stream.frame")) for _ in range(20)]
    assert sorted(f.header.seq for f in received) == list(range(20))
    assert np.array_equal(await stored(live, stream_id), RECORD.d_signal[: 20 * STEP])
    again = await source.call("stream.frame", frame(stream_id, 5))
    assert again == {"ok": True, "seq": 5, "duplicate": True}
    await specialist.nothing("stream.frame")  # a resend is not shown twice


async def test_nobody_outside_the_room_receives_a_frame(live: Live, connect: Connect) -> None:
    cid = await open_consultation(live)
    other_cid = await open_consultation(live, clinician="clinician2", accept_by="cardiologist2")
    other_facility = await connect("clinician2")
    refused = await other_facility.call("room.join", {"consultation_id": cid})
    assert refused["error"]["code"] == "forbidden"
    backfill = await other_facility.call("stream.backfill", {"consultation_id": cid})
    assert not backfill["ok"]
    other_room = await in_room(connect, "cardiologist2", other_cid)
    source = await connect("clinician")
    stream_id = await open_stream(source, cid)
    for i in range(3):
        assert (await source.call("stream.frame", frame(stream_id, i)))["ok"]
    await other_facility.nothing("stream.frame")
    await other_room.nothing("stream.frame")
    await other_room.nothing("stream.opened", wait=0.05)


async def test_bad_frames_are_refused_clearly_and_the_stream_goes_on(live: Live, connect: Connect) -> None:
    live.settings.max_frame_bytes = 8 * 1024  # below the transport's own message limit
    cid = await open_consultation(live)
    other_cid = await open_consultation(live, clinician="clinician2", accept_by="cardiologist2")
    viewer = await in_room(connect, "cardiologist", cid)
    source = await connect("clinician")
    stream_id = await open_stream(source, cid)
    other_source = await connect("clinician2")
    other_stream = await open_stream(other_source, other_cid, key="other-monitor-1")
    assert (await source.call("stream.frame", frame(stream_id, 0)))["ok"]
    bad: list[Any] = [
        {"samples": [1, 2, 3]},  # JSON, not a binary frame
        frame(stream_id, 1)[:-2],  # wrong length
        frame(stream_id, 1) + b"\x00",
        frame(stream_id, 400),  # far ahead: a gap
        frame(stream_id + 99, 1),  # unknown stream
        frame(other_stream, 0),  # another room's stream, not opened on this connection
        b"\xec\x01" + b"\x01" * (live.settings.max_frame_bytes + 10),  # oversized
        b"not a frame",
    ]
    for payload in bad:
        ack = await source.call("stream.frame", payload)
        assert ack["ok"] is False and ack["error"]["message"], payload[:20]
    for i in range(1, 5):
        assert (await source.call("stream.frame", frame(stream_id, i)))["ok"]
    assert np.array_equal(await stored(live, stream_id), RECORD.d_signal[: 5 * STEP])
    seqs = [decode_frame(await viewer.next("stream.frame")).header.seq for _ in range(5)]
    assert sorted(seqs) == [0, 1, 2, 3, 4]
    await viewer.nothing("stream.frame")


async def test_a_late_viewer_gets_the_last_minute_from_the_store(live: Live, connect: Connect) -> None:
    cid = await open_consultation(live)
    source = await connect("clinician")
    stream_id = await open_stream(source, cid)
    for i in range(0, 100, 10):
        await asyncio.gather(*(source.call("stream.frame", frame(stream_id, j)) for j in range(i, i + 10)))
    late = await connect("cardiologist")
    joined = await late.call("room.join", {"consultation_id": cid})
    assert [s["id"] for s in joined["streams"]] == [stream_id]
    backfill = await late.call("stream.backfill", {"consultation_id": cid, "seconds": 10})
    [payload] = backfill["frames"]
    got = decode_frame(payload)
    assert got.header.first_sample == 100 * STEP - 3600
    assert np.array_equal(got.samples, RECORD.d_signal[100 * STEP - 3600 : 100 * STEP])


async def test_vitals_typed_in_the_room_reach_everyone_and_bad_ones_change_nothing(
    live: Live, connect: Connect
) -> None:
    cid = await open_consultation(live)
    clinician = await in_room(connect, "clinician", cid)
    specialist = await in_room(connect, "cardiologist", cid)
    ack = await clinician.call(
        "vitals.add", {"consultation_id": cid, "kind": "spo2", "value": 88, "client_id": "spo2-entry-0001"}
    )
    assert ack["ok"] and ack["created"] and ack["vital"]["unit"] == "%"
    pushed = await specialist.next("vitals.added")
    assert pushed["vital"]["value"] == 88 and pushed["vital"]["source"] == "manual"
    for payload in (
        {"consultation_id": cid, "kind": "spo2", "value": 120, "client_id": "spo2-entry-0002"},
        {"consultation_id": cid, "kind": "bp", "value": 120, "client_id": "bp-entry-0001"},
        {"consultation_id": cid, "kind": "hr", "value": "fast", "client_id": "hr-entry-0001"},
        {"consultation_id": cid, "kind": "hr", "value": 80, "client_id": "x", "extra": 1},
    ):
        refused = await clinician.call("vitals.add", payload)
        assert refused["ok"] is False and refused["error"]["code"] == "invalid"
    await specialist.nothing("vitals.added")
    rejoined = await specialist.call("room.join", {"consultation_id": cid})
    assert [v["value"] for v in rejoined["vitals"]] == [88]
    async with live.services.db.transaction() as tx:
        assert len((await tx.execute(VitalSignRow.__table__.select())).all()) == 1


@pytest.fixture
def fast_heart_rate(live: Live) -> None:
    live.services.settings.derived_hr_interval_s = 0.2


async def test_heart_rate_is_derived_from_the_ecg_for_the_room(
    live: Live, connect: Connect, fast_heart_rate: None
) -> None:
    cid = await open_consultation(live)
    viewer = await in_room(connect, "cardiologist", cid)
    source = await connect("clinician")
    stream_id = await open_stream(source, cid)
    for i in range(0, 80, 10):
        await asyncio.gather(*(source.call("stream.frame", frame(stream_id, j)) for j in range(i, i + 10)))
        await asyncio.sleep(0.25)
    beats = []
    for _ in range(20):
        event = await viewer.next("stream.heart_rate", timeout=10)
        if event["bpm"] is not None and event["window_s"] >= 5:
            beats.append(event["bpm"])
            break
    assert beats and 65 <= beats[0] <= 85, beats  # record 100 runs at about 75 beats per minute
    assert event["stream_id"] == stream_id and event["lead"] == "MLII"
