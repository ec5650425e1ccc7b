"""Waveform streams: a source opens a stream for a consultation and sends frames; each frame is checked,
handed back to the transport for live relay at once, and acknowledged only when it is committed.

Frames are committed by one writer task per process in batches (group commit). The database decides the
order: a batch extends a stream only if the stream's stored ``next_seq`` is where the batch starts, so a
resend, a second process or a failed commit can never leave a hole or a sample twice. Compaction later
re-codes committed frames into chunks; reads stitch both (teleconsult.storage.waveforms)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import BigInteger, Integer, Table, column, insert, select, update, values

from teleconsult.clock import Clock
from teleconsult.domain import access
from teleconsult.domain.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from teleconsult.domain.heart_rate import derive_heart_rate
from teleconsult.domain.people import Actor
from teleconsult.domain.signals import SignalKind, describe
from teleconsult.domain.waveform import (
    FrameError,
    FrameHeader,
    check_frame,
    decode_frame,
    encode_frame,
    rate_to_mhz,
)
from teleconsult.services.notify import Notifier
from teleconsult.settings import Settings
from teleconsult.storage import repositories as repo
from teleconsult.storage import waveforms as store
from teleconsult.storage.db import Database
from teleconsult.storage.models import PatientRow, WaveformFrameRow, WaveformStreamRow
from teleconsult.storage.waveforms import StoredSignal

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamInfo:
    id: int
    patient_id: int
    consultation_id: int | None
    source_user_id: int | None
    label: str
    rate_mhz: int
    signals: tuple[StoredSignal, ...]
    started_at: datetime
    ended_at: datetime | None
    next_sample: int

    @property
    def sample_rate(self) -> float:
        return self.rate_mhz / 1000.0


@dataclass(frozen=True, slots=True)
class FrameAccepted:
    """A frame that passed every check. ``relay`` is False for a resend of a frame already accepted."""

    stream: StreamInfo
    seq: int
    relay: bool
    committed: asyncio.Future[None]


@dataclass
class _Live:
    """This process's view of a stream it is receiving. ``next_seq`` counts frames accepted (some may still
    be on their way to the database); ``committed_seq`` counts frames known to be stored."""

    info: StreamInfo
    next_seq: int
    next_sample: int
    committed_seq: int
    scales: tuple[Any, ...]
    pending: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    # Frames that arrived ahead of their turn (pipelined sends are handled concurrently), by seq.
    waiting: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    recent: deque[tuple[int, bytes]] = field(default_factory=deque)
    hr_due_at: float = 0.0
    hr_running: bool = False


@dataclass(frozen=True, slots=True)
class _Write:
    live: _Live
    seq: int
    first_sample: int
    n_samples: int
    payload: bytes
    done: asyncio.Future[None]


class WaveformService:
    def __init__(self, db: Database, clock: Clock, settings: Settings, notifier: Notifier) -> None:
        self._db = db
        self._clock = clock
        self._settings = settings
        self.notifier = notifier
        self._live: dict[int, _Live] = {}
        self._loading: dict[int, asyncio.Lock] = {}
        self._queue: asyncio.Queue[_Write] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writer: asyncio.Task[None] | None = None
        self._hr_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="heart-rate")

    # -- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer and the compactor (the server calls this; the CLI importer writes directly)."""
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write_loop())
            self._spawn(self._compact_loop())

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._hr_pool.shutdown(wait=False, cancel_futures=True)

    # -- opening and closing ----------------------------------------------------------------------------------

    async def open_stream(
        self,
        actor: Actor,
        consultation_id: int,
        source_key: str,
        label: str,
        sample_rate: float,
        signals: Sequence[StoredSignal],
        *,
        source: str,
    ) -> tuple[StreamInfo, int]:
        """Open (or resume, by ``source_key``) a stream; returns it and the next frame number to send."""
        rate_mhz = rate_to_mhz(sample_rate)
        signals = list(signals)
        signals_json = store.signals_json(signals)
        now = self._clock.now()
        async with self._db.transaction() as tx:
            consultation = await repo.get_consultation(tx, consultation_id)
            if consultation is None:
                raise NotFound("no such consultation")
            allowed = access.can_stream_signals(actor, repo.to_consultation(consultation))
            if allowed:
                row = (
                    await tx.execute(
                        select(WaveformStreamRow).where(
                            WaveformStreamRow.patient_id == consultation.patient_id,
                            WaveformStreamRow.source_key == source_key,
                        )
                    )
                ).scalar_one_or_none()
                if row is None:
                    row = WaveformStreamRow(
                        patient_id=consultation.patient_id,
                        consultation_id=consultation_id,
                        source_user_id=actor.user_id,
                        source_key=source_key,
                        label=label,
                        rate_mhz=rate_mhz,
                        signals=signals_json,
                        started_at=now,
                        next_seq=0,
                        next_sample=0,
                    )
                    tx.add(row)
                    await tx.flush()
                elif (
                    row.consultation_id != consultation_id
                    or row.source_user_id != actor.user_id
                    or row.rate_mhz != rate_mhz
                    or store.signals_of(row) != signals
                ):
                    raise Conflict("this source key belongs to a different stream")
                else:
                    row.ended_at = None
                repo.audit(
                    tx,
                    at=now,
                    actor_user_id=actor.user_id,
                    action="waveform.open",
                    entity_type="waveform_stream",
                    entity_id=row.id,
                    patient_id=row.patient_id,
                    outcome="success",
                    source=source,
                )
                info = _info(row)
                next_seq = row.next_seq
        if not allowed:
            await self._deny(actor, "waveform.open", consultation.patient_id, source)
        await self.notifier.stream_opened(info)
        return info, next_seq

    async def close_stream(self, actor: Actor, stream_id: int, *, source: str) -> StreamInfo:
        async with self._db.transaction() as tx:
            row = await tx.get(WaveformStreamRow, stream_id)
            if row is None or row.source_user_id != actor.user_id:
                raise NotFound("no such stream of yours")
            row.ended_at = self._clock.now()
            repo.audit(
                tx,
                at=row.ended_at,
                actor_user_id=actor.user_id,
                action="waveform.close",
                entity_type="waveform_stream",
                entity_id=row.id,
                patient_id=row.patient_id,
                outcome="success",
                source=source,
            )
            info = _info(row)
        self._live.pop(stream_id, None)
        await self.notifier.stream_closed(info)
        return info

    # -- frames -----------------------------------------------------------------------------------------------

    async def accept_frame(self, user_id: int, open_streams: set[int], payload: bytes) -> FrameAccepted:
        """Check one frame from a source; queue it for the store. Raises FrameError (or another
        DomainError) with a message for the source; nothing is stored then."""
        if len(payload) > self._settings.max_frame_bytes:
            raise FrameError(f"frame larger than {self._settings.max_frame_bytes} bytes")
        header = check_frame(payload, self._settings.max_frame_samples)
        if header.stream_id not in open_streams:
            raise PermissionDenied("unknown stream: open it on this connection first")
        live = self._live.get(header.stream_id) or await self._load(header.stream_id)
        if live.info.source_user_id != user_id or live.info.ended_at is not None:
            raise PermissionDenied("this stream is not open for you")
        _check_against_stream(header, live)
        if header.seq > live.next_seq:
            live = await self._wait_for_turn(live, header.seq)
        if header.seq < live.next_seq:
            return FrameAccepted(live.info, header.seq, False, self._commit_of(live, header.seq))
        if header.first_sample != live.next_sample:
            raise FrameError(f"first sample {header.first_sample} does not follow the stream ({live.next_sample})")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        live.pending[header.seq] = done
        live.next_seq += 1
        live.next_sample += header.n_samples
        self._queue.put_nowait(_Write(live, header.seq, header.first_sample, header.n_samples, payload, done))
        self._remember(live, header, payload)
        following = live.waiting.pop(live.next_seq, None)
        if following is not None and not following.done():
            following.set_result(None)
        return FrameAccepted(live.info, header.seq, True, done)

    async def _wait_for_turn(self, live: _Live, seq: int) -> _Live:
        """Hold a frame that overtook its predecessors (a pipelining source, concurrent handlers) briefly;
        a frame whose predecessors never come is a sequence gap."""
        gap = FrameError(f"sequence gap: frame {seq} sent, frame {live.next_seq} expected next")
        if seq - live.next_seq > self._settings.reorder_window_frames or seq in live.waiting:
            raise gap
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        live.waiting[seq] = turn
        try:
            async with asyncio.timeout(self._settings.reorder_wait_s):
                await turn
        except TimeoutError:
            raise gap from None
        finally:
            if live.waiting.get(seq) is turn:
                del live.waiting[seq]
        if self._live.get(live.info.id) is not live:
            raise Conflict("the stream was reset; reopen it and resend")
        return live

    def _commit_of(self, live: _Live, seq: int) -> asyncio.Future[None]:
        pending = live.pending.get(seq)
        if pending is not None:
            return pending
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def _load(self, stream_id: int) -> _Live:
        lock = self._loading.setdefault(stream_id, asyncio.Lock())
        async with lock:
            live = self._live.get(stream_id)
            if live is not None:
                return live
            async with self._db.transaction() as tx:
                row = await tx.get(WaveformStreamRow, stream_id)
                if row is None:
                    raise PermissionDenied("unknown stream")
                info = _info(row)
            scales = tuple(s.scale for s in info.signals)
            live = _Live(info, row.next_seq, row.next_sample, row.next_seq, scales)
            live.hr_due_at = self._clock.monotonic() + self._settings.derived_hr_interval_s
            self._live[stream_id] = live
            return live

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < self._settings.ingest_batch_frames:
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("could not store a batch of %d frames", len(batch))
                self._fail(batch, exc)

    async def _write(self, batch: list[_Write]) -> None:
        by_stream: dict[int, list[_Write]] = {}
        for item in batch:
            by_stream.setdefault(item.live.info.id, []).append(item)
        now = self._clock.now()
        stored: list[_Write] = []
        refused: list[_Write] = []
        rows: list[dict[str, Any]] = []
        moves: dict[int, tuple[int, int, int]] = {}
        for stream_id, items in by_stream.items():
            items.sort(key=lambda w: w.seq)
            first, last = items[0], items[-1]
            if all(b.seq == a.seq + 1 for a, b in zip(items, items[1:], strict=False)):
                moves[stream_id] = (first.seq, last.seq + 1, last.first_sample + last.n_samples)
        async with self._db.transaction() as tx:
            advanced = await _advance(tx, moves)
            for stream_id, items in by_stream.items():
                if stream_id not in advanced:
                    refused.extend(items)
                    continue
                rows.extend(
                    {
                        "stream_id": stream_id,
                        "seq": w.seq,
                        "first_sample": w.first_sample,
                        "n_samples": w.n_samples,
                        "payload": w.payload,
                        "received_at": now,
                    }
                    for w in items
                )
                stored.extend(items)
            if rows:
                # Core executemany, not ORM objects: the unit of work costs more than the insert itself.
                await tx.execute(insert(WaveformFrameRow), rows)
        for item in stored:
            item.live.committed_seq = max(item.live.committed_seq, item.seq + 1)
            item.live.pending.pop(item.seq, None)
            if not item.done.done():
                item.done.set_result(None)
            self._maybe_derive_heart_rate(item.live)
        if refused:
            self._fail(refused, Conflict("the stream moved on elsewhere; reopen it and resend"))

    def _fail(self, items: list[_Write], exc: Exception) -> None:
        for item in items:
            # Forget what this process believed; the next frame reloads the truth from the store.
            self._live.pop(item.live.info.id, None)
            item.live.pending.pop(item.seq, None)
            if not item.done.done():
                item.done.set_exception(exc)
                item.done.exception()  # retrieved here: a source that hung up is not waiting for it

    # -- reading ----------------------------------------------------------------------------------------------

    async def streams_of_consultation(self, actor: Actor, consultation_id: int) -> list[StreamInfo]:
        async with self._db.transaction() as tx:
            consultation = await repo.get_consultation(tx, consultation_id)
            if consultation is None:
                raise NotFound("no such consultation")
            if not access.can_join_room(actor, repo.to_consultation(consultation)):
                raise PermissionDenied("you are not a participant of this consultation")
            rows = await tx.execute(
                select(WaveformStreamRow)
                .where(WaveformStreamRow.consultation_id == consultation_id)
                .order_by(WaveformStreamRow.id)
            )
            return [_info(r) for r in rows.scalars()]

    async def streams_of_patient(self, actor: Actor, patient_id: int, *, source: str) -> list[StreamInfo]:
        async with self._db.transaction() as tx:
            allowed = await self._may_read(tx, actor, patient_id, "waveform.list", source)
            if allowed:
                rows = await tx.execute(
                    select(WaveformStreamRow)
                    .where(WaveformStreamRow.patient_id == patient_id)
                    .order_by(WaveformStreamRow.started_at)
                )
                return [_info(r) for r in rows.scalars()]
        await self._deny(actor, "waveform.list", patient_id, source)
        raise AssertionError("unreachable")

    async def samples(
        self, actor: Actor, stream_id: int, start: int, count: int, *, source: str
    ) -> tuple[StreamInfo, int, NDArray[np.int64]]:
        """Stored samples of one stream for the record: (stream, first sample returned, samples)."""
        async with self._db.transaction() as tx:
            row = await tx.get(WaveformStreamRow, stream_id)
            if row is None:
                raise NotFound("no such stream")
            patient_id = row.patient_id
            allowed = await self._may_read(tx, actor, patient_id, "waveform.read", source)
            if allowed:
                info = _info(row)
                limit = int(self._settings.max_read_seconds * info.sample_rate)
                start = max(0, min(start, row.next_sample))
                data = await store.read_samples(tx, row, start, min(count, limit))
                return info, start, data
        await self._deny(actor, "waveform.read", patient_id, source)
        raise AssertionError("unreachable")

    async def recent(self, actor: Actor, consultation_id: int, seconds: float) -> list[tuple[StreamInfo, bytes]]:
        """The last ``seconds`` of every stream of the consultation, one frame each, for a viewer who joins
        late or comes back after a dropped link (their join is audited)."""
        streams = await self.streams_of_consultation(actor, consultation_id)
        out = []
        async with self._db.transaction() as tx:
            for info in streams:
                row = await tx.get(WaveformStreamRow, info.id)
                assert row is not None
                span = int(seconds * info.sample_rate)
                start = max(0, row.next_sample - span)
                data = await store.read_samples(tx, row, start, span)
                if len(data):
                    header = FrameHeader(
                        info.id, row.next_seq, start, info.rate_mhz, len(data), tuple(s.scale for s in info.signals)
                    )
                    out.append((_info(row), encode_frame(header, data)))
        return out

    async def _may_read(self, tx: Any, actor: Actor, patient_id: int, action: str, source: str) -> bool:
        """Apply the record access policy; audit a success here. A denial is audited by the caller after
        this transaction ends (SQLite has one writer: a second transaction inside this one would wait)."""
        patient = await tx.get(PatientRow, patient_id)
        if patient is None:
            raise NotFound("no such patient")
        if not await repo.may_view_record(tx, actor, patient):
            return False
        repo.audit(
            tx,
            at=self._clock.now(),
            actor_user_id=actor.user_id,
            action=action,
            entity_type="patient",
            entity_id=patient_id,
            patient_id=patient_id,
            outcome="success",
            source=source,
        )
        return True

    # -- import -----------------------------------------------------------------------------------------------

    async def import_samples(
        self,
        patient_id: int,
        source_key: str,
        label: str,
        sample_rate: float,
        signals: Sequence[StoredSignal],
        samples: NDArray[np.integer],
        *,
        frame_seconds: float = 1.0,
        source: str,
    ) -> StreamInfo:
        """Store a recording (an existing WFDB record) for a patient through the same frame codec and store
        as a live stream, then compact it. Importing the same ``source_key`` again changes nothing."""
        rate_mhz = rate_to_mhz(sample_rate)
        data = np.asarray(samples, dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != len(signals) or not len(data):
            raise ValidationFailed("the recording has no samples")
        async with self._db.transaction() as tx:
            if await tx.get(PatientRow, patient_id) is None:
                raise NotFound("no such patient")
            row = (
                await tx.execute(
                    select(WaveformStreamRow).where(
                        WaveformStreamRow.patient_id == patient_id, WaveformStreamRow.source_key == source_key
                    )
                )
            ).scalar_one_or_none()
            if row is not None:
                return _info(row)
            now = self._clock.now()
            row = WaveformStreamRow(
                patient_id=patient_id,
                consultation_id=None,
                source_user_id=None,
                source_key=source_key,
                label=label,
                rate_mhz=rate_mhz,
                signals=store.signals_json(signals),
                started_at=now,
                ended_at=now,
                next_seq=0,
                next_sample=0,
            )
            tx.add(row)
            await tx.flush()
            step = max(1, int(frame_seconds * sample_rate))
            scales = tuple(s.scale for s in signals)
            for seq, first in enumerate(range(0, len(data), step)):
                piece = data[first : first + step]
                header = FrameHeader(row.id, seq, first, rate_mhz, len(piece), scales)
                payload = encode_frame(header, piece)
                check_frame(payload, max(self._settings.max_frame_samples, len(piece)))
                tx.add(
                    WaveformFrameRow(
                        stream_id=row.id,
                        seq=seq,
                        first_sample=first,
                        n_samples=len(piece),
                        payload=payload,
                        received_at=now,
                    )
                )
                row.next_seq = seq + 1
                row.next_sample = first + len(piece)
            repo.audit(
                tx,
                at=now,
                actor_user_id=None,
                action="waveform.import",
                entity_type="waveform_stream",
                entity_id=row.id,
                patient_id=patient_id,
                outcome="success",
                source=source,
            )
            stream_id = row.id
        while await self.compact_stream(stream_id):
            pass
        async with self._db.transaction() as tx:
            final = await tx.get(WaveformStreamRow, stream_id)
            assert final is not None
            return _info(final)

    # -- compaction -------------------------------------------------------------------------------------------

    async def compact_stream(self, stream_id: int) -> int:
        async with self._db.transaction() as tx:
            row = await tx.get(WaveformStreamRow, stream_id)
            if row is None:
                return 0
            min_samples = int(self._settings.chunk_seconds * row.rate_mhz / 1000)
            return await store.compact(tx, row, max(1, min_samples))

    async def compact_all(self) -> int:
        """One pass over every stream with frames waiting; returns the frames folded."""
        async with self._db.transaction() as tx:
            ids = (await tx.execute(select(WaveformFrameRow.stream_id).distinct())).scalars().all()
        folded = 0
        for stream_id in ids:
            try:
                while moved := await self.compact_stream(stream_id):
                    folded += moved
            except Exception:
                # Another process may be compacting the same stream; it will be folded next pass.
                log.warning("compaction of stream %s deferred", stream_id, exc_info=True)
        return folded

    async def _compact_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.compaction_interval_s)
            try:
                await self.compact_all()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("compaction pass failed")

    # -- derived heart rate -----------------------------------------------------------------------------------

    def _remember(self, live: _Live, header: FrameHeader, payload: bytes) -> None:
        """Keep the last window of frames of streams with an ECG lead, for heart-rate derivation."""
        if self._settings.derived_hr_interval_s <= 0 or _ecg_lead(live.info) is None:
            return
        live.recent.append((header.first_sample, payload))
        keep_from = live.next_sample - int(self._settings.derived_hr_window_s * live.info.sample_rate)
        while live.recent and live.recent[0][0] < keep_from:
            live.recent.popleft()

    def _maybe_derive_heart_rate(self, live: _Live) -> None:
        if live.hr_running or not live.recent or self._clock.monotonic() < live.hr_due_at:
            return
        live.hr_running = True
        live.hr_due_at = self._clock.monotonic() + self._settings.derived_hr_interval_s
        self._spawn(self._derive_heart_rate(live, list(live.recent)))

    async def _derive_heart_rate(self, live: _Live, frames: list[tuple[int, bytes]]) -> None:
        try:
            lead = _ecg_lead(live.info)
            assert lead is not None
            signal = live.info.signals[lead]
            loop = asyncio.get_running_loop()
            bpm = await loop.run_in_executor(self._hr_pool, _heart_rate_of, frames, lead, signal, live.info.sample_rate)
            window = (live.next_sample - frames[0][0]) / live.info.sample_rate
            await self.notifier.heart_rate_derived(live.info, bpm, describe(signal.name).label, window)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("heart-rate derivation failed for stream %s", live.info.id)
        finally:
            live.hr_running = False

    # -- helpers ----------------------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deny(self, actor: Actor, action: str, patient_id: int | None, source: str) -> None:
        async with self._db.transaction() as tx:
            repo.audit(
                tx,
                at=self._clock.now(),
                actor_user_id=actor.user_id,
                action=action,
                entity_type="patient",
                entity_id=patient_id,
                patient_id=patient_id,
                outcome="denied",
                source=source,
            )
        raise PermissionDenied("you are not allowed to reach this patient's monitor signals")


