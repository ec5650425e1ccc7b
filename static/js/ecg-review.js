// Review a stored ECG at paper scale: 25 mm/s, 10 mm/mV, 10 s per screen, one lead or all of them.
//
// The strip is SVG sized in millimetres, so that it prints at true scale (a ruler on the paper measures the
// same intervals as on a 12-lead printout) and stays sharp at any printer resolution.
// DOM contract: web/templates/ecg_review.html. Data: GET /api/v1/streams/{id}/samples -> one frame.

import { formatDateTime, loadI18n, logUnhandledRejections, parseIso, TIME_ZONE, warn } from "./common.js";
import { PAPER, TRACE_COLORS, isEcgSignal, millivoltsPerUnit } from "./ecg-paper.js";
import { decodeFrame } from "./waveform.js";

const SPEED_MM_PER_S = 25;
const GAIN_MM_PER_MV = 10;
const SCREEN_S = 10;
const SVG_NS = "http://www.w3.org/2000/svg";
const ENGLISH = {
  all_leads: "All leads",
  loading: "Loading…",
  load_failed: "Could not load the samples.",
  no_samples: "No samples are stored for this stretch.",
  from_start: "{time} from the start",
  range: "{start} – {end}",
  strip_label: "ECG strip, {lead}, {range}",
};

logUnhandledRejections();

const root = document.getElementById("ecg-review");
if (root) start(root);

