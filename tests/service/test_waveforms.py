"""Waveform streams through the services, on SQLite and PostgreSQL: every sample stored exactly once,
in order, whatever the source resends; bad frames refused without touching the stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import wfdb

from teleconsult.clock import FakeClock
from teleconsult.domain.errors import Conflict, DomainError, PermissionDenied
from teleconsult.domain.waveform import FrameHeader, SignalScale, decode_frame, encode_frame
from teleconsult.services import Services
from teleconsult.services.waveforms import StreamInfo
from teleconsult.settings import Settings
from teleconsult.storage import waveforms as store
from teleconsult.storage.models import WaveformChunkRow, WaveformFrameRow, WaveformStreamRow
from teleconsult.storage.waveforms import StoredSignal
from tests.conftest import MakeServices, World
from tests.service.support import audit_rows, count, rows
from tests.service.test_consultations import in_progress

DATA = Path(__file__).resolve().parents[1] / "data" / "physionet"
RECORD = wfdb.rdrecord(str(DATA / "100"), physical=False, sampto=360 * 30)
SIGNALS = [
    StoredSignal(name=n, units=u, gain=float(g), baseline=int(b))
    for n, u, g, b in zip(RECORD.sig_name, RECORD.units, RECORD.adc_gain, RECORD.baseline, strict=True)
]
SCALES = tuple(s.scale for s in SIGNALS)
STEP = 72  # 200 ms at 360 Hz


def frame(stream_id: int, seq: int, digital: np.ndarray = RECORD.d_signal) -> bytes:
    start = seq * STEP
    piece = digital[start : start + STEP]
    return encode_frame(FrameHeader(stream_id, seq, start, 360_000, len(piece), SCALES), piece)


@pytest.fixture
async def live(services: Services) -> AsyncIterator[Services]:
    services.waveforms.start()
    yield services
    await services.waveforms.close()


async def open_stream(services: Services, world: World, cid: int, key: str = "monitor-bed-1") -> StreamInfo:
    stream, next_seq = await services.waveforms.open_stream(
        world.clin_a, cid, key, "record 100", 360.0, SIGNALS, source="t"
    )
    assert next_seq == 0
    return stream


async def send(services: Services, world: World, stream_id: int, payload: bytes) -> tuple[int, bool]:
    accepted = await services.waveforms.accept_frame(world.clin_a.user_id, {stream_id}, payload)
    await accepted.committed
    return accepted.seq, not accepted.relay


async def stored(services: Services, stream_id: int) -> np.ndarray:
    async with services.db.transaction() as tx:
        row = await tx.get(WaveformStreamRow, stream_id)
        assert row is not None
        return await store.read_samples(tx, row, 0, row.next_sample)


async def test_frames_are_stored_in_order_and_read_back_exactly(live: Services, world: World) -> None:
    cid = await in_progress(live, world)
    stream = await open_stream(live, world, cid)
    results = await asyncio.gather(*(send(live, world, stream.id, frame(stream.id, i)) for i in range(50)))
    assert [seq for seq, _ in results] == list(range(50))
    assert np.array_equal(await stored(live, stream.id), RECORD.d_signal[: 50 * STEP])
    [audit] = await audit_rows(live, action="waveform.open")
    assert audit.outcome == "success" and audit.actor_user_id == world.clin_a.user_id


async def test_a_resent_frame_is_acknowledged_but_stored_once(live: Services, world: World) -> None:
    cid = await in_progress(live, world)
    stream = await open_stream(live, world, cid)
    for i in range(5):
        await send(live, world, stream.id, frame(stream.id, i))
    assert await send(live, world, stream.id, frame(stream.id, 3)) == (3, True)
    assert await count(live, WaveformFrameRow, WaveformFrameRow.stream_id == stream.id) == 5
    assert np.array_equal(await stored(live, stream.id), RECORD.d_signal[: 5 * STEP])


async def test_reopening_with_the_same_key_resumes_where_the_store_is(live: Services, world: World) -> None:
    cid = await in_progress(live, world)
    stream = await open_stream(live, world, cid)
    for i in range(7):
        await send(live, world, stream.id, frame(stream.id, i))
    again, next_seq = await live.waveforms.open_stream(
        world.clin_a, cid, "monitor-bed-1", "record 100", 360.0, SIGNALS, source="t"
    )
    assert (again.id, next_seq) == (stream.id, 7)
    with pytest.raises(Conflict):
        await live.waveforms.open_stream(world.clin_a, cid, "monitor-bed-1", "x", 250.0, SIGNALS, source="t")


async def test_a_restarted_server_dedupes_resends_and_continues(
    live: Services, world: World, db_settings: Settings, clock: FakeClock, make_services: MakeServices
) -> None:
    cid = await in_progress(live, world)
    stream = await open_stream(live, world, cid)
    for i in range(4):
        await send(live, world, stream.id, frame(stream.id, i))
    await live.waveforms.close()
    restarted = await make_services(db_settings, clock)
    restarted.waveforms.start()
    try:
        # The gateway did not see the acks of 2 and 3: it resends them, then goes on.
        for i in range(2, 8):
            accepted = await restarted.waveforms.accept_frame(world.clin_a.user_id, {stream.id}, frame(stream.id, i))
            await accepted.committed
            assert accepted.relay == (i >= 4)
        assert np.array_equal(await stored(restarted, stream.id), RECORD.d_signal[: 8 * STEP])
    finally:
        await restarted.waveforms.close()


async def test_frames_that_overtake_each_other_still_land_in_order(live: Services, world: World) -> None:
    cid = await in_progress(live, world)
    stream = await open_stream(live, world, cid)
    order = [1, 0, 3, 2, 5, 4]
    tasks = []
    for seq in order:
        tasks.append(asyncio.ensure_future(send(live, world, stream.id, frame(stream.id, seq))))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert np.array_equal(await stored(live, stream.id), RECORD.d_signal[: 6 * STEP])


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (lambda sid: frame(sid, 1)[:-3], "length"),
        (lambda sid: frame(sid, 9), "sequence gap"),
        (
            lambda sid: encode_frame(
                FrameHeader(sid, 1, STEP, 250_000, STEP, SCALES), RECORD.d_signal[STEP : 2 * STEP]
            ),
            "sample rate",
        ),
        (
            lambda sid: encode_frame(FrameHeader(sid, 1, 5, 360_000, STEP, SCALES), RECORD.d_signal[STEP : 2 * STEP]),
            "first sample",
        ),
        (
            lambda sid: encode_frame(
                FrameHeader(sid, 1, STEP, 360_000, STEP, (SignalScale(100.0, 1024, "mV"), SCALES[1])),
                RECORD.d_signal[STEP : 2 * STEP],
            ),
            "gain",
        ),
        (
            lambda sid: encode_frame(
                FrameHeader(sid, 1, STEP, 360_000, STEP, SCALES[:1]), RECORD.d_signal[STEP : 2 * STEP, :1]
            ),
            "signals",
        ),
        (lambda sid: frame(sid + 1000, 1), "unknown stream"),
        (lambda sid: b"\xec\x01" + b"\x00" * 70_000, "larger than"),
    ],
)
async def test_a_bad_frame_is_refused_and_the_stream_goes_on(live: Services, world: World, bad, message: str) -> None:  # type: ignore[no-untyped-def]
    live.settings.reorder_wait_s = 0.05
    cid = await in_progress(live, world)
    stream = await open_stream(live, world, cid)
    await send(live, world, stream.id, frame(stream.id, 0))
    with pytest.raises(DomainError, match=message):
        await send(live, world, stream.id, bad(stream.id))
    for i in range(1, 4):
        await send(live, world, stream.id, frame(stream.id, i))
    assert np.array_equal(await stored(live, stream.id), RECORD.d_signal[: 4 * STEP])


async def test_only_the_requesting_facility_may_stream_and_only_to_its_own_streams(
    live: Services, world: World
) -> None:
    cid = await in_progress(live, world)
    for outsider in (world.clin_b, world.spec_cardio, world.coord):
        with pytest.raises(PermissionDenied):
            await live.waveforms.open_stream(outsider, cid, "monitor-bed-9", "x", 360.0, SIGNALS, source="t")
    denied = await audit_rows(live, action="waveform.open", outcome="denied")
    assert len(denied) == 3
    stream = await open_stream(live, world, cid)
    with pytest.raises(PermissionDenied):
        await live.waveforms.accept_frame(world.clin_b.user_id, {stream.id}, frame(stream.id, 0))
    with pytest.raises(PermissionDenied):
        await live.waveforms.accept_frame(world.clin_a.user_id, set(), frame(stream.id, 0))
    assert await count(live, WaveformFrameRow) == 0


async def test_compaction_folds_frames_into_smaller_chunks_without_changing_a_sample(
    live: Services, world: World
) -> None:
    cid = await in_progress(live, world)
    stream = await open_stream(live, world, cid)
    n = len(RECORD.d_signal) // STEP
    for i in range(n):
        await send(live, world, stream.id, frame(stream.id, i))
    before = await stored(live, stream.id)
    await live.waveforms.close_stream(world.clin_a, stream.id, source="t")
    assert await live.waveforms.compact_all() == n
    assert await count(live, WaveformFrameRow) == 0
    assert await count(live, WaveformChunkRow) >= 3
    after = await stored(live, stream.id)
    assert np.array_equal(after, before) and np.array_equal(after, RECORD.d_signal[: n * STEP])
    async with live.db.transaction() as tx:
        chunk_bytes, frame_bytes = await store.stored_bytes(tx, stream.id)
    assert frame_bytes == 0 and chunk_bytes / after.size <= 0.6


async def test_backfill_gives_the_last_seconds_to_room_participants_only(live: Services, world: World) -> None:
    cid = await in_progress(live, world)
    stream = await open_stream(live, world, cid)
    for i in range(40):  # 8 s
        await send(live, world, stream.id, frame(stream.id, i))
    [(info, payload)] = await live.waveforms.recent(world.spec_cardio, cid, 5.0)
    got = decode_frame(payload)
    assert info.id == stream.id and got.header.first_sample == 40 * STEP - 5 * 360
    assert np.array_equal(got.samples, RECORD.d_signal[40 * STEP - 5 * 360 : 40 * STEP])
    with pytest.raises(PermissionDenied):
        await live.waveforms.recent(world.clin_b, cid, 5.0)


async def test_an_imported_record_reads_back_exactly_and_only_for_the_record_s_readers(
    services: Services, world: World
) -> None:
    record = wfdb.rdrecord(str(DATA / "s0010_re"), physical=False)
    signals = [
        StoredSignal(name=n, units=u, gain=float(g), baseline=int(b))
        for n, u, g, b in zip(record.sig_name, record.units, record.adc_gain, record.baseline, strict=True)
    ]
    stream = await services.waveforms.import_samples(
        world.patient.id, "import-s0010", "s0010_re", record.fs, signals, record.d_signal, source="t"
    )
    again = await services.waveforms.import_samples(
        world.patient.id, "import-s0010", "s0010_re", record.fs, signals, record.d_signal, source="t"
    )
    assert again.id == stream.id and stream.next_sample == len(record.d_signal)
    info, first, data = await services.waveforms.samples(world.clin_a, stream.id, 0, 10**9, source="t")
    assert first == 0 and np.array_equal(data, record.d_signal)
    with pytest.raises(PermissionDenied):
        await services.waveforms.samples(world.clin_b, stream.id, 0, 1000, source="t")
    assert [r.outcome for r in await audit_rows(services, action="waveform.read")] == ["success", "denied"]
    [row] = await rows(services, WaveformStreamRow, WaveformStreamRow.id == stream.id)
    assert row.source_user_id is None
