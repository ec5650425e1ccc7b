"""Reading and compacting stored waveforms. Samples live in two places: frames as received (hot, one row
per frame) and chunks (many frames re-coded as one block). A read stitches both; compaction moves frames
into chunks in one transaction, so a reader never sees a sample twice or not at all."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from teleconsult.domain.signals import describe
from teleconsult.domain.waveform import SignalScale, decode_block, decode_frame, encode_block
from teleconsult.storage.models import WaveformChunkRow, WaveformFrameRow, WaveformStreamRow


@dataclass(frozen=True, slots=True)
class StoredSignal:
    name: str
    units: str
    gain: float
    baseline: int

    @property
    def scale(self) -> SignalScale:
        return SignalScale(gain=self.gain, baseline=self.baseline, units=self.units)


def signals_of(row: WaveformStreamRow) -> list[StoredSignal]:
    return [StoredSignal(**s) for s in json.loads(row.signals)]


def signals_json(signals: Sequence[StoredSignal]) -> str:
    return json.dumps(
        [{"name": s.name, "units": s.units, "gain": s.gain, "baseline": s.baseline} for s in signals],
        ensure_ascii=False,
    )


def lead_labels(row: WaveformStreamRow) -> list[str]:
    return [describe(s.name).label for s in signals_of(row)]


async def read_samples(tx: AsyncSession, stream: WaveformStreamRow, start: int, count: int) -> NDArray[np.int64]:
    """Digital samples [start, start + count) of every signal, clamped to what is stored: shape (n, signals)."""
    n_signals = len(signals_of(stream))
    start = max(0, start)
    end = min(stream.next_sample, start + max(0, count))
    if end <= start:
        return np.zeros((0, n_signals), dtype=np.int64)
    pieces: list[tuple[int, NDArray[np.int64]]] = []
    chunks = await tx.execute(
        select(WaveformChunkRow)
        .where(
            WaveformChunkRow.stream_id == stream.id,
            WaveformChunkRow.first_sample < end,
            WaveformChunkRow.first_sample + WaveformChunkRow.n_samples > start,
        )
        .order_by(WaveformChunkRow.first_sample)
    )
    for chunk in chunks.scalars():
        pieces.append((chunk.first_sample, decode_block(chunk.payload, chunk.n_samples, n_signals)))
    frames = await tx.execute(
        select(WaveformFrameRow)
        .where(
            WaveformFrameRow.stream_id == stream.id,
            WaveformFrameRow.first_sample < end,
            WaveformFrameRow.first_sample + WaveformFrameRow.n_samples > start,
        )
        .order_by(WaveformFrameRow.seq)
    )
    for frame in frames.scalars():
        pieces.append((frame.first_sample, decode_frame(frame.payload).samples))
    out = np.zeros((end - start, n_signals), dtype=np.int64)
    filled = np.zeros(end - start, dtype=bool)
    for first, samples in pieces:
        lo, hi = max(first, start), min(first + len(samples), end)
        out[lo - start : hi - start] = samples[lo - first : hi - first]
        filled[lo - start : hi - start] = True
    if not filled.all():
        raise RuntimeError(f"stream {stream.id} has a hole in its stored samples")
    return out


async def compact(tx: AsyncSession, stream: WaveformStreamRow, min_samples: int) -> int:
    """Fold the stream's oldest committed frames into one chunk of at least ``min_samples`` (all of them
    when the stream has ended). Returns how many frames were folded."""
    rows = (
        (
            await tx.execute(
                select(WaveformFrameRow).where(WaveformFrameRow.stream_id == stream.id).order_by(WaveformFrameRow.seq)
            )
        )
        .scalars()
        .all()
    )
    taken: list[WaveformFrameRow] = []
    total = 0
    for row in rows:
        if taken and row.seq != taken[-1].seq + 1:
            break
        taken.append(row)
        total += row.n_samples
        if total >= min_samples:
            break
    if not taken or (total < min_samples and stream.ended_at is None):
        return 0
    samples = np.concatenate([decode_frame(r.payload).samples for r in taken])
    tx.add(
        WaveformChunkRow(
            stream_id=stream.id,
            first_sample=taken[0].first_sample,
            n_samples=len(samples),
            first_seq=taken[0].seq,
            last_seq=taken[-1].seq,
            payload=encode_block(samples),
        )
    )
    await tx.execute(
        delete(WaveformFrameRow).where(
            WaveformFrameRow.stream_id == stream.id,
            WaveformFrameRow.seq >= taken[0].seq,
            WaveformFrameRow.seq <= taken[-1].seq,
        )
    )
    return len(taken)


async def stored_bytes(tx: AsyncSession, stream_id: int) -> tuple[int, int]:
    """(bytes in chunks, bytes in frames not yet compacted) of one stream."""
    chunk_bytes = await tx.scalar(
        select(func.coalesce(func.sum(func.length(WaveformChunkRow.payload)), 0)).where(
            WaveformChunkRow.stream_id == stream_id
        )
    )
    frame_bytes = await tx.scalar(
        select(func.coalesce(func.sum(func.length(WaveformFrameRow.payload)), 0)).where(
            WaveformFrameRow.stream_id == stream_id
        )
    )
    return int(chunk_bytes or 0), int(frame_bytes or 0)
