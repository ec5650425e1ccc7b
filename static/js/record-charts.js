// The patient record's vital-sign trends (uPlot) and the list of the patient's recorded monitor signals.
//
// DOM contract: web/templates/patient_record.html (#vital-signs[data-patient-id], #vital-charts,
// #record-streams, #record-charts-i18n). Data: GET /api/v1/patients/{id}/vitals and .../streams.

import uPlot from "/vendor/uplot/uPlot.esm.js";
import { el, formatDateTime, loadI18n, logUnhandledRejections, parseIso, TIME_ZONE, warn } from "./common.js";

const ENGLISH = {
  loading: "Loading…",
  load_failed: "Could not load the vital signs.",
  streams_failed: "Could not load the recorded signals.",
  no_vitals: "No vital signs recorded.",
  no_streams: "No monitor signals recorded.",
  vital_hr: "Heart rate",
  vital_spo2: "SpO2",
  vital_bp: "Blood pressure",
  vital_sys: "Systolic",
  vital_dia: "Diastolic",
  vital_rr: "Respiratory rate",
  vital_temp: "Temperature",
  time: "Time",
  leads: "Signals: {count}",
  duration: "duration {duration}",
};

const CHART_HEIGHT = 200;
const MIN_SPAN_S = 3600;
const CHARTS = [
  { kind: "hr", unit: "/min", series: [{ field: "value", label: "vital_hr", color: "#b3261e" }] },
  { kind: "spo2", unit: "%", series: [{ field: "value", label: "vital_spo2", color: "#0b5fa5" }] },
  {
    kind: "bp",
    unit: "mmHg",
    series: [
      { field: "value", label: "vital_sys", color: "#8a5300" },
      { field: "value2", label: "vital_dia", color: "#1e7d32" },
    ],
  },
  { kind: "rr", unit: "/min", series: [{ field: "value", label: "vital_rr", color: "#5b3d99" }] },
  { kind: "temp", unit: "°C", series: [{ field: "value", label: "vital_temp", color: "#44505e" }] },
];

logUnhandledRejections();

const root = document.getElementById("vital-signs");
if (root) start(root);

async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function start(root) {
  const t = loadI18n("record-charts-i18n", ENGLISH);
  const patientId = Number(root.dataset.patientId);
  const charts = [];
  loadVitals(root, t, patientId, charts).catch((err) => warn("vital charts:", err));
  loadStreams(root, t, patientId).catch((err) => warn("streams list:", err));
  let pending = 0;
  window.addEventListener("resize", () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => {
      for (const { plot, box } of charts) plot.setSize({ width: chartWidth(box), height: CHART_HEIGHT });
    });
  });
}

function chartWidth(box) {
  return Math.max(280, Math.floor(box.clientWidth || 600));
}

async function loadVitals(root, t, patientId, charts) {
  const status = document.getElementById("vitals-status");
  const holder = document.getElementById("vital-charts");
  let vitals;
  try {
    const body = await getJson(`/api/v1/patients/${patientId}/vitals`);
    vitals = Array.isArray(body.vitals) ? body.vitals : [];
  } catch (err) {
    warn(err && err.message);
    if (status) status.textContent = t("load_failed");
    root.dataset.vitalsState = "error";
    return;
  }
  root.dataset.vitals = String(vitals.length);
  if (status) status.textContent = vitals.length ? "" : t("no_vitals");
  if (status) status.hidden = vitals.length > 0;
  if (!holder) return;
  for (const chart of CHARTS) {
    const rows = vitals
      .filter((v) => v && v.kind === chart.kind)
      .map((v) => ({ ...v, at: parseIso(v.observed_at) }))
      .filter((v) => v.at)
      .sort((a, b) => a.at - b.at || a.id - b.id);
    if (!rows.length) continue;
    const box = el("figure", { class: "vital-chart", dataset: { kind: chart.kind, points: String(rows.length) } });
    box.append(el("figcaption", { text: `${t(`vital_${chart.kind}`)} (${chart.unit})` }));
    holder.append(box);
    const data = [rows.map((r) => r.at.getTime() / 1000), ...chart.series.map((s) => rows.map((r) => r[s.field] ?? null))];
    const plot = new uPlot(chartOptions(chart, t, chartWidth(box)), data, box);
    charts.push({ plot, box });
  }
  root.dataset.charts = String(charts.length);
}

/** dd/mm/yyyy HH:MM in Vietnam time; on the axis the time on top, the date under it (seconds when zoomed in). */
function axisLabel(ts, withSeconds) {
  const date = new Date(ts * 1000);
  const [day, time] = formatDateTime(date).split(" ");
  const seconds = withSeconds ? `:${String(date.getUTCSeconds()).padStart(2, "0")}` : "";
  return `${time}${seconds}\n${day}`;
}

/** At least an hour across, so that one reading, or a few seconds of them, still sit on a readable axis. */
function timeRange(u, min, max) {
  // For a lone reading uPlot proposes a span of its own (about three years in seconds): centre on the point.
  if (u.data[0] && u.data[0].length === 1) min = max = u.data[0][0];
  const span = Math.max(max - min, MIN_SPAN_S);
  const pad = span * 0.04;
  const mid = (min + max) / 2;
  return max - min < MIN_SPAN_S ? [mid - span / 2 - pad, mid + span / 2 + pad] : [min - pad, max + pad];
}

function chartOptions(chart, t, width) {
  return {
    width,
    height: CHART_HEIGHT,
    // Ticks land on round hours and days of the clinic's clock, whatever the viewer's own time zone.
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), TIME_ZONE),
    scales: { x: { time: true, range: timeRange } },
    padding: [8, 24, 0, 0],
    axes: [
      {
        values: (u, splits, axis, space, incr) => splits.map((ts) => (ts == null ? "" : axisLabel(ts, incr < 60))),
        space: 90,
        size: 50,
      },
      { label: chart.unit, size: 55 },
    ],
    series: [
      { label: t("time"), value: (u, ts) => (ts == null ? "—" : formatDateTime(new Date(ts * 1000))) },
      ...chart.series.map((s) => ({
        label: t(s.label),
        stroke: s.color,
        width: 2,
        spanGaps: true,
        points: { show: true, size: 6, fill: s.color },
        value: (u, v) => (v == null ? "—" : String(v)),
      })),
    ],
  };
}

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

async function loadStreams(root, t, patientId) {
  const list = document.getElementById("record-streams");
  if (!list) return;
  let streams;
  try {
    const body = await getJson(`/api/v1/patients/${patientId}/streams`);
    streams = Array.isArray(body.streams) ? body.streams : [];
  } catch (err) {
    warn(err && err.message);
    list.replaceChildren(el("li", { class: "muted", text: t("streams_failed") }));
    return;
  }
  streams.sort((a, b) => (parseIso(b.started_at) || 0) - (parseIso(a.started_at) || 0));
  if (!streams.length) {
    list.replaceChildren(el("li", { class: "muted", text: t("no_streams") }));
    return;
  }
  list.replaceChildren(
    ...streams.map((s) => {
      const seconds = s.sample_rate > 0 ? s.next_sample / s.sample_rate : 0;
      const leads = (s.signals || []).map((g) => g.label || g.name).join(", ");
      return el(
        "li",
        { class: "record-stream", dataset: { streamId: String(s.id) } },
        el("a", { href: `/patients/${patientId}/streams/${s.id}`, text: s.label || `#${s.id}` }),
        ` · ${formatDateTime(s.started_at)} · ${t("duration", { duration: duration(seconds) })} · `,
        el("span", { class: "muted", title: leads, text: t("leads", { count: (s.signals || []).length }) }),
      );
    }),
  );
}