async def _advance(tx: Any, moves: dict[int, tuple[int, int, int]]) -> set[int]:
    """Move each stream's stored counters from ``from_seq`` to ``to_seq``, only where the stream is still at
    ``from_seq``; one statement for the whole batch. Returns the streams that moved."""
    if not moves:
        return set()
    rows = values(
        column("id", Integer),
        column("from_seq", BigInteger),
        column("to_seq", BigInteger),
        column("to_sample", BigInteger),
        name="moving",
    ).data([(stream_id, *move) for stream_id, move in moves.items()])
    moving = rows.cte("moving")  # a CTE: SQLite does not take column aliases on a VALUES subquery
    streams = cast(Table, WaveformStreamRow.__table__)
    result = await tx.execute(
        update(streams)
        .where(streams.c.id == moving.c.id, streams.c.next_seq == moving.c.from_seq)
        .values(next_seq=moving.c.to_seq, next_sample=moving.c.to_sample)
        .returning(streams.c.id)
    )
    return {int(row[0]) for row in result}


def _check_against_stream(header: FrameHeader, live: _Live) -> None:
    if header.rate_mhz != live.info.rate_mhz:
        raise FrameError(f"sample rate {header.sample_rate} Hz differs from the stream's {live.info.sample_rate} Hz")
    if header.n_signals != len(live.scales):
        raise FrameError(f"frame has {header.n_signals} signals, the stream {len(live.scales)}")
    for got, want in zip(header.scales, live.scales, strict=True):
        if got.baseline != want.baseline or got.units != want.units or abs(got.gain - want.gain) > 1e-6 * want.gain:
            raise FrameError("a signal's gain, baseline or units differ from what the stream declared")


def _ecg_lead(info: StreamInfo) -> int | None:
    for index, signal in enumerate(info.signals):
        if describe(signal.name).kind is SignalKind.ECG:
            return index
    return None


def _heart_rate_of(
    frames: list[tuple[int, bytes]], lead: int, signal: StoredSignal, sample_rate: float
) -> float | None:
    digital = np.concatenate([decode_frame(payload).samples[:, lead] for _, payload in frames])
    return derive_heart_rate((digital - signal.baseline) / signal.gain, sample_rate)


def _info(row: WaveformStreamRow) -> StreamInfo:
    return StreamInfo(
        id=row.id,
        patient_id=row.patient_id,
        consultation_id=row.consultation_id,
        source_user_id=row.source_user_id,
        label=row.label,
        rate_mhz=row.rate_mhz,
        signals=tuple(store.signals_of(row)),
        started_at=row.started_at,
        ended_at=row.ended_at,
        next_sample=row.next_sample,
    )