function readStream() {
  try {
    return JSON.parse(document.getElementById("ecg-stream").textContent || "{}");
  } catch (err) {
    warn("stream description unreadable:", err);
    return null;
  }
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

function clock(date) {
  return date.toLocaleTimeString("vi-VN", { timeZone: TIME_ZONE, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

function hms(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`;
}

function start(root) {
  const t = loadI18n("ecg-i18n", ENGLISH);
  const stream = readStream();
  if (!stream || !(stream.sample_rate > 0) || !Array.isArray(stream.signals)) return;
  const $ = (id) => document.getElementById(id);
  const ui = {
    lead: $("ecg-lead"),
    prev: $("ecg-prev"),
    next: $("ecg-next"),
    print: $("ecg-print"),
    slider: $("ecg-slider"),
    strip: $("ecg-strip"),
    status: $("ecg-status"),
    leadName: $("ecg-lead-name"),
    range: $("ecg-range"),
    offset: $("ecg-offset"),
  };
  const rate = Number(stream.sample_rate);
  const count = Math.round(SCREEN_S * rate);
  const startedAt = parseIso(stream.started_at);
  const state = { start: 0, frame: null, request: 0 };
  const firstEcg = stream.signals.findIndex(isEcgSignal);
  if (ui.lead) ui.lead.value = String(firstEcg >= 0 ? firstEcg : 0);

  const lastStart = () => Math.max(0, Math.floor((Number(stream.next_sample) || 0) - count));

  function describe() {
    const from = state.start / rate;
    const to = (state.start + count) / rate;
    let range = `${hms(from)} – ${hms(to)}`;
    if (startedAt) {
      const a = new Date(startedAt.getTime() + from * 1000);
      const b = new Date(startedAt.getTime() + to * 1000);
      range = t("range", { start: `${formatDateTime(a).split(" ")[0]} ${clock(a)}`, end: clock(b) });
    }
    const lead = ui.lead && ui.lead.value === "all" ? t("all_leads") : (stream.signals[Number(ui.lead ? ui.lead.value : 0)] || {}).label;
    if (ui.leadName) ui.leadName.textContent = lead || "";
    if (ui.range) ui.range.textContent = range;
    if (ui.offset) ui.offset.textContent = t("from_start", { time: hms(from) });
    if (ui.slider) {
      ui.slider.max = String(Math.floor(lastStart() / rate));
      ui.slider.value = String(Math.floor(from));
      ui.slider.setAttribute("aria-valuetext", `${hms(from)} · ${range}`);
    }
    if (ui.prev) ui.prev.disabled = state.start <= 0;
    if (ui.next) ui.next.disabled = state.start >= lastStart();
    return { lead, range };
  }

  async function load() {
    const request = ++state.request;
    ui.strip.dataset.state = "loading";
    if (ui.status) ui.status.textContent = t("loading");
    describe();
    let frame = null;
    let outcome = "ready";
    try {
      const response = await fetch(`/api/v1/streams/${stream.id}/samples?start=${state.start}&count=${count}`, {
        credentials: "same-origin",
        headers: { Accept: "application/octet-stream" },
      });
      // A stream still recording grows: the server says how far it has got, and the slider follows.
      const stored = Number(response.headers.get("X-Stream-Samples"));
      if (Number.isFinite(stored) && stored > (Number(stream.next_sample) || 0)) stream.next_sample = stored;
      if (response.status === 404 || response.status === 204) outcome = "empty";
      else if (!response.ok) throw new Error(`HTTP ${response.status}`);
      else frame = decodeFrame(await response.arrayBuffer());
    } catch (err) {
      warn("samples:", err && err.message);
      outcome = "error";
    }
    if (request !== state.request) return; // a newer request owns the screen
    state.frame = frame;
    render(outcome);
  }

  function render(outcome) {
    const { lead, range } = describe();
    const rows = ui.lead && ui.lead.value === "all" ? stream.signals.map((_, i) => i) : [Number(ui.lead ? ui.lead.value : 0)];
    const drawing = strip(rows, state.frame);
    drawing.setAttribute("aria-label", t("strip_label", { lead, range }));
    ui.strip.replaceChildren(drawing);
    ui.strip.dataset.start = String(state.start);
    ui.strip.dataset.samples = String(state.frame ? state.frame.nSamples : 0);
    ui.strip.dataset.state = outcome;
    if (ui.status) {
      ui.status.textContent = outcome === "error" ? t("load_failed") : outcome === "empty" || !state.frame ? t("no_samples") : "";
    }
  }

  /** The paper and the traces of the chosen signals, one row each, in millimetres. */
  function strip(rows, frame) {
    const rowMm = rows.length === 1 ? 40 : rows.length <= 6 ? 25 : 20;
    const width = SCREEN_S * SPEED_MM_PER_S;
    const height = rows.length * rowMm;
    const drawing = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      width: `${width}mm`,
      height: `${height}mm`,
      class: "ecg-svg",
      role: "img",
    });
    drawing.append(svg("rect", { width, height, fill: PAPER.background }), ...grid(width, height));
    rows.forEach((signalIndex, r) => {
      const signal = stream.signals[signalIndex] || {};
      const top = r * rowMm;
      if (frame && signalIndex < frame.samples.length) {
        const d = tracePath(frame, signalIndex, signal, top, rowMm);
        if (d) {
          drawing.append(svg("path", { d, fill: "none", stroke: TRACE_COLORS[signal.kind] || TRACE_COLORS.other, "stroke-width": 0.25, "stroke-linejoin": "round" }));
        }
      }
      const label = svg("text", { x: 1.5, y: top + 4.5, "font-size": 3.5, "font-weight": 600, fill: "#101418" });
      label.textContent = isEcgSignal(signal) ? signal.label : `${signal.label} (${signal.units})`;
      drawing.append(label);
    });
    return drawing;
  }

  function grid(width, height) {
    const minor = [];
    const major = [];
    for (let x = 0; x <= width; x++) (x % 5 ? minor : major).push(`M${x} 0V${height}`);
    for (let y = 0; y <= height; y++) (y % 5 ? minor : major).push(`M0 ${y}H${width}`);
    return [
      svg("path", { d: minor.join(""), stroke: PAPER.minor, "stroke-width": 0.08, fill: "none" }),
      svg("path", { d: major.join(""), stroke: PAPER.major, "stroke-width": 0.18, fill: "none" }),
    ];
  }

  function tracePath(frame, signalIndex, signal, top, rowMm) {
    const data = frame.samples[signalIndex];
    const scale = frame.scales[signalIndex];
    const from = Math.max(0, state.start - frame.firstSample);
    const to = Math.min(frame.nSamples, state.start + count - frame.firstSample);
    if (to <= from) return "";
    let y;
    const mvPerUnit = millivoltsPerUnit(scale.units);
    if (isEcgSignal({ kind: signal.kind || "ecg", units: scale.units })) {
      const a = -(GAIN_MM_PER_MV * mvPerUnit) / scale.gain;
      const b = top + rowMm * 0.55 - a * scale.baseline;
      y = (v) => a * v + b;
    } else {
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = from; i < to; i++) {
        lo = Math.min(lo, data[i]);
        hi = Math.max(hi, data[i]);
      }
      const a = -(rowMm * 0.8) / Math.max(1, hi - lo);
      y = (v) => a * (v - lo) + top + rowMm * 0.9;
    }
    const mmPerSample = SPEED_MM_PER_S / rate;
    const parts = new Array(to - from);
    for (let i = from; i < to; i++) {
      const x = (frame.firstSample + i - state.start) * mmPerSample;
      parts[i - from] = `${i === from ? "M" : "L"}${x.toFixed(2)} ${y(data[i]).toFixed(2)}`;
    }
    return parts.join("");
  }

  function goTo(sample) {
    const next = Math.min(Math.max(0, Math.round(sample)), lastStart());
    if (next === state.start && state.frame) return;
    state.start = next;
    load();
  }

  if (ui.prev) ui.prev.addEventListener("click", () => goTo(state.start - count));
  if (ui.next) ui.next.addEventListener("click", () => goTo(state.start + count));
  if (ui.slider) {
    // While dragging only the labels follow; the samples are fetched once the slider is let go.
    ui.slider.addEventListener("input", () => {
      const from = Number(ui.slider.value);
      if (ui.offset) ui.offset.textContent = t("from_start", { time: hms(from) });
    });
    // The slider moves in whole seconds; its right end is the last full screen, wherever that falls.
    ui.slider.addEventListener("change", () => {
      const value = Number(ui.slider.value);
      goTo(value >= Number(ui.slider.max) ? lastStart() : value * rate);
    });
  }
  if (ui.lead) ui.lead.addEventListener("change", () => render(state.frame ? "ready" : ui.strip.dataset.state));
  if (ui.print) ui.print.addEventListener("click", () => window.print());
  load();
}
