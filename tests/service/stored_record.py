"""Putting vital signs and waveform streams in a patient's record straight through the storage layer, the way
the stores keep them (frames as received, some compacted into chunks), for tests that read records back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import wfdb
from numpy.typing import NDArray

from teleconsult.domain.waveform import FrameHeader, SignalScale, encode_frame, rate_to_mhz
from teleconsult.services import Services
from teleconsult.storage.models import VitalSignRow, WaveformFrameRow, WaveformStreamRow
from teleconsult.storage.waveforms import StoredSignal, compact, signals_json

PHYSIONET = Path(__file__).resolve().parents[1] / "data" / "physionet"


@dataclass(frozen=True)
class Recording:
    label: str
    rate: float
    signals: list[StoredSignal]
    samples: NDArray[np.int64]  # (n, signals), digital


@cache
def physionet(name: str, sampto: int | None = None) -> Recording:
    record = wfdb.rdrecord(str(PHYSIONET / name), physical=False, sampto=sampto)
    signals = [
        StoredSignal(name=n, units=u, gain=float(g), baseline=int(b))
        for n, u, g, b in zip(record.sig_name, record.units, record.adc_gain, record.baseline, strict=True)
    ]
    return Recording(name, float(record.fs), signals, record.d_signal.astype(np.int64))


async def store_stream(
    services: Services,
    recording: Recording,
    *,
    patient_id: int,
    source_user_id: int,
    started_at: datetime,
    consultation_id: int | None = None,
    frame_seconds: float = 10.0,
    compact_samples: int = 0,
    ended: bool = True,
) -> int:
    """Store the recording as a stream of frames; fold the first ``compact_samples`` into chunks."""
    rate_mhz = rate_to_mhz(recording.rate)
    per_frame = max(1, round(frame_seconds * recording.rate))
    scales = tuple(SignalScale(gain=s.gain, baseline=s.baseline, units=s.units) for s in recording.signals)
    n = len(recording.samples)
    async with services.db.transaction() as tx:
        stream = WaveformStreamRow(
            patient_id=patient_id,
            consultation_id=consultation_id,
            source_user_id=source_user_id,
            source_key=f"test-{recording.label}-{started_at.timestamp()}",
            label=recording.label,
            rate_mhz=rate_mhz,
            signals=signals_json(recording.signals),
            started_at=started_at,
            ended_at=started_at + timedelta(seconds=n / recording.rate) if ended else None,
            next_seq=0,
            next_sample=0,
        )
        tx.add(stream)
        await tx.flush()
        for seq, first in enumerate(range(0, n, per_frame)):
            block = recording.samples[first : first + per_frame]
            header = FrameHeader(stream.id, seq, first, rate_mhz, len(block), scales)
            tx.add(
                WaveformFrameRow(
                    stream_id=stream.id,
                    seq=seq,
                    first_sample=first,
                    n_samples=len(block),
                    payload=encode_frame(header, block),
                    received_at=started_at,
                )
            )
            stream.next_seq, stream.next_sample = seq + 1, first + len(block)
        stream_id = stream.id
    while compact_samples > 0:
        async with services.db.transaction() as tx:
            row = await tx.get(WaveformStreamRow, stream_id)
            assert row is not None
            folded = await compact(tx, row, min(compact_samples, 5 * per_frame))
        assert folded > 0
        compact_samples -= folded * per_frame
    return stream_id


# (kind, value, value2, unit)
VITALS = [
    ("hr", 112.0, None, "/min"),
    ("spo2", 91.0, None, "%"),
    ("bp", 92.0, 58.0, "mm[Hg]"),
    ("rr", 24.0, None, "/min"),
    ("temp", 38.4, None, "Cel"),
]


async def store_vitals(
    services: Services, *, patient_id: int, recorded_by: int, at: datetime, consultation_id: int | None = None
) -> list[int]:
    """One reading of every kind, a minute apart; their ids in that order."""
    rows = []
    async with services.db.transaction() as tx:
        for i, (kind, value, value2, unit) in enumerate(VITALS):
            row = VitalSignRow(
                patient_id=patient_id,
                consultation_id=consultation_id,
                kind=kind,
                value=value,
                value2=value2,
                unit=unit,
                observed_at=at + timedelta(minutes=i),
                recorded_at=at + timedelta(minutes=i),
                source="manual",
                recorded_by_user_id=recorded_by,
                stream_id=None,
                client_id=f"vital-{kind}-{at.timestamp():.0f}",
            )
            tx.add(row)
            rows.append(row)
        await tx.flush()
        return [r.id for r in rows]
