"""ECG codec: bytes per sample of the waveform frames on the wire and of the chunks in the store.

What it measures, on every WFDB record in tests/data/physionet (and any record path given as argument):

- wire: the record cut into frames the way the gateway cuts it (``round(fs * ms / 1000)`` samples per signal
  per frame), each frame coded with ``teleconsult.domain.waveform.encode_frame``: bytes per sample with the
  frame header included (magic, stream id, seq, first sample, rate, per-signal gain/baseline/units). Two frame
  lengths: 200 ms (the gateway's default) and 40 ms (25 frames/s, the live-monitor rate of bench/ecg_relay.py).
- stored: what compaction leaves in the database: the 200 ms frames folded, oldest first, into chunks of at
  least ``--chunk-seconds`` (10 s, the server's default) and coded with ``encode_block`` (chunk payload
  bytes; the row's few integer columns are not counted).
- peers, same samples, same run:
    raw int16          2 bytes per sample (the samples as int16, no header)
    record .dat        the record's own WFDB signal files on disk (format 212 = 1.5, format 16 = 2.0)
    WFDB 212           1.5 (two 12-bit samples in 3 bytes), only when every value fits in 12 bits
    delta+zlib/frame   per frame: first value and differences as int16 (int32 when needed), zlib level 6,
                       plus the same frame header as ours (so the comparison is like for like)
    delta+zlib/chunk   the same per stored chunk (no header)
    FLAC               the whole record as 16-bit PCM via soundfile (libsndfile, default compression):
                       one multichannel file when the record has <= 8 signals (FLAC's limit), and the sum of
                       one file per signal; FLAC needs values that fit in int16, otherwise "n/a"
- round trip: every frame decoded with ``decode_frame`` and every chunk with ``decode_block`` is compared with
  ``wfdb.rdrecord(..., physical=False).d_signal``; any difference is reported as FAIL (exit status still 0
  unless --strict).
- speed: encode and decode microseconds per frame (mean over all frames of the record), ours and
  delta+zlib's, on this machine, single thread.

How to read the output: one table per record, one row per coding, "B/sample" = bytes divided by
(samples per signal x signals). Lower is better; the issue's goals are printed with PASS/MISS:
200 ms wire frames <= 0.8 B/sample on MIT-BIH record 100 (headers included); stored <= 0.6 on record 100 and
<= 1.0 on PTB s0010_re.

    .venv/bin/python bench/ecg_codec.py [RECORD ...] [--seconds S] [--chunk-seconds 10] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from teleconsult.domain.waveform import (  # noqa: E402
    FrameHeader,
    SignalScale,
    decode_block,
    decode_frame,
    encode_block,
    encode_frame,
    rate_to_mhz,
    read_header,
)

DATA = ROOT / "tests" / "data" / "physionet"
# (record name, what, limit): the goals.
GOALS = [
    ("100", "wire 200 ms", 0.8),
    ("100", "stored", 0.6),
    ("s0010_re", "stored", 1.0),
]


@dataclass
class Row:
    name: str
    bytes: int
    samples: int  # samples per signal x signals
    enc_us: float | None = None  # per frame (or per file for FLAC)
    dec_us: float | None = None
    roundtrip: str = ""  # "ok", "FAIL", "" (not checked)
    note: str = ""

    @property
    def per_sample(self) -> float:
        return self.bytes / self.samples if self.samples else float("nan")


@dataclass
class Result:
    record: str
    fs: float
    n: int
    n_signals: int
    rows: list[Row] = field(default_factory=list)


def load(path: str) -> tuple[str, Any, np.ndarray, list[Path]]:
    import wfdb

    base = str(Path(path).with_suffix("")) if path.endswith((".hea", ".dat")) else path
    record = wfdb.rdrecord(base, physical=False)
    data = np.asarray(record.d_signal, dtype=np.int64)
    folder = Path(base).parent
    dat_files = sorted({folder / f for f in record.file_name})
    return Path(base).name, record, data, dat_files


def scales_of(record: Any) -> tuple[SignalScale, ...]:
    return tuple(
        SignalScale(float(g), int(b), str(u or "NU")[:16])
        for g, b, u in zip(record.adc_gain, record.baseline, record.units, strict=True)
    )


def frames_of(data: np.ndarray, per_frame: int) -> list[tuple[int, np.ndarray]]:
    return [(start, data[start : start + per_frame]) for start in range(0, len(data), per_frame)]


def wire_rows(
    data: np.ndarray, fs: float, scales: tuple[SignalScale, ...], frame_ms: int
) -> tuple[list[Row], list[bytes]]:
    per_frame = max(1, round(fs * frame_ms / 1000))
    rate = rate_to_mhz(fs)
    pieces = frames_of(data, per_frame)
    total = data.size
    payloads: list[bytes] = []
    t0 = time.perf_counter()
    for seq, (start, piece) in enumerate(pieces):
        payloads.append(encode_frame(FrameHeader(1, seq, start, rate, len(piece), scales), piece))
    enc = (time.perf_counter() - t0) / len(pieces) * 1e6
    t0 = time.perf_counter()
    decoded = [decode_frame(p).samples for p in payloads]
    dec = (time.perf_counter() - t0) / len(pieces) * 1e6
    ok = np.array_equal(np.concatenate(decoded), data)
    headers = [read_header(p)[1] for p in payloads]
    ours = Row(
        f"ours, {frame_ms} ms frames ({per_frame} samples)",
        sum(map(len, payloads)),
        total,
        enc,
        dec,
        "ok" if ok else "FAIL",
        f"header {np.mean(headers):.0f} B/frame = {sum(headers) / total:.3f} B/sample",
    )
    # delta + zlib per frame, with the same header bytes as ours.
    t0 = time.perf_counter()
    blobs = [delta_zlib(piece) for _, piece in pieces]
    zenc = (time.perf_counter() - t0) / len(pieces) * 1e6
    t0 = time.perf_counter()
    back = [undelta_zlib(b, len(piece), data.shape[1]) for b, (_, piece) in zip(blobs, pieces, strict=True)]
    zdec = (time.perf_counter() - t0) / len(pieces) * 1e6
    zok = np.array_equal(np.concatenate(back), data)
    zrow = Row(
        f"delta+zlib, {frame_ms} ms frames",
        sum(map(len, blobs)) + sum(headers),
        total,
        zenc,
        zdec,
        "ok" if zok else "FAIL",
        "same header bytes as ours added",
    )
    return [ours, zrow], payloads


def stored_rows(data: np.ndarray, fs: float, payloads: list[bytes], chunk_seconds: float) -> list[Row]:
    """Fold the frames into chunks as teleconsult.storage.waveforms.compact does (at least min_samples each,
    the remainder as a last chunk, as when the stream has ended)."""
    min_samples = max(1, int(chunk_seconds * rate_to_mhz(fs) / 1000))
    chunks: list[np.ndarray] = []
    taken: list[np.ndarray] = []
    total = 0
    for payload in payloads:
        samples = decode_frame(payload).samples
        taken.append(samples)
        total += len(samples)
        if total >= min_samples:
            chunks.append(np.concatenate(taken))
            taken, total = [], 0
    if taken:
        chunks.append(np.concatenate(taken))
    t0 = time.perf_counter()
    blocks = [encode_block(c) for c in chunks]
    enc = (time.perf_counter() - t0) / len(chunks) * 1e6
    t0 = time.perf_counter()
    back = [decode_block(b, len(c), data.shape[1]) for b, c in zip(blocks, chunks, strict=True)]
    dec = (time.perf_counter() - t0) / len(chunks) * 1e6
    ok = np.array_equal(np.concatenate(back), data)
    zblobs = [delta_zlib(c) for c in chunks]
    return [
        Row(
            f"ours, stored {chunk_seconds:g} s chunks ({len(chunks)})",
            sum(map(len, blocks)),
            data.size,
            enc,
            dec,
            "ok" if ok else "FAIL",
            "per chunk µs",
        ),
        Row(f"delta+zlib, {chunk_seconds:g} s chunks", sum(map(len, zblobs)), data.size, note="no header"),
    ]


def delta_zlib(piece: np.ndarray) -> bytes:
    diffs = np.diff(piece, axis=0, prepend=np.zeros((1, piece.shape[1]), dtype=np.int64))
    dtype = np.int16 if diffs.size == 0 or (diffs.min() >= -32768 and diffs.max() <= 32767) else np.int32
    flag = b"\x02" if dtype is np.int16 else b"\x04"
    return flag + zlib.compress(diffs.astype(dtype).T.tobytes(), 6)


def undelta_zlib(blob: bytes, n: int, n_signals: int) -> np.ndarray:
    dtype = np.int16 if blob[0] == 2 else np.int32
    diffs = np.frombuffer(zlib.decompress(blob[1:]), dtype=dtype).reshape(n_signals, n).T.astype(np.int64)
    return np.cumsum(diffs, axis=0)


def peer_rows(data: np.ndarray, fs: float, dat_files: list[Path]) -> list[Row]:
    total = data.size
    rows = []
    fits16 = data.min() >= -32768 and data.max() <= 32767
    rows.append(Row("raw int16", 2 * total if fits16 else 4 * total, total, note="" if fits16 else "int32 needed"))
    dat = sum(f.stat().st_size for f in dat_files if f.exists())
    if dat:
        rows.append(Row("record's own .dat file(s)", dat, total, note=", ".join(f.name for f in dat_files)))
    if data.min() >= -2048 and data.max() <= 2047:
        rows.append(Row("WFDB format 212", -(-total * 3 // 2), total, note="12-bit values"))
    else:
        rows.append(Row("WFDB format 212", 0, 0, note="n/a: values exceed 12 bits"))
    rows.extend(flac_rows(data, fs, fits16))
    return rows


def flac_rows(data: np.ndarray, fs: float, fits16: bool) -> list[Row]:
    try:
        import soundfile as sf
    except ImportError:
        return [Row("FLAC", 0, 0, note="n/a: soundfile is not installed")]
    if not fits16:
        return [Row("FLAC", 0, 0, note="n/a: values exceed int16")]
    pcm = data.astype(np.int16)
    rate = max(1, round(fs))
    rows = []

    def flac(x: np.ndarray) -> tuple[int, float, float, bool]:
        buf = io.BytesIO()
        t0 = time.perf_counter()
        sf.write(buf, x, rate, format="FLAC", subtype="PCM_16")
        enc = time.perf_counter() - t0
        size = len(buf.getvalue())  # soundfile leaves the position wherever libsndfile last wrote
        buf.seek(0)
        t0 = time.perf_counter()
        back, _ = sf.read(buf, dtype="int16", always_2d=True)
        dec = time.perf_counter() - t0
        return size, enc, dec, np.array_equal(back, x.reshape(len(x), -1))

    if pcm.shape[1] <= 8:
        size, enc, dec, ok = flac(pcm)
        rows.append(
            Row(
                f"FLAC, whole record, {pcm.shape[1]} channels",
                size,
                data.size,
                enc * 1e6,
                dec * 1e6,
                "ok" if ok else "FAIL",
                "µs per whole file",
            )
        )
    else:
        rows.append(Row("FLAC, whole record, multichannel", 0, 0, note=f"n/a: {pcm.shape[1]} signals > 8"))
    sizes, encs, decs, oks = zip(*(flac(pcm[:, s]) for s in range(pcm.shape[1])), strict=True)
    rows.append(
        Row(
            "FLAC, whole record, one file per signal",
            sum(sizes),
            data.size,
            sum(encs) * 1e6,
            sum(decs) * 1e6,
            "ok" if all(oks) else "FAIL",
            "µs per whole record",
        )
    )
    return rows


def measure(path: str, seconds: float | None, chunk_seconds: float) -> Result:
    name, record, data, dat_files = load(path)
    fs = float(record.fs)
    if seconds:
        data = data[: int(seconds * fs)]
    result = Result(name, fs, len(data), data.shape[1])
    scales = scales_of(record)
    rows200, payloads200 = wire_rows(data, fs, scales, 200)
    rows40, _ = wire_rows(data, fs, scales, 40)
    result.rows = rows200 + rows40 + stored_rows(data, fs, payloads200, chunk_seconds)
    # The .dat size is for the whole record: only meaningful when the whole record is measured.
    peers = peer_rows(data, fs, dat_files if not seconds else [])
    result.rows += peers
    return result


def fmt_us(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def print_result(r: Result) -> None:
    print(
        f"\nRecord {r.record}: {r.n_signals} signals x {r.n} samples at {r.fs:g} Hz "
        f"({r.n / r.fs:.1f} s, {r.n * r.n_signals:,} samples)"
    )
    head = f"  {'coding':<44} {'bytes':>11} {'B/sample':>9} {'enc µs':>9} {'dec µs':>9} {'round trip':>10}  note"
    print(head)
    print("  " + "-" * (len(head) + 10))
    for row in r.rows:
        per = f"{row.per_sample:.3f}" if row.samples else "n/a"
        size = f"{row.bytes:,}" if row.samples else "-"
        print(
            f"  {row.name:<44} {size:>11} {per:>9} {fmt_us(row.enc_us):>9} {fmt_us(row.dec_us):>9} "
            f"{row.roundtrip or '-':>10}  {row.note}"
        )
    print("  enc/dec µs: per frame for frame rows, per chunk for stored rows, per whole record for FLAC")


def find_row(r: Result, what: str) -> Row | None:
    prefix = {"wire 200 ms": "ours, 200 ms", "wire 40 ms": "ours, 40 ms", "stored": "ours, stored"}[what]
    return next((row for row in r.rows if row.name.startswith(prefix)), None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Bytes per sample of waveform frames (wire) and compacted chunks (store), vs raw int16, "
        "WFDB 212, delta+zlib and FLAC; round-trip check; encode/decode µs.",
        epilog="Records default to every *.hea in tests/data/physionet.",
    )
    ap.add_argument("records", nargs="*", help="extra WFDB record paths (with or without .hea)")
    ap.add_argument("--only", action="store_true", help="measure only the records given, not the bundled ones")
    ap.add_argument("--seconds", type=float, default=None, help="only the first S seconds of each record")
    ap.add_argument("--chunk-seconds", type=float, default=10.0, help="compaction chunk length (server default 10)")
    ap.add_argument("--json", action="store_true", help="also print one JSON line with every figure")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a round trip fails")
    args = ap.parse_args(argv)

    paths = [] if args.only else [str(p.with_suffix("")) for p in sorted(DATA.glob("*.hea"))]
    paths += args.records
    if not paths:
        ap.error("no records")
    results = []
    for path in paths:
        try:
            results.append(measure(path, args.seconds, args.chunk_seconds))
        except Exception as exc:  # a record wfdb cannot read: say so, go on
            print(f"\n{path}: cannot measure ({type(exc).__name__}: {exc})")
            continue
        print_result(results[-1])

    print("\nSummary (bytes per sample, headers included on the wire)")
    print(f"  {'record':<12} {'wire 200ms':>10} {'wire 40ms':>10} {'stored':>8} {'int16':>6} {'212':>6} {'FLAC':>6}")
    for r in results:
        cells = []
        for what in ("wire 200 ms", "wire 40 ms", "stored"):
            row = find_row(r, what)
            cells.append(f"{row.per_sample:.3f}" if row else "-")
        f212 = next((x for x in r.rows if x.name == "WFDB format 212"), None)
        flac = [x for x in r.rows if x.name.startswith("FLAC") and x.samples]
        best_flac = min(flac, key=lambda x: x.per_sample) if flac else None
        print(
            f"  {r.record:<12} {cells[0]:>10} {cells[1]:>10} {cells[2]:>8} {2.0:>6.2f} "
            f"{(f'{f212.per_sample:.2f}' if f212 and f212.samples else 'n/a'):>6} "
            f"{(f'{best_flac.per_sample:.3f}' if best_flac else 'n/a'):>6}"
        )
    print("\nGoals")
    for record, what, limit in GOALS:
        r = next((x for x in results if x.record == record), None)
        row = find_row(r, what) if r else None
        if row is None:
            print(f"  {record:<10} {what:<12} <= {limit:.1f}: not measured")
            continue
        verdict = "PASS" if row.per_sample <= limit else "MISS"
        print(f"  {record:<10} {what:<12} <= {limit:.1f}: {row.per_sample:.3f}  {verdict}")
    failed = [(r.record, row.name) for r in results for row in r.rows if row.roundtrip == "FAIL"]
    print(
        "\nRound trip: " + ("every frame and chunk decodes to the record exactly" if not failed else f"FAIL {failed}")
    )
    if args.json:
        print(
            json.dumps(
                {
                    r.record: {
                        row.name: {
                            "bytes": row.bytes,
                            "per_sample": row.per_sample if row.samples else None,
                            "enc_us": row.enc_us,
                            "dec_us": row.dec_us,
                            "roundtrip": row.roundtrip,
                        }
                        for row in r.rows
                    }
                    for r in results
                }
            )
        )
    return 1 if (failed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
