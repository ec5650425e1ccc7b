// The room's live monitor and vitals: wires WaveformMonitor and VitalsPanel to the room's socket.
//
// After every (re)join the room state is set from the join ack, and the last minute of every stream is
// fetched from the store, because live frames are relayed before they are committed and anything sent while
// we were away is only in the store. Typed-in readings go through a localStorage outbox like the notes do:
// shown as pending at once, resent after every reconnect, deduplicated by the server on client_id.
//
// Protocol: signaling/events.py. DOM contract: web/templates/room.html (#monitor, #vitals, #monitor-i18n).

import { emitAck, loadI18n, warn } from "./common.js";
import { WaveformMonitor } from "./monitor.js";
import { VitalsPanel } from "./vitals.js";
import { decodeFrame } from "./waveform.js";

export const MONITOR_ENGLISH = {
  monitor_no_streams: "No monitor is streaming for this consultation.",
  monitor_gain: "Gain",
  monitor_speed: "Speed",
  monitor_freeze: "Freeze",
  monitor_unfreeze: "Unfreeze",
  monitor_frozen: "Frozen — data is still being received",
  monitor_live: "Live",
  monitor_ended: "Ended",
  monitor_hr_ecg: "HR (ECG)",
  monitor_canvas_label: "Monitor {label}: {leads}",
  vital_hr: "Heart rate",
  vital_hr_ecg: "HR (ECG)",
  vital_spo2: "SpO2",
  vital_bp: "Blood pressure",
  vital_sys: "Systolic",
  vital_dia: "Diastolic",
  vital_rr: "Respiratory rate",
  vital_temp: "Temperature",
  vital_none: "No reading yet",
  vital_no_ecg: "No ECG",
  vital_no_beats: "No beats detected",
  vital_source_manual: "entered",
  vital_source_device: "device",
  vital_source_ecg: "from the ECG",
  vital_alarm_high: "{what} above {limit}",
  vital_alarm_low: "{what} below {limit}",
  vital_limits: "Limits",
  vital_kind: "Vital sign",
  vital_value: "Value",
  vital_save: "Save reading",
  vital_saved: "Saved",
  vital_queued: "Not yet saved — will be sent when the connection returns",
  vital_pending: "waiting to be sent",
  vital_err_number: "Enter a number for {label}.",
  vital_err_range: "{label} must be between {min} and {max} {unit}.",
  vital_err_whole: "{label} must be a whole number.",
  vital_err_decimal: "{label} takes one decimal at most.",
  vital_err_bp_order: "The diastolic pressure must be lower than the systolic pressure.",
  vital_err_kind: "Choose a vital sign.",
  vital_err_refused: "The reading was not saved.",
  vital_limits_title: "Alarm limits (this browser only)",
  vital_limit_low: "Low",
  vital_limit_high: "High",
  vital_limits_save: "Save limits",
  vital_limits_reset: "Default limits",
  vital_limits_error: "{label}: the low limit must be a number below the high limit.",
};

const ACK_MS = 10000;
const BACKFILL_MS = 20000;
const BACKFILL_SECONDS = 60;
const RETRY_MS = 5000;
// Refused for one of these reasons, a reading will never be accepted as it is: say so, stop retrying.
const PERMANENT_ERRORS = new Set(["invalid", "forbidden", "too_large", "not_found", "conflict"]);
const CLIENT_ID_RE = /^[A-Za-z0-9_-]{8,64}$/;
const KINDS = new Set(["hr", "spo2", "bp", "rr", "temp"]);

