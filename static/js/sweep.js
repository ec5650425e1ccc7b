// One stream's sweep-mode strip on a canvas: the samples kept by index in a ring buffer, a playhead that
// runs a little behind the newest sample, and painting limited to the columns that changed.
//
// Frames arrive in bursts (one every ~200 ms) and out of order after a reconnect. Showing the data at its own
// rate, slightly delayed, keeps the sweep even; keeping samples by index lets late data fill the gap it
// belongs to. Each animation frame repaints only the columns the sweep passed over (the paper is blitted
// from a pre-rendered copy), plus the columns late data filled in. Coordinates are device pixels; "unwrapped"
// columns count from sample 0 without wrapping at the canvas width.

import { CSS_PX_PER_MM, TRACE_COLORS, drawPaper, isEcgSignal, millivoltsPerUnit } from "./ecg-paper.js";

const BUFFER_SECONDS = 75; // the minute a clinician may keep the strip frozen, plus the display delay
const ERASE_MM = 5; // the blank bar ahead of the sweep
const MIN_DELAY_S = 0.3;
const MAX_DELAY_S = 2;
const JUMP_S = 3; // further behind than this, the playhead jumps instead of catching up
const AUTOSCALE_MS = 1000;

function clamp(value, lo, hi) {
  return value < lo ? lo : value > hi ? hi : value;
}

/** Row height in whole 5 mm squares, so that row boundaries fall on major lines. */
export function rowHeightMm(rows) {
  return rows <= 3 ? 30 : rows <= 6 ? 20 : 15;
}

