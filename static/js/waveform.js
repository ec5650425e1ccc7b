// Waveform frames (docs/waveform-format.md) decoded in the browser. A line-by-line mirror of
// teleconsult/domain/waveform.py (read_header, decode_block): a frame the server rejects is rejected here too,
// with the same message where possible, so a problem reads the same in the logs of both sides.
//
// Values are JavaScript Numbers, not 32-bit bitwise results: a Rice value (q << k) reaches 2^35, an escape
// field is k + 40 bits wide, and a predictor sum passes 2^31 on the way back to a sample.

const MAGIC = 0xec;
const VERSION = 1;
const MAX_SIGNALS = 64;
const MAX_ORDER = 3;
const ESCAPE_Q = 32;
const ESCAPE_BITS = 40;
const MAX_RICE_K = 30;
const MIN_RATE_MHZ = 1;
const MAX_RATE_MHZ = 20000000;
const SAMPLE_MIN = -2147483648;
const SAMPLE_MAX = 2147483647;
const MAX_PARTITION = 1 << 20;
const DEFAULT_MAX_SAMPLES = 1 << 24;
const UNIT_STRING = 0xff;
const POW2 = Array.from({ length: MAX_RICE_K + 1 }, (_, k) => 2 ** k);

export const UNIT_NAMES = Object.freeze({
  1: "mV",
  2: "uV",
  3: "mmHg",
  4: "%",
  5: "bpm",
  6: "NU",
  7: "degC",
  8: "Ohm",
  9: "L/min",
  10: "mL",
  11: "cmH2O",
  12: "V",
});

const utf8 = new TextDecoder("utf-8"); // replaces bad bytes, as Python's errors="replace"

export class FrameError extends Error {
  constructor(message) {
    super(message);
    this.name = "FrameError";
  }
}

function toBytes(input) {
  if (input instanceof Uint8Array) return input;
  if (input instanceof ArrayBuffer) return new Uint8Array(input);
  if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  throw new FrameError("a frame must be an ArrayBuffer or a Uint8Array");
}

class Reader {
  constructor(bytes, pos = 0) {
    this.bytes = bytes;
    this.pos = pos;
  }

  u8() {
    if (this.pos >= this.bytes.length) throw new FrameError("frame is truncated");
    return this.bytes[this.pos++];
  }

  uvarint() {
    let value = 0;
    let scale = 1; // 2^shift, kept as a Number so that shifts past 31 bits stay exact
    for (let shift = 0; ; shift += 7) {
      if (shift > 63) throw new FrameError("integer field is too long");
      const byte = this.u8();
      value += (byte & 0x7f) * scale;
      if (!(byte & 0x80)) break;
      scale *= 128;
    }
    // Python has arbitrary precision; past 2^53 a Number would silently round, so refuse instead.
    if (!Number.isSafeInteger(value)) throw new FrameError("integer field is too large");
    return value;
  }

  svarint() {
    return unzigzag(this.uvarint());
  }

  f32() {
    if (this.pos + 4 > this.bytes.length) throw new FrameError("frame is truncated");
    const view = new DataView(this.bytes.buffer, this.bytes.byteOffset + this.pos, 4);
    this.pos += 4;
    return view.getFloat32(0, true);
  }

  take(n) {
    if (n < 0 || this.pos + n > this.bytes.length) throw new FrameError("frame is truncated");
    const chunk = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return chunk;
  }
}

function unzigzag(u) {
  // (u >> 1) ^ -(u & 1) without 32-bit operators: u may be as wide as 40 bits.
  return u % 2 === 0 ? u / 2 : -(u + 1) / 2;
}

