// A bedside-monitor strip chart of live waveform streams: ECG paper, one row per signal, sweep mode, with
// gain, speed and freeze controls. This module owns the DOM and the public API; the drawing of each stream is
// sweep.js. Freezing stops drawing only: frames keep arriving into each stream's ring buffer, so unfreezing
// shows the present.

import { el, warn } from "./common.js";
import {
  CSS_PX_PER_MM,
  DEFAULT_GAIN,
  DEFAULT_SPEED,
  GAINS_MM_PER_MV,
  SPEEDS_MM_PER_S,
  formatNumber,
  isEcgSignal,
  millivoltsPerUnit,
} from "./ecg-paper.js";
import { StreamSweep, rowHeightMm } from "./sweep.js";

const SETTINGS_KEY = "tc-monitor-settings";

function loadSettings() {
  try {
    const saved = JSON.parse(window.localStorage.getItem(SETTINGS_KEY) || "{}");
    return {
      gain: GAINS_MM_PER_MV.includes(saved.gain) ? saved.gain : DEFAULT_GAIN,
      speed: SPEEDS_MM_PER_S.includes(saved.speed) ? saved.speed : DEFAULT_SPEED,
    };
  } catch {
    return { gain: DEFAULT_GAIN, speed: DEFAULT_SPEED };
  }
}

function signalsOf(streamOut) {
  return (streamOut.signals || []).map((s) => ({
    name: s.name,
    label: s.label || s.name,
    kind: s.kind || "other",
    units: s.units,
    gain: Number(s.gain) || 1,
    baseline: Number(s.baseline) || 0,
  }));
}

/** A stream known only from its frames (a frame beat stream.opened): signals numbered, volts are ECG. */
function provisional(frame) {
  return {
    id: frame.streamId,
    label: `#${frame.streamId}`,
    sample_rate: frame.sampleRate,
    active: true,
    signals: frame.scales.map((sc, i) => ({
      name: String(i + 1),
      label: String(i + 1),
      kind: millivoltsPerUnit(sc.units) !== null ? "ecg" : "other",
      units: sc.units,
      gain: sc.gain,
      baseline: sc.baseline,
    })),
  };
}

export class WaveformMonitor {
  constructor(container, { t } = {}) {
    this.container = container;
    this.t = t || ((key) => key);
    this.streams = new Map(); // id -> {id, info, rate, signals, active, heartRate, sweep, dom, counters}
    this.frozen = false;
    Object.assign(this, loadSettings());
    this.framesReceived = 0;
    this.framesBackfilled = 0;
    this._raf = 0;
    this._lastNow = 0;
    this._tick = (now) => this._frame(now);
    this._observer =
      typeof ResizeObserver === "function" ? new ResizeObserver((entries) => this._onResize(entries)) : null;
    this._buildToolbar();
    this.list = el("div", { class: "monitor-streams" });
    this.empty = el("p", { class: "muted monitor-empty", text: this.t("monitor_no_streams") });
    container.classList.add("monitor");
    container.append(this.toolbar, this.empty, this.list);
    this._publishCounts();
  }

  // --- public API ---------------------------------------------------------------------------------------

  setStreams(list) {
    for (const out of Array.isArray(list) ? list : []) this.addStream(out);
  }

  /** Add a stream (StreamOut), or update one already shown; its samples are kept when its shape is the same. */
  addStream(out) {
    if (!out || !Number.isFinite(Number(out.id))) return;
    const id = Number(out.id);
    const signals = signalsOf(out);
    if (!signals.length || !(Number(out.sample_rate) > 0)) return;
    const existing = this.streams.get(id);
    if (existing && existing.rate === Number(out.sample_rate) && existing.signals.length === signals.length) {
      existing.info = out;
      existing.signals = signals;
      existing.active = out.active !== false;
      existing.sweep.setSignals(signals);
      this._renderHead(existing);
      this._renderLabels(existing);
      this._schedule();
      return;
    }
    if (existing) this._remove(existing);
    this._create({ ...out, id });
  }

  closeStream(id) {
    const s = this.streams.get(Number(id));
    if (!s) return;
    s.active = false;
    this._renderHead(s);
  }

  /** A live frame (decoded): placed by its first sample; duplicates and late frames are fine. */
  pushFrame(frame) {
    if (this._ingest(frame, true)) {
      this.framesReceived += 1;
      this._publishCounts();
    }
  }

  /** A frame from the store (the last minute, after a join): placed exactly like a live one. */
  backfill(frame) {
    if (this._ingest(frame, false)) {
      this.framesBackfilled += 1;
      this._publishCounts();
    }
  }