function newClientId() {
  const bytes = new Uint8Array(16);
  window.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Attach the monitor and the vitals panel to the room's socket. Call before the socket can deliver events.
 * Returns hooks the room calls: onJoined(ack) after each successful room.join, onClosed() when the
 * consultation ends, and stats() for tests.
 */
export function attachMonitor({ socket, cid, userId, onSessionExpired }) {
  const monitorEl = document.getElementById("monitor");
  const vitalsEl = document.getElementById("vitals");
  const t = loadI18n("monitor-i18n", MONITOR_ENGLISH);
  const state = { joined: false, closed: false, inflight: new Set(), memoryOutbox: null, backfills: 0 };
  const outboxKey = `tc-vitals-outbox-${cid}`;
  const monitor = monitorEl ? new WaveformMonitor(monitorEl, { t }) : null;
  const panel = vitalsEl
    ? new VitalsPanel(vitalsEl, { t, onSubmit: submitReading, storageKey: `tc-vital-limits-${userId}` })
    : null;

  // --- outbox (same shape and rules as the notes outbox in room.js) -------------------------------------

  function readAllOutbox() {
    if (state.memoryOutbox) return state.memoryOutbox.slice();
    try {
      const parsed = JSON.parse(window.localStorage.getItem(outboxKey) || "[]");
      return Array.isArray(parsed)
        ? parsed.filter((i) => i && KINDS.has(i.kind) && CLIENT_ID_RE.test(i.client_id || ""))
        : [];
    } catch (err) {
      warn("vitals outbox unreadable:", err && err.message);
      return [];
    }
  }

  // Per writer: on a shared clinic PC one user's unsent readings are never sent under another's name.
  function readOutbox() {
    return readAllOutbox().filter((i) => i.user_id === userId);
  }

  function writeOutbox(items) {
    if (state.memoryOutbox) state.memoryOutbox = items.slice();
    else {
      try {
        if (items.length) window.localStorage.setItem(outboxKey, JSON.stringify(items));
        else window.localStorage.removeItem(outboxKey);
      } catch (err) {
        warn("localStorage unavailable; keeping unsent readings in memory:", err && err.message);
        state.memoryOutbox = items.slice();
      }
    }
    if (panel) panel.setPending(readOutbox());
  }

  function outboxAdd(item) {
    writeOutbox([...readAllOutbox().filter((i) => i.client_id !== item.client_id), item]);
  }

  function outboxRemove(clientId) {
    const items = readAllOutbox();
    const kept = items.filter((i) => i.client_id !== clientId);
    if (kept.length !== items.length) writeOutbox(kept);
  }

  /** Send one reading; resolves to the ack, or {ok: true, queued: true} when it stays in the outbox. */
  async function send(item) {
    if (!socket.connected || state.inflight.has(item.client_id)) return { ok: true, queued: true };
    state.inflight.add(item.client_id);
    let ack;
    try {
      const payload = {
        consultation_id: cid,
        kind: item.kind,
        value: item.value,
        observed_at: item.observed_at,
        client_id: item.client_id,
      };
      if (item.kind === "bp") payload.value2 = item.value2;
      ack = await emitAck(socket, "vitals.add", payload, ACK_MS);
    } finally {
      state.inflight.delete(item.client_id);
    }
    if (ack.ok) {
      outboxRemove(item.client_id);
      if (ack.vital && panel) panel.addVital(ack.vital);
      return ack;
    }
    const code = (ack.error && ack.error.code) || "internal";
    if (PERMANENT_ERRORS.has(code)) {
      outboxRemove(item.client_id);
      return ack;
    }
    if (code === "unauthenticated") {
      if (onSessionExpired) onSessionExpired();
      return ack;
    }
    // Lost link, timeout, rate limit, server trouble: keep it, try again soon and after the next join.
    if (socket.connected && state.joined) {
      setTimeout(() => {
        if (readOutbox().some((i) => i.client_id === item.client_id)) send(item);
      }, RETRY_MS);
    }
    return { ok: true, queued: true };
  }

  function submitReading({ kind, value, value2 }) {
    if (state.closed) return Promise.resolve({ ok: false, error: { message: t("vital_err_refused") } });
    const item = {
      client_id: newClientId(),
      kind,
      value,
      value2: kind === "bp" ? value2 : null,
      observed_at: new Date().toISOString(),
      user_id: userId,
    };
    outboxAdd(item);
    return send(item);
  }

  function flushOutbox() {
    for (const item of readOutbox()) send(item);
  }

  // --- live data ----------------------------------------------------------------------------------------

  function decode(buffer) {
    try {
      return decodeFrame(buffer);
    } catch (err) {
      warn("waveform frame dropped:", err && err.message);
      return null;
    }
  }

  async function backfill() {
    if (!monitor) return;
    const ack = await emitAck(
      socket,
      "stream.backfill",
      { consultation_id: cid, seconds: BACKFILL_SECONDS },
      BACKFILL_MS,
    );
    if (!ack.ok) {
      warn("stream.backfill failed:", ack.error && ack.error.code, ack.error && ack.error.message);
      return;
    }
    monitor.setStreams(ack.streams);
    for (const buffer of Array.isArray(ack.frames) ? ack.frames : []) {
      const frame = decode(buffer);
      if (frame) monitor.backfill(frame);
    }
    state.backfills += 1;
    if (monitorEl) monitorEl.dataset.backfills = String(state.backfills);
  }

  function ours(consultationId) {
    return consultationId == null || Number(consultationId) === cid;
  }

  socket.on("stream.opened", (msg) => {
    if (monitor && msg && msg.stream && ours(msg.stream.consultation_id)) monitor.addStream(msg.stream);
  });
  socket.on("stream.frame", (buffer) => {
    if (!monitor) return;
    const frame = decode(buffer);
    if (frame) monitor.pushFrame(frame);
  });
  socket.on("stream.closed", (msg) => {
    if (monitor && msg) monitor.closeStream(msg.stream_id);
  });
  socket.on("stream.heart_rate", (msg) => {
    if (!msg) return;
    if (monitor) monitor.setHeartRate(msg.stream_id, msg.bpm);
    if (panel && (!monitor || monitor.streams.has(Number(msg.stream_id)))) panel.setDerivedHeartRate(msg.bpm);
  });
  socket.on("vitals.added", (msg) => {
    const vital = msg && msg.vital;
    if (!panel || !vital || !ours(vital.consultation_id)) return;
    outboxRemove(vital.client_id); // ours, saved through another connection
    panel.addVital(vital);
  });
  socket.on("disconnect", () => {
    state.joined = false;
  });

  if (panel) panel.setPending(readOutbox());

  return {
    monitor,
    panel,
    onJoined(ack) {
      state.joined = true;
      if (monitor) monitor.setStreams(ack.streams);
      if (panel) panel.setVitals(ack.vitals);
      // Saved before the link dropped, but the ack was lost: the join ack says so.
      for (const vital of Array.isArray(ack.vitals) ? ack.vitals : []) outboxRemove(vital && vital.client_id);
      backfill().catch((err) => warn("backfill:", err));
      flushOutbox();
    },
    onClosed() {
      state.closed = true;
      if (panel) panel.disableEntry();
    },
    flushOutbox,
    outbox: readOutbox,
    stats() {
      return monitor ? monitor.stats() : {};
    },
  };
}