/** The header fields and where the sample block starts; no sample is decoded. */
export function readHeader(input, maxSamples = DEFAULT_MAX_SAMPLES) {
  const bytes = toBytes(input);
  const r = new Reader(bytes);
  if (r.u8() !== MAGIC) throw new FrameError("not a waveform frame (bad magic byte)");
  const version = r.u8();
  if (version !== VERSION) throw new FrameError(`unsupported frame version ${version}`);
  const streamId = r.uvarint();
  const seq = r.uvarint();
  const firstSample = r.uvarint();
  const rateMhz = r.uvarint();
  const nSamples = r.uvarint();
  const nSignals = r.u8();
  if (!(nSamples >= 1 && nSamples <= maxSamples)) {
    throw new FrameError(`a frame must carry 1 to ${maxSamples} samples per signal`);
  }
  const scales = [];
  for (let i = 0; i < nSignals; i++) {
    const gain = r.f32();
    const baseline = r.svarint();
    const code = r.u8();
    let units;
    if (code === UNIT_STRING) units = utf8.decode(r.take(r.u8()));
    else if (Object.prototype.hasOwnProperty.call(UNIT_NAMES, code)) units = UNIT_NAMES[code];
    else throw new FrameError(`unknown unit code ${code}`);
    scales.push({ gain, baseline, units });
  }
  const header = { streamId, seq, firstSample, rateMhz, sampleRate: rateMhz / 1000, nSamples, scales };
  checkHeader(header);
  return { header, offset: r.pos };
}

function checkHeader(h) {
  if (h.streamId < 1) throw new FrameError("stream id must be positive");
  if (!(h.scales.length >= 1 && h.scales.length <= MAX_SIGNALS)) {
    throw new FrameError(`a frame must carry 1 to ${MAX_SIGNALS} signals`);
  }
  if (!(h.rateMhz >= MIN_RATE_MHZ && h.rateMhz <= MAX_RATE_MHZ)) {
    throw new FrameError("sample rate must be between 0.001 Hz and 20 kHz");
  }
  for (const scale of h.scales) {
    if (!(Number.isFinite(scale.gain) && scale.gain > 0)) throw new FrameError("gain must be a positive number");
  }
}

/**
 * Decode one frame. Returns {streamId, seq, firstSample, sampleRate (Hz), rateMhz, nSamples,
 * scales: [{gain, baseline, units}], samples: [Int32Array per signal]}. Throws FrameError when malformed.
 */
export function decodeFrame(input, maxSamples = DEFAULT_MAX_SAMPLES) {
  const bytes = toBytes(input);
  const { header, offset } = readHeader(bytes, maxSamples);
  const samples = decodeBlock(bytes.subarray(offset), header.nSamples, header.scales.length);
  return { ...header, samples };
}

/** physical = (digital - baseline) / gain, in the signal's units. */
export function physical(sample, scale) {
  return (sample - scale.baseline) / scale.gain;
}

/** A sample block (also the body of stored chunks): [Int32Array per signal] of n samples. */
export function decodeBlock(input, n, nSignals) {
  const bytes = toBytes(input);
  const r = new Reader(bytes);
  const partition = r.uvarint();
  if (!(partition >= 1 && partition <= MAX_PARTITION)) throw new FrameError("bad partition size");
  const signals = [];
  let total = 0;
  for (let s = 0; s < nSignals; s++) {
    const order = r.u8();
    if (order > MAX_ORDER || order > n) throw new FrameError("bad predictor order");
    const warmup = [];
    for (let i = 0; i < order; i++) warmup.push(r.svarint());
    const m = n - order;
    const ks = r.take(Math.ceil(m / partition));
    for (const k of ks) if (k > MAX_RICE_K) throw new FrameError("bad Rice parameter");
    signals.push({ order, warmup, ks, m });
    total += m;
  }
  const unaryLength = r.uvarint();
  const escapes = r.uvarint();
  const unary = r.take(unaryLength);
  const q = unpackUnary(unary, total);
  // Widths of the remainder fields, and the section's exact length, are known before reading it.
  const widths = new Uint8Array(total);
  let bits = 0;
  let escaped = 0;
  let j = 0;
  for (const sig of signals) {
    for (let i = 0; i < sig.m; i++, j++) {
      let w = sig.ks[Math.floor(i / partition)];
      if (q[j] === ESCAPE_Q) {
        w += ESCAPE_BITS;
        escaped += 1;
      }
      widths[j] = w;
      bits += w;
    }
  }
  if (escaped !== escapes) throw new FrameError("frame's escape count does not match its codes");
  const rem = bytes.subarray(r.pos);
  if (rem.length !== Math.ceil(bits / 8)) throw new FrameError("frame length does not match its sample count");
  const residuals = readResiduals(rem, q, widths, bits);
  const out = [];
  let start = 0;
  for (const sig of signals) {
    out.push(integrate(sig.warmup, residuals, start, sig.m));
    start += sig.m;
  }
  return out;
}