  setHeartRate(streamId, bpm) {
    const s = this.streams.get(Number(streamId));
    if (!s) return;
    s.heartRate = bpm == null || !Number.isFinite(Number(bpm)) ? null : Number(bpm);
    this._renderHead(s);
  }

  setGain(mmPerMv) {
    if (!GAINS_MM_PER_MV.includes(mmPerMv)) return;
    this.gain = mmPerMv;
    this._settingsChanged();
  }

  setSpeed(mmPerS) {
    if (!SPEEDS_MM_PER_S.includes(mmPerS)) return;
    this.speed = mmPerS;
    this._settingsChanged();
  }

  setFrozen(frozen) {
    this.frozen = Boolean(frozen);
    this.container.classList.toggle("frozen", this.frozen);
    this.container.dataset.frozen = this.frozen ? "1" : "0";
    this.freezeButton.setAttribute("aria-pressed", this.frozen ? "true" : "false");
    this.freezeButton.textContent = this.frozen ? this.t("monitor_unfreeze") : this.t("monitor_freeze");
    this.frozenNote.hidden = !this.frozen;
    if (!this.frozen) {
      for (const s of this.streams.values()) s.sweep.rewindToPresent();
      this._lastNow = 0;
      this._schedule();
    }
  }

  stats() {
    const out = {};
    for (const s of this.streams.values()) {
      out[s.id] = {
        framesReceived: s.framesReceived,
        framesBackfilled: s.framesBackfilled,
        samplesDrawn: s.sweep.samplesDrawn,
        latestSample: s.sweep.latest,
        drawnTo: s.sweep.drawnTo,
      };
    }
    return out;
  }

  /** Where sample `index` of a stream is on its canvas (device px), or null when it is not on screen. */
  columnOf(streamId, index) {
    const s = this.streams.get(Number(streamId));
    return s ? s.sweep.columnOf(index) : null;
  }

  destroy() {
    if (this._raf) cancelAnimationFrame(this._raf);
    this._raf = 0;
    this._destroyed = true;
    if (this._observer) this._observer.disconnect();
  }

  // --- DOM ----------------------------------------------------------------------------------------------

  _buildToolbar() {
    const t = this.t;
    const select = (cls, values, current, unit) =>
      el(
        "select",
        { class: cls },
        ...values.map((v) => el("option", { value: String(v), selected: v === current, text: `${formatNumber(v)} ${unit}` })),
      );
    this.gainSelect = select("monitor-gain", GAINS_MM_PER_MV, this.gain, "mm/mV");
    this.speedSelect = select("monitor-speed", SPEEDS_MM_PER_S, this.speed, "mm/s");
    this.freezeButton = el("button", { type: "button", class: "monitor-freeze", "aria-pressed": "false", text: t("monitor_freeze") });
    this.frozenNote = el("span", { class: "monitor-frozen-note", role: "status", text: t("monitor_frozen"), hidden: true });
    this.gainSelect.addEventListener("change", () => this.setGain(Number(this.gainSelect.value)));
    this.speedSelect.addEventListener("change", () => this.setSpeed(Number(this.speedSelect.value)));
    this.freezeButton.addEventListener("click", () => this.setFrozen(!this.frozen));
    this.toolbar = el(
      "div",
      { class: "monitor-toolbar" },
      el("label", {}, `${t("monitor_gain")} `, this.gainSelect),
      el("label", {}, `${t("monitor_speed")} `, this.speedSelect),
      this.freezeButton,
      this.frozenNote,
    );
  }

  _create(out) {
    const canvas = el("canvas", { class: "monitor-canvas", role: "img" });
    const labels = el("div", { class: "monitor-labels" });
    const wrap = el("div", { class: "monitor-canvas-wrap" }, canvas, labels);
    const head = el("header", { class: "monitor-stream-head" });
    const section = el("section", { class: "monitor-stream", dataset: { streamId: String(out.id) } }, head, wrap);
    const rate = Number(out.sample_rate);
    const signals = signalsOf(out);
    const s = {
      id: out.id,
      info: out,
      rate,
      signals,
      active: out.active !== false,
      heartRate: undefined,
      framesReceived: 0,
      framesBackfilled: 0,
      sweep: new StreamSweep(canvas, rate, signals),
      dom: { section, head, wrap, canvas, labels },
    };
    s.sweep.setScale(this.gain, this.speed);
    this.streams.set(s.id, s);
    this.list.append(section);
    this._renderHead(s);
    this._renderLabels(s);
    s.sweep.layout(this._width(s));
    if (this._observer) this._observer.observe(wrap);
    this._publishCounts();
    return s;
  }