export class StreamSweep {
  constructor(canvas, rate, signals) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d", { alpha: false });
    this.rate = rate;
    this.signals = signals;
    this.cap = Math.max(1024, Math.ceil(rate * BUFFER_SECONDS));
    this.slots = new Float64Array(this.cap).fill(-1); // which sample index each slot holds
    this.data = signals.map(() => new Int32Array(this.cap));
    this.ranges = signals.map(() => null); // auto-scaled rows: digital lo/hi
    this.latest = -1;
    this.earliest = Infinity;
    this.playhead = null;
    this.drawnTo = null; // samples below this index are on screen (within the sweep's window)
    this.needsFull = true;
    this.dirtyFrom = Infinity;
    this.dirtyTo = -1;
    this.frameSeconds = 0.2;
    this.samplesDrawn = 0;
    this.lastScaleCheck = 0;
    this.W = 0;
    this.gain = 10;
    this.speed = 25;
  }

  /** Labels, kinds or scales changed, not the number of signals. */
  setSignals(signals) {
    this.signals = signals;
    this._computeScales();
    this.needsFull = true;
  }

  setScale(gain, speed) {
    this.gain = gain;
    this.speed = speed;
    this._computeScales();
    this.needsFull = true;
  }

  /** Size the canvas in device pixels for a CSS width, and pre-render its paper. */
  layout(cssW) {
    const dpr = window.devicePixelRatio || 1;
    const rowMm = rowHeightMm(this.signals.length);
    const cssH = Math.round(this.signals.length * rowMm * CSS_PX_PER_MM);
    this.dpr = dpr;
    this.cssW = cssW;
    this.W = Math.round(cssW * dpr);
    this.H = Math.round(cssH * dpr);
    this.pxPerMm = CSS_PX_PER_MM * dpr;
    this.rowH = rowMm * this.pxPerMm;
    this.canvas.width = this.W;
    this.canvas.height = this.H;
    // Through the CSSOM, which the page's CSP allows (style attributes it does not).
    this.canvas.style.width = `${cssW}px`;
    this.canvas.style.height = `${cssH}px`;
    this.grid = document.createElement("canvas");
    this.grid.width = this.W;
    this.grid.height = this.H;
    drawPaper(this.grid.getContext("2d"), this.W, this.H, this.pxPerMm, dpr);
    this.ctx.lineJoin = "round";
    this._computeScales();
    this.needsFull = true;
  }

  /** Keep a decoded frame's samples; true if any was kept. Duplicates overwrite themselves harmlessly. */
  store(frame, live) {
    const first = frame.firstSample;
    const n = frame.nSamples;
    const last = first + n - 1;
    const signals = Math.min(this.data.length, frame.samples.length);
    // Older than the ring holds, relative to the newest sample: storing it would overwrite newer data.
    const oldest = Math.max(first, this.latest - this.cap + 1);
    if (oldest > last) return false;
    for (let idx = oldest; idx <= last; idx++) {
      const slot = idx % this.cap;
      this.slots[slot] = idx;
      for (let g = 0; g < signals; g++) this.data[g][slot] = frame.samples[g][idx - first];
    }
    if (last > this.latest) this.latest = last;
    if (first < this.earliest) this.earliest = first;
    if (this.drawnTo != null && oldest < this.drawnTo) {
      this.dirtyFrom = Math.min(this.dirtyFrom, oldest);
      this.dirtyTo = Math.max(this.dirtyTo, Math.min(last, this.drawnTo - 1));
    }
    if (live) this.frameSeconds = 0.8 * this.frameSeconds + 0.2 * (n / this.rate);
    return true;
  }

  /** Advance the playhead by dt seconds and paint what changed. A closed stream is drawn to its end. */
  step(dt, now, active) {
    if (!this.W || this.latest < 0) return;
    if ((window.devicePixelRatio || 1) !== this.dpr) this.layout(this.cssW);
    const avail = this.latest + 1;
    const delay = active ? this.rate * clamp(2 * this.frameSeconds, MIN_DELAY_S, MAX_DELAY_S) : 0;
    const target = Math.max(avail - delay, this.earliest);
    if (this.playhead == null || target - this.playhead > JUMP_S * this.rate) {
      this.playhead = target;
    } else {
      // Run a little fast when behind the target, a little slow when ahead: no visible jumps.
      const lag = (target - this.playhead) / this.rate;
      this.playhead = Math.min(this.playhead + dt * this.rate * clamp(1 + 0.5 * lag, 0.5, 1.5), avail);
    }
    if (this.drawnTo != null) this.playhead = Math.max(this.playhead, this.drawnTo);
    const to = Math.floor(this.playhead);
    if (to < 1) return;
    const first = this.drawnTo == null;
    if (first || this.needsFull) this.drawnTo = to;
    if (first || now - this.lastScaleCheck > AUTOSCALE_MS) {
      this.lastScaleCheck = now;
      if (this._autoscale()) this.needsFull = true;
    }
    if (first || this.needsFull) {
      this.repaintFull();
      return;
    }
    if (this.dirtyTo >= this.dirtyFrom) {
      this._paint(Math.floor((this.dirtyFrom - 1) * this.k), Math.ceil((this.dirtyTo + 1) * this.k) + 1);
      this.dirtyFrom = Infinity;
      this.dirtyTo = -1;
    }
    if (to > this.drawnTo) this._advance(to);
  }

  /** Start again from the newest data (after a freeze). */
  rewindToPresent() {
    this.playhead = null;
    this.needsFull = true;
  }

  repaintFull() {
    if (!this.W || this.drawnTo == null) return;
    this.ctx.drawImage(this.grid, 0, 0);
    const head = this._headCol(this.drawnTo);
    this._paint(head - this.W + this.erase, head);
    this.needsFull = false;
    this.dirtyFrom = Infinity;
    this.dirtyTo = -1;
  }

  /** Device-pixel column where sample `index` is drawn, or null when the sweep does not show it. */
  columnOf(index) {
    if (!this.W || this.drawnTo == null) return null;
    const head = this._headCol(this.drawnTo);
    const x = index * this.k;
    if (index >= this.drawnTo || x < head - this.W + this.erase) return null;
    return Math.floor(x) % this.W;
  }

  has(idx) {
    return idx >= 0 && this.slots[idx % this.cap] === idx;
  }

  // --- scales -------------------------------------------------------------------------------------------

  /** Per row: y = a * digital + b, and the row's bounds (a trace is held inside its own row). */
  _computeScales() {
    if (!this.W) return;
    this.k = (this.speed * this.pxPerMm) / this.rate; // device px per sample
    this.erase = Math.ceil(ERASE_MM * this.pxPerMm);
    this.rows = this.signals.map((g, r) => {
      const top = r * this.rowH;
      const bottom = top + this.rowH;
      if (isEcgSignal(g)) {
        const a = -((this.gain * this.pxPerMm * millivoltsPerUnit(g.units)) / g.gain);
        return { a, b: top + this.rowH * 0.55 - a * g.baseline, top: top + 1, bottom: bottom - 1 };
      }
      const range = this.ranges[r] || { lo: g.baseline - g.gain, hi: g.baseline + g.gain };
      const a = -(this.rowH * 0.8) / Math.max(1, range.hi - range.lo);
      return { a, b: bottom - this.rowH * 0.1 - a * range.lo, top: top + 1, bottom: bottom - 1 };
    });
    this.ctx.lineWidth = Math.max(1, 1.25 * this.dpr);
  }

  /** Re-fit auto-scaled rows to what is on screen; true when a row changed enough to be worth a redraw. */
  _autoscale() {
    if (this.drawnTo == null) return false;
    const from = Math.max(0, Math.ceil((this._headCol(this.drawnTo) - this.W + this.erase) / this.k));
    let changed = false;
    this.signals.forEach((g, r) => {
      if (isEcgSignal(g)) return;
      let lo = Infinity;
      let hi = -Infinity;
      const data = this.data[r];
      for (let idx = from; idx < this.drawnTo; idx++) {
        const slot = idx % this.cap;
        if (this.slots[slot] !== idx) continue;
        if (data[slot] < lo) lo = data[slot];
        if (data[slot] > hi) hi = data[slot];
      }
      if (lo > hi) return;
      const old = this.ranges[r];
      const span = Math.max(1, hi - lo);
      // Hysteresis: a scale that followed every beat would make the trace breathe.
      if (!old || Math.abs(old.lo - lo) > 0.15 * span || Math.abs(old.hi - hi) > 0.15 * span) {
        this.ranges[r] = { lo, hi: lo === hi ? lo + 1 : hi };
        changed = true;
      }
    });
    if (changed) this._computeScales();
    return changed;
  }

  // --- painting -----------------------------------------------------------------------------------------

  /** Column just right of the last drawn sample, where the erase bar starts (unwrapped). */
  _headCol(drawnTo) {
    return Math.ceil((drawnTo - 1) * this.k) + 1;
  }

  _advance(to) {
    const from = this.drawnTo;
    const start = Math.floor((from - 1) * this.k);
    this.drawnTo = to;
    if (this._headCol(to) - start >= this.W - this.erase) {
      this.repaintFull();
      return;
    }
    for (let idx = from; idx < to; idx++) if (this.has(idx)) this.samplesDrawn += 1;
    this._paint(start, this._headCol(to));
    const head = this._headCol(to);
    this._columns(head, head + this.erase, null);
  }

  /** Repaint unwrapped columns [xa, xb), limited to what the sweep currently shows. */
  _paint(xa, xb) {
    const head = this._headCol(this.drawnTo);
    this._columns(Math.max(xa, head - this.W + this.erase), Math.min(xb, head), (c0, c1, base) => {
      const i0 = Math.max(0, Math.floor((c0 + base) / this.k) - 1);
      const i1 = Math.min(this.drawnTo - 1, Math.ceil((c1 + base) / this.k) + 1);
      this._traces(i0, i1, base);
    });
  }

  /** For each on-screen piece of unwrapped columns [xa, xb): restore the paper, then draw inside a clip. */
  _columns(xa, xb, draw) {
    const ctx = this.ctx;
    for (let start = xa; start < xb; ) {
      const base = Math.floor(start / this.W) * this.W;
      const end = Math.min(xb, base + this.W);
      const c0 = start - base;
      const c1 = end - base;
      ctx.drawImage(this.grid, c0, 0, c1 - c0, this.H, c0, 0, c1 - c0, this.H);
      if (draw) {
        ctx.save();
        ctx.beginPath();
        ctx.rect(c0, 0, c1 - c0, this.H);
        ctx.clip();
        draw(c0, c1, base);
        ctx.restore();
      }
      start = end;
    }
  }

  _traces(i0, i1, base) {
    const { ctx, k, cap, slots } = this;
    this.signals.forEach((g, r) => {
      const row = this.rows[r];
      if (!row) return;
      const data = this.data[r];
      const { a, b, top, bottom } = row;
      ctx.beginPath();
      let pen = false;
      for (let idx = i0; idx <= i1; idx++) {
        const slot = idx % cap;
        if (slots[slot] !== idx) {
          pen = false; // a gap stays blank
          continue;
        }
        const x = idx * k - base;
        const y = clamp(a * data[slot] + b, top, bottom);
        if (pen) ctx.lineTo(x, y);
        else {
          ctx.moveTo(x, y);
          pen = true;
        }
      }
      ctx.strokeStyle = TRACE_COLORS[g.kind] || TRACE_COLORS.other;
      ctx.stroke();
    });
  }
}