/** q zeros then a one, for every value; exactly `count` codes, zero-padded to a byte. */
function unpackUnary(buf, count) {
  const q = new Uint8Array(count);
  if (count === 0) {
    if (buf.length) throw new FrameError("frame length does not match its sample count");
    return q;
  }
  let found = 0;
  let run = 0;
  let lastOne = -1;
  let bad = false;
  for (let i = 0; i < buf.length; i++) {
    let byte = buf[i];
    if (byte === 0) {
      run += 8;
      continue;
    }
    let pos = 0; // next bit of this byte, 0 = most significant
    while (byte) {
      const one = Math.clz32(byte) - 24;
      run += one - pos;
      if (found < count) q[found] = run < 255 ? run : 255;
      if (run > ESCAPE_Q) bad = true;
      found += 1;
      run = 0;
      lastOne = i * 8 + one;
      pos = one + 1;
      byte &= (1 << (7 - one)) - 1;
    }
    run += 8 - pos;
  }
  if (found !== count || buf.length !== Math.ceil((lastOne + 1) / 8)) {
    throw new FrameError("frame length does not match its sample count");
  }
  if (bad) throw new FrameError("bad unary code");
  return q;
}

function readResiduals(buf, q, widths, totalBits) {
  const out = new Float64Array(q.length);
  let bitPos = 0;
  for (let j = 0; j < q.length; j++) {
    let w = widths[j];
    let rem = 0;
    if (w <= 24) {
      // Common case: the field lies within four bytes; bytes past the end read as 0 (undefined << n).
      if (w) {
        const i = bitPos >> 3;
        const word = (buf[i] << 24) | (buf[i + 1] << 16) | (buf[i + 2] << 8) | buf[i + 3];
        rem = (word << (bitPos & 7)) >>> (32 - w);
        bitPos += w;
      }
    } else {
      while (w > 0) {
        const avail = 8 - (bitPos & 7);
        const take = avail < w ? avail : w;
        const chunk = (buf[bitPos >> 3] >> (avail - take)) & ((1 << take) - 1);
        rem = rem * (1 << take) + chunk;
        w -= take;
        bitPos += take;
      }
    }
    const u = q[j] === ESCAPE_Q ? rem : q[j] * POW2[widths[j]] + rem;
    out[j] = u <= 0xffffffff ? (u >>> 1) ^ -(u & 1) : unzigzag(u);
  }
  // The padding of the last byte must be zero, else the frame carries something we would silently drop.
  const tail = totalBits & 7;
  if (tail && buf[buf.length - 1] & ((1 << (8 - tail)) - 1)) {
    throw new FrameError("frame has stray bits after its samples");
  }
  return out;
}

/**
 * Undo `order` differences: the first `order` samples are the warm-up, each later one is the fixed
 * polynomial prediction from the previous ones plus its residual (FLAC's fixed predictors).
 */
function integrate(warmup, residuals, start, m) {
  const order = warmup.length;
  const n = order + m;
  const out = new Int32Array(n);
  const x = new Float64Array(n);
  for (let i = 0; i < order; i++) x[i] = warmup[i];
  for (let i = order; i < n; i++) {
    const r = residuals[start + i - order];
    let p;
    if (order === 0) p = 0;
    else if (order === 1) p = x[i - 1];
    else if (order === 2) p = 2 * x[i - 1] - x[i - 2];
    else p = 3 * x[i - 1] - 3 * x[i - 2] + x[i - 3];
    x[i] = p + r;
    // Checked as we go so every intermediate stays far inside the exact range of a Number.
    if (x[i] < SAMPLE_MIN || x[i] > SAMPLE_MAX) break;
  }
  for (let i = 0; i < n; i++) {
    if (!(x[i] >= SAMPLE_MIN && x[i] <= SAMPLE_MAX)) {
      throw new FrameError("decoded samples do not fit in 32-bit integers");
    }
    out[i] = x[i];
  }
  return out;
}