  _width(s) {
    return Math.max(200, Math.floor(s.dom.wrap.clientWidth || this.container.clientWidth || 600));
  }

  _remove(s) {
    if (this._observer) this._observer.unobserve(s.dom.wrap);
    s.dom.section.remove();
    this.streams.delete(s.id);
  }

  _renderHead(s) {
    const t = this.t;
    const label = s.info.label || `#${s.id}`;
    const parts = [el("span", { class: "monitor-stream-label", text: label })];
    if (s.signals.some(isEcgSignal)) {
      const bpm = s.heartRate == null ? "—" : String(Math.round(s.heartRate));
      parts.push(
        el("span", { class: "monitor-hr" }, `${t("monitor_hr_ecg")} `, el("strong", { class: "monitor-hr-value", text: bpm }), " /min"),
      );
    }
    parts.push(el("span", { class: "monitor-stream-state", text: s.active ? t("monitor_live") : t("monitor_ended") }));
    s.dom.head.replaceChildren(...parts);
    s.dom.section.dataset.active = s.active ? "true" : "false";
    if (s.heartRate != null) s.dom.section.dataset.heartRate = String(Math.round(s.heartRate));
    else delete s.dom.section.dataset.heartRate;
    const leads = s.signals.map((g) => g.label).join(", ");
    s.dom.canvas.setAttribute("aria-label", t("monitor_canvas_label", { label, leads }));
  }

  _renderLabels(s) {
    const rowCss = rowHeightMm(s.signals.length) * CSS_PX_PER_MM;
    s.dom.labels.replaceChildren(
      ...s.signals.map((g, r) => {
        const text = isEcgSignal(g) ? g.label : `${g.label} (${g.units})`;
        const span = el("span", { class: `monitor-lead kind-${g.kind}`, text });
        span.style.top = `${Math.round(r * rowCss) + 2}px`; // CSSOM: allowed by the CSP, unlike style=""
        return span;
      }),
    );
  }

  _publishCounts() {
    const data = this.container.dataset;
    data.framesReceived = String(this.framesReceived);
    data.framesBackfilled = String(this.framesBackfilled);
    data.streams = String(this.streams.size);
    this.empty.hidden = this.streams.size > 0;
    for (const s of this.streams.values()) {
      s.dom.section.dataset.framesReceived = String(s.framesReceived);
      s.dom.section.dataset.framesBackfilled = String(s.framesBackfilled);
    }
  }

  _settingsChanged() {
    try {
      window.localStorage.setItem(SETTINGS_KEY, JSON.stringify({ gain: this.gain, speed: this.speed }));
    } catch {
      /* private mode: the choice lasts for this page only */
    }
    this.gainSelect.value = String(this.gain);
    this.speedSelect.value = String(this.speed);
    for (const s of this.streams.values()) {
      s.sweep.setScale(this.gain, this.speed);
      if (this.frozen) s.sweep.repaintFull(); // the frozen strip, at the new scale
    }
    this._schedule();
  }

  _onResize(entries) {
    for (const entry of entries) {
      for (const s of this.streams.values()) {
        if (s.dom.wrap !== entry.target) continue;
        const cssW = Math.floor(entry.contentRect.width);
        if (cssW > 0 && cssW !== s.sweep.cssW) {
          s.sweep.layout(this._width(s));
          if (this.frozen) s.sweep.repaintFull();
        }
      }
    }
    this._schedule();
  }

  _ingest(frame, live) {
    if (!frame || !Array.isArray(frame.samples) || !(frame.nSamples > 0)) return false;
    const s = this.streams.get(frame.streamId) || this._create(provisional(frame));
    if (Math.abs(frame.sampleRate - s.rate) > 1e-6 * s.rate) {
      warn(`frame of stream ${s.id} at ${frame.sampleRate} Hz, stream is ${s.rate} Hz; dropped`);
      return false;
    }
    if (!s.sweep.store(frame, live)) return false;
    if (live) s.framesReceived += 1;
    else s.framesBackfilled += 1;
    this._schedule();
    return true;
  }

  // --- animation ----------------------------------------------------------------------------------------

  _schedule() {
    if (!this._raf && !this._destroyed && !this.frozen && this.streams.size) {
      this._raf = requestAnimationFrame(this._tick);
    }
  }

  _frame(now) {
    this._raf = 0;
    const dt = this._lastNow ? Math.min(1, (now - this._lastNow) / 1000) : 0;
    this._lastNow = now;
    if (this.frozen) return;
    for (const s of this.streams.values()) {
      try {
        s.sweep.step(dt, now, s.active);
      } catch (err) {
        warn(`monitor stream ${s.id}:`, err);
      }
    }
    this._schedule();
  }
}
